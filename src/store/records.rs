//! Generic access to the tables that map a string id to one encoded record, so each record
//! type's module holds only what is particular to it.

use super::{Store, StoreError, Tx, codec};
use redb::{ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};

pub type RecordTable = TableDefinition<'static, &'static str, &'static [u8]>;

impl Tx {
    pub(crate) fn get_record<T: DeserializeOwned>(
        &self,
        table: RecordTable,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let t = self.txn.open_table(table)?;
        let found = t.get(id)?;
        found.map(|v| codec::decode(v.value())).transpose()
    }

    pub(crate) fn put_record<T: Serialize>(
        &mut self,
        table: RecordTable,
        id: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        let bytes = codec::encode(record)?;
        self.txn.open_table(table)?.insert(id, bytes.as_slice())?;
        self.dirty = true;
        Ok(())
    }

    pub(crate) fn remove_record<T: DeserializeOwned>(
        &mut self,
        table: RecordTable,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let removed = self
            .txn
            .open_table(table)?
            .remove(id)?
            .map(|v| v.value().to_vec());
        self.dirty = true;
        removed.map(|b| codec::decode(&b)).transpose()
    }

    pub(crate) fn all_records<T: DeserializeOwned>(
        &self,
        table: RecordTable,
    ) -> Result<Vec<T>, StoreError> {
        let t = self.txn.open_table(table)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (_, v) = row?;
            out.push(codec::decode(v.value())?);
        }
        Ok(out)
    }
}

impl Store {
    pub(crate) fn read_record<T: DeserializeOwned>(
        &self,
        table: RecordTable,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(table)?;
        let found = t.get(id)?;
        found.map(|v| codec::decode(v.value())).transpose()
    }
}

/// Every record of a table, decoded, as one read transaction sees them.
pub(crate) fn decode_table<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: RecordTable,
) -> Result<Vec<T>, StoreError> {
    let t = txn.open_table(table)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (_, v) = row?;
        out.push(codec::decode(v.value())?);
    }
    Ok(out)
}
