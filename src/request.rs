//! Reading what a client sent: a size-capped body parsed as a JSON object, and the metadata
//! (request id, address, user agent) recorded with the changes a request makes.

use axum::body::Body;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge {
        limit: usize,
    },
    /// The client stopped sending its body (a stalled upload holds a connection and memory).
    Timeout,
    /// The server already holds as many request bodies as it allows.
    Busy,
    Unreadable(String),
    NotJson(String),
    NotObject,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "Request body is larger than the limit of {limit} bytes.")
            }
            BodyError::Unreadable(e) => write!(f, "Could not read the request body: {e}"),
            BodyError::NotJson(e) => write!(f, "Request body is not valid JSON: {e}"),
            BodyError::NotObject => write!(f, "Request body must be a JSON object."),
            BodyError::Timeout => write!(f, "The request body did not arrive in time."),
            BodyError::Busy => write!(
                f,
                "The server is busy with other large requests; retry shortly."
            ),
        }
    }
}

/// Limits on reading a request body.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// The longest pause between two pieces of the body (a stalled upload holds a connection
    /// and its buffer).
    pub idle: std::time::Duration,
    /// KiB of request bodies the whole server holds at once: many large bodies in parallel
    /// would otherwise grow memory without bound.
    pub budget: Arc<Semaphore>,
}

impl BodyLimits {
    pub fn new(max_bytes: usize, idle: std::time::Duration, budget_bytes: usize) -> Self {
        let kib = budget_bytes.div_ceil(1024).clamp(1, Semaphore::MAX_PERMITS);
        BodyLimits {
            max_bytes,
            idle,
            budget: Arc::new(Semaphore::new(kib)),
        }
    }
}

/// The share of the body budget a request holds while its body is in memory.
pub struct BodyPermit {
    held: Option<OwnedSemaphorePermit>,
    kib: usize,
    bytes: usize,
}

impl BodyPermit {
    /// How many bytes the body held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows the share to cover `bytes`, waiting (at most `idle`) for others to finish.
    async fn cover(&mut self, bytes: usize, limits: &BodyLimits) -> Result<(), BodyError> {
        let want = bytes.div_ceil(1024).max(1);
        if want <= self.kib {
            return Ok(());
        }
        let more = u32::try_from(want - self.kib).map_err(|_| BodyError::Busy)?;
        let permit =
            tokio::time::timeout(limits.idle, limits.budget.clone().acquire_many_owned(more))
                .await
                .map_err(|_| BodyError::Busy)?
                .map_err(|_| BodyError::Busy)?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        self.kib = want;
        Ok(())
    }
}

/// Reads the body (refusing more than the limit without reading it all) as a JSON object, and
/// the share of the body budget it occupies (hold it while the body is in use).
pub async fn json_object(
    headers: &HeaderMap,
    body: Body,
    limits: &BodyLimits,
) -> Result<(Map<String, Value>, BodyPermit), BodyError> {
    let limit = limits.max_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut permit = BodyPermit {
        held: None,
        kib: 0,
        bytes: 0,
    };
    permit.cover(declared.unwrap_or(0) as usize, limits).await?;
    let mut body = Limited::new(body, limit);
    // The declared length is already within the limit and covered by the permit.
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let frame = tokio::time::timeout(limits.idle, body.frame())
            .await
            .map_err(|_| BodyError::Timeout)?;
        match frame {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    permit.cover(buf.len() + data.len(), limits).await?;
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(BodyError::TooLarge { limit });
            }
            Some(Err(e)) => return Err(BodyError::Unreadable(e.to_string())),
        }
    }
    let bytes = buf.freeze();
    permit.bytes = bytes.len();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Map::new(), permit));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok((m, permit)),
        Ok(_) => Err(BodyError::NotObject),
        Err(e) => Err(BodyError::NotJson(e.to_string())),
    }
}

/// A fresh request id (UUID v4), as LiteLLM's `x-litellm-call-id`.
pub fn new_call_id() -> String {
    // From the thread's seeded CSPRNG: a system call per request for an id is waste.
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect()
}
