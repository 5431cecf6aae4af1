//! Server-sent events framing: splits a byte stream into complete event blocks without
//! waiting for more than one event, so streams are forwarded as they arrive.

use bytes::{Bytes, BytesMut};

#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
}

/// Where the first event separator ends, accepting `\n\n` and `\r\n\r\n`.
fn boundary(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

impl SseSplitter {
    /// Adds a chunk and returns every event block it completed (each with its blank line).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = boundary(&self.buf) {
            out.push(self.buf.split_to(end).freeze());
        }
        out
    }

    /// Whatever was left without a closing blank line when the stream ended.
    pub fn rest(&mut self) -> Option<Bytes> {
        let rest = self.buf.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// One parsed event: its `event:` name (if any) and its `data:` lines joined by `\n`.
pub struct SseEvent<'a> {
    pub event: Option<&'a str>,
    pub data: String,
}

pub fn parse(block: &[u8]) -> SseEvent<'_> {
    let text = std::str::from_utf8(block).unwrap_or("");
    let mut event = None;
    let mut data = String::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim());
        }
    }
    SseEvent { event, data }
}

/// Formats one `data:` event.
pub fn data_event(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// Formats one named event, as Anthropic's API sends them.
pub fn named_event(name: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunk_boundaries() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: {\"a\"").is_empty());
        let done = s.push(b":1}\n\ndata: [DO");
        assert_eq!(done.len(), 1);
        assert_eq!(parse(&done[0]).data, "{\"a\":1}");
        let done = s.push(b"NE]\r\n\r\n");
        assert_eq!(parse(&done[0]).data, "[DONE]");
        assert!(s.rest().is_none());
    }

    #[test]
    fn named_events_parse() {
        let e = parse(b"event: message_start\ndata: {\"x\":1}\n\n");
        assert_eq!(e.event, Some("message_start"));
        assert_eq!(e.data, "{\"x\":1}");
    }
}
