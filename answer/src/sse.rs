//! Server-sent events, as chat-completion streams use them: the `data:` payloads, one per event.

/// Splits a byte stream into the `data:` payloads of its events. Bytes may arrive cut anywhere
/// (mid-line, mid-character); a payload spread over several `data:` lines is joined with `\n`.
#[derive(Debug, Default)]
pub(crate) struct SseLines {
    buffer: Vec<u8>,
    data: Option<String>,
}

impl SseLines {
    /// Takes the next bytes; returns the payloads of the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(data);
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry nothing we use.
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_survive_any_split() {
        let stream =
            "data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut s = SseLines::default();
            let mut got = s.push(&stream.as_bytes()[..cut]);
            got.extend(s.push(&stream.as_bytes()[cut..]));
            assert_eq!(
                got,
                vec!["{\"a\":1}", "{\"b\":\n2}", "[DONE]"],
                "cut at {cut}"
            );
        }
    }
}
