//! The one place records become bytes: a version byte, then bincode (serde mode).
//! bincode is not self-describing, so fields are never skipped conditionally and
//! `serde_json::Value` is never stored directly (it is kept as JSON text).

use super::StoreError;
use serde::{Serialize, de::DeserializeOwned};

/// Bumped when the framing itself changes; record layouts are versioned by table name.
const CODEC_VERSION: u8 = 1;

pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![CODEC_VERSION];
    bincode::serde::encode_into_std_write(record, &mut out, bincode::config::standard())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&CODEC_VERSION, rest)) => {
            let (value, _) = bincode::serde::decode_from_slice(rest, bincode::config::standard())
                .map_err(|e| StoreError::Codec(e.to_string()))?;
            Ok(value)
        }
        Some((v, _)) => Err(StoreError::Codec(format!("unknown record version {v}"))),
        None => Err(StoreError::Codec("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct R {
        a: Option<String>,
        b: Vec<u64>,
        c: f64,
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let r = R {
            a: Some("x".into()),
            b: vec![1, 2],
            c: 0.5,
        };
        let bytes = encode(&r).unwrap_or_default();
        assert_eq!(decode::<R>(&bytes).ok(), Some(r));
        assert!(decode::<R>(&[]).is_err());
        assert!(decode::<R>(&[9, 1, 2]).is_err());
        assert!(decode::<R>(&[1, 255, 255, 255]).is_err());
    }
}
