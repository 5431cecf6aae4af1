//! Server-sent events framing: splits a byte stream into complete event blocks without
//! waiting for more than one event, so streams are forwarded as they arrive.

use bytes::{Bytes, BytesMut};

#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
}

/// Where the first event separator ends, accepting `\n\n` and `\r\n\r\n`.
fn boundary(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).find_map(|i| match buf.get(i + 1..i + 3) {
        Some([b'\n', _]) => Some(i + 2),
        Some([b'\r', b'\n']) => Some(i + 3),
        None if buf.get(i + 1) == Some(&b'\n') => Some(i + 2),
        _ => None,
    })
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

    /// Adds a chunk and returns, as one buffer, the event blocks it completed that `keep`
    /// accepts. The pass-through case — every block kept, nothing held over — hands the chunk
    /// on as it came, without a copy.
    pub fn push_kept(&mut self, chunk: Bytes, mut keep: impl FnMut(&[u8]) -> bool) -> Bytes {
        let mut data = if self.buf.is_empty() {
            chunk
        } else {
            self.buf.extend_from_slice(&chunk);
            self.buf.split().freeze()
        };
        let mut done = 0;
        let mut dropped: Vec<(usize, usize)> = Vec::new();
        while let Some(len) = boundary(&data[done..]) {
            let block = done..done + len;
            if !keep(&data[block.clone()]) {
                dropped.push((block.start, block.end));
            }
            done = block.end;
        }
        let complete = data.split_to(done);
        // An event cut in the middle waits for the rest.
        self.buf.extend_from_slice(&data);
        if dropped.is_empty() {
            return complete;
        }
        let mut out = BytesMut::with_capacity(complete.len());
        let mut from = 0;
        for (start, end) in dropped {
            out.extend_from_slice(&complete[from..start]);
            from = end;
        }
        out.extend_from_slice(&complete[from..]);
        out.freeze()
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
    fn kept_blocks_pass_through_and_dropped_ones_are_cut_out() {
        let mut s = SseSplitter::default();
        let keep_all = |_: &[u8]| true;
        let chunk = Bytes::from_static(b"data: 1\n\ndata: 2\n\n");
        assert_eq!(s.push_kept(chunk.clone(), keep_all), chunk);
        // A partial event is held until its blank line arrives, CRLF or LF.
        assert!(
            s.push_kept(Bytes::from_static(b"data: 3\r\n"), keep_all)
                .is_empty()
        );
        assert_eq!(
            s.push_kept(Bytes::from_static(b"\r\ndata: 4\n"), keep_all),
            Bytes::from_static(b"data: 3\r\n\r\n")
        );
        let not_usage = |b: &[u8]| !b.starts_with(b"data: u");
        assert_eq!(
            s.push_kept(Bytes::from_static(b"\ndata: u\n\ndata: 5\n\n"), not_usage),
            Bytes::from_static(b"data: 4\n\ndata: 5\n\n")
        );
        assert!(s.rest().is_none());
        assert!(
            s.push_kept(Bytes::from_static(b"data: 6"), keep_all)
                .is_empty()
        );
        assert_eq!(s.rest(), Some(Bytes::from_static(b"data: 6")));
    }

    #[test]
    fn boundaries_lf_and_crlf() {
        assert_eq!(boundary(b"a\n\nb"), Some(3));
        assert_eq!(boundary(b"a\r\n\r\nb"), Some(5));
        assert_eq!(boundary(b"a\n"), None);
        assert_eq!(boundary(b"a\n\n"), Some(3));
        assert_eq!(boundary(b"a\r\n\r"), None);
        assert_eq!(boundary(b"a\nb\n\n"), Some(5));
    }

    #[test]
    fn named_events_parse() {
        let e = parse(b"event: message_start\ndata: {\"x\":1}\n\n");
        assert_eq!(e.event, Some("message_start"));
        assert_eq!(e.data, "{\"x\":1}");
    }
}
