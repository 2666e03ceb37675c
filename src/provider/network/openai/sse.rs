//! Server-sent events (the `text/event-stream` format of the HTML standard), as OpenAI's API
//! streams its answers: streamed transcriptions and chat completions.

/// Splits a server-sent event stream into the `data` of its events (`[DONE]` markers dropped),
/// as the event-stream format defines it: lines end at CR LF, LF or CR, an empty line ends an
/// event. The network cuts the stream anywhere, also between CR and LF and inside a character.
#[derive(Default)]
pub(crate) struct SseReader {
    /// The line being read.
    line: String,
    /// The `data` lines of the event being read.
    data: Vec<String>,
    /// The last piece ended with CR: an LF that starts the next one ends no other line.
    after_cr: bool,
    /// The first bytes of a character the last piece ended in the middle of.
    cut: Vec<u8>,
}

impl SseReader {
    /// Adds bytes of the stream and returns the data of the events they completed.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut bytes = bytes;
        let joined;
        if !self.cut.is_empty() {
            self.cut.extend_from_slice(bytes);
            joined = std::mem::take(&mut self.cut);
            bytes = &joined;
        }
        let keep = (1..=bytes.len().min(3))
            .find(|&n| {
                // An incomplete character: a lead byte and fewer continuation bytes than it needs.
                matches!(std::str::from_utf8(&bytes[bytes.len() - n..]),
                    Err(e) if e.valid_up_to() == 0 && e.error_len().is_none())
            })
            .unwrap_or(0);
        let (text, cut) = bytes.split_at(bytes.len() - keep);
        self.cut.extend_from_slice(cut);
        let mut events = Vec::new();
        for c in String::from_utf8_lossy(text).chars() {
            if std::mem::take(&mut self.after_cr) && c == '\n' {
                continue; // the LF of a CR LF
            }
            match c {
                '\r' | '\n' => {
                    self.after_cr = c == '\r';
                    self.end_line(&mut events);
                }
                c => self.line.push(c),
            }
        }
        events
    }

    fn end_line(&mut self, events: &mut Vec<String>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            if !data.is_empty() && data != ["[DONE]"] {
                events.push(data.join("\n"));
            }
        } else if let Some(data) = line.strip_prefix("data:") {
            self.data
                .push(data.strip_prefix(' ').unwrap_or(data).to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_split_across_pieces() {
        let mut sse = SseReader::default();
        assert!(sse.push(b"data: {\"a\":").is_empty());
        assert_eq!(
            sse.push(b"1}\r\n\r\nevent: x\ndata: 2\n\ndata: [DONE]\n\n"),
            ["{\"a\":1}", "2"]
        );
    }

    #[test]
    fn server_sent_events_split_inside_a_character() {
        // Found by the fuzz target openai_http: a piece of the stream that ended inside a
        // multi-byte character turned it into U+FFFD twice ("caf\u{FFFD}\u{FFFD}").
        let stream = "data: {\"delta\":\"café 日本\"}\n\n".as_bytes();
        for cut in 0..=stream.len() {
            let mut sse = SseReader::default();
            let mut events = sse.push(&stream[..cut]);
            events.extend(sse.push(&stream[cut..]));
            assert_eq!(events, ["{\"delta\":\"café 日本\"}"], "cut at {cut}");
        }
        // Bytes that are not UTF-8 stay U+FFFD, wherever the stream is cut.
        let mut sse = SseReader::default();
        let mut events = sse.push(b"data: \xe6\x97");
        events.extend(sse.push(b"x\xff\n\n"));
        assert_eq!(events, ["\u{FFFD}x\u{FFFD}"]);
    }

    #[test]
    fn server_sent_events_end_lines_at_cr_lf_or_both_wherever_cut() {
        // Found by the fuzz target openai_http: CR LF was replaced in what was buffered after
        // each piece, so "\r\r\n\n" made an event or not depending on where the stream was cut,
        // and a stream whose lines end with CR alone (allowed by the format) gave no event.
        let stream = b"data: a\r\r\n\ndata: b\rdata: c\r\rdata: [DONE]\n\n";
        for cut in 0..=stream.len() {
            let mut sse = SseReader::default();
            let mut events = sse.push(&stream[..cut]);
            events.extend(sse.push(&stream[cut..]));
            assert_eq!(events, ["a", "b\nc"], "cut at {cut}");
        }
    }
}
