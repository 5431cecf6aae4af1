//! The index's fields and how an audit entry becomes a document. Only what queries need is
//! indexed; nothing is stored but the sequence number (a fast field): results are read back from
//! redb, the source of truth, so the index never holds a value redb does not.

use crate::audit::Entry;
use tantivy::TantivyDocument;
use tantivy::schema::{FAST, Field, INDEXED, STRING, Schema, TEXT};

/// Bumped when the fields change: an index of another version is rebuilt from the table.
pub const SCHEMA_TAG: &str = "portcullis-audit-index-1";

#[derive(Clone)]
pub struct Fields {
    pub schema: Schema,
    pub seq: Field,
    pub time: Field,
    pub action: Field,
    pub table: Field,
    pub object: Field,
    pub actor: Field,
    pub key: Field,
    pub role: Field,
    pub ip: Field,
    pub request: Field,
    pub agent: Field,
    pub org: Field,
    pub text: Field,
}

impl Fields {
    pub fn new() -> Fields {
        let mut b = Schema::builder();
        let seq = b.add_u64_field("seq", INDEXED | FAST);
        let time = b.add_i64_field("time", INDEXED | FAST);
        let action = b.add_text_field("action", STRING);
        let table = b.add_text_field("table_name", STRING);
        let object = b.add_text_field("object_id", STRING);
        let actor = b.add_text_field("changed_by", STRING);
        let key = b.add_text_field("changed_by_api_key", STRING);
        let role = b.add_text_field("actor_role", STRING);
        let ip = b.add_text_field("source_ip", STRING);
        let request = b.add_text_field("request_id", STRING);
        let agent = b.add_text_field("user_agent", STRING);
        let org = b.add_text_field("org", STRING);
        let text = b.add_text_field("text", TEXT);
        Fields {
            schema: b.build(),
            seq,
            time,
            action,
            table,
            object,
            actor,
            key,
            role,
            ip,
            request,
            agent,
            org,
            text,
        }
    }

    pub fn keyword(&self, f: super::query::Field) -> Field {
        use super::query::Field as Q;
        match f {
            Q::Action => self.action,
            Q::Table => self.table,
            Q::Object => self.object,
            Q::Actor => self.actor,
            Q::Key => self.key,
            Q::Role => self.role,
            Q::Ip => self.ip,
            Q::Request => self.request,
            Q::Agent => self.agent,
            Q::Org => self.org,
        }
    }

    pub fn document(&self, e: &Entry) -> TantivyDocument {
        let mut d = TantivyDocument::new();
        d.add_u64(self.seq, e.seq);
        d.add_i64(self.time, e.timestamp_ms);
        d.add_text(self.action, e.change.action.to_lowercase());
        d.add_text(self.table, e.change.table_name.to_lowercase());
        d.add_text(self.object, &e.change.object_id);
        d.add_text(self.actor, e.actor.changed_by());
        if let Some(k) = e.actor.api_key() {
            d.add_text(self.key, k);
        }
        if let Some(r) = e.actor.role() {
            d.add_text(self.role, r.to_lowercase());
        }
        for (field, value) in [
            (self.ip, &e.origin.source_ip),
            (self.request, &e.origin.request_id),
            (self.agent, &e.origin.user_agent),
        ] {
            if !value.is_empty() {
                d.add_text(field, value);
            }
        }
        for org in &e.scope {
            d.add_text(self.org, org);
        }
        let mut text = String::new();
        text.push_str(&e.change.object_id);
        for json in [&e.change.before_value, &e.change.updated_values] {
            leaf_text(json, &mut text);
        }
        d.add_text(self.text, text);
        d
    }
}

impl Default for Fields {
    fn default() -> Self {
        Fields::new()
    }
}

/// The values of a JSON text (not its keys: every key entry has `models`, so the word would
/// match everything), space-separated; text that is not JSON is taken whole. Streams through
/// the JSON without building a tree (indexing speed is bounded by this).
fn leaf_text(json: &str, out: &mut String) {
    if json.is_empty() {
        return;
    }
    let mark = out.len();
    let mut de = serde_json::Deserializer::from_str(json);
    if serde::de::DeserializeSeed::deserialize(Leaves(out), &mut de).is_err() {
        out.truncate(mark);
        out.push(' ');
        out.push_str(json);
    }
}

/// Appends every scalar of a JSON value to the string.
struct Leaves<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for Leaves<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Leaves<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { " true" } else { " false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        use std::fmt::Write;
        let _ = write!(self.0, " {v}");
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        use std::fmt::Write;
        let _ = write!(self.0, " {v}");
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        use std::fmt::Write;
        let _ = write!(self.0, " {v}");
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push(' ');
        self.0.push_str(v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Leaves(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value_seed(Leaves(&mut *self.0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::leaf_text;

    #[test]
    fn values_not_keys_and_non_json_whole() {
        let mut out = String::new();
        leaf_text(
            r#"{"key_alias":"svc-alpha","models":["gpt-4o",{"x":null}],"max_budget":12.5,"n":-3,"ok":true}"#,
            &mut out,
        );
        assert_eq!(out, " svc-alpha gpt-4o 12.5 -3 true");
        let mut out = String::from("id");
        leaf_text("not json {", &mut out);
        assert_eq!(out, "id not json {");
    }
}
