//! An incremental parser for `text/event-stream` (Server-Sent Events), as the
//! OpenAI streaming endpoints send it: bytes go in as the network delivers
//! them, complete events come out.
//!
//! Follows the WHATWG event-stream rules that matter to a client reading a
//! response body: lines end in LF, CRLF or CR; a line starting with `:` is a
//! comment; `data:` lines of one event are joined with `\n`; one optional
//! space after the colon is dropped; a blank line dispatches the event.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty when the server sent none (a `message`).
    pub name: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event-stream line is not UTF-8")]
    NotUtf8,
    #[error("an event-stream line is longer than {0} bytes")]
    LineTooLong(usize),
}

/// The longest line the parser buffers; a server streaming tokens never comes near.
pub const MAX_LINE: usize = 4 << 20;

/// Parser state between network reads.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the line not yet terminated.
    pending: Vec<u8>,
    /// The last byte seen was a CR: an LF that follows belongs to it.
    after_cr: bool,
    name: String,
    data: String,
    has_data: bool,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the body; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.pending.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.pending);
            if let Some(event) = self.line(&line)? {
                events.push(event);
            }
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            self.after_cr = rest[end] == b'\r' && end + 1 == rest.len();
            rest = &rest[end + if crlf { 2 } else { 1 }..];
        }
        if self.pending.len() + rest.len() > MAX_LINE {
            return Err(SseError::LineTooLong(MAX_LINE));
        }
        self.pending.extend_from_slice(rest);
        Ok(events)
    }

    /// Handles one complete line; a blank line dispatches the event.
    fn line(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.name),
            // `id` and `retry` only matter to a reconnecting browser; other fields are ignored.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<Event> {
        let name = std::mem::take(&mut self.name);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(Event {
            name,
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    fn parse_in_pieces(body: &[u8], piece: usize) -> Vec<Event> {
        let mut parser = Parser::new();
        body.chunks(piece)
            .flat_map(|bytes| parser.push(bytes).unwrap())
            .collect()
    }

    #[test]
    fn openai_chunks_and_done_come_out_as_events() {
        let body = b"data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n";
        let events = Parser::new().push(body).unwrap();
        assert_eq!(data(&events), ["{\"a\":1}", "{\"a\":2}", "[DONE]"]);
        assert!(events.iter().all(|e| e.name.is_empty()));
    }

    #[test]
    fn an_event_split_anywhere_across_reads_parses_the_same() {
        let body =
            "data: {\"text\":\"é\"}\r\n\r\n: keep-alive\r\n\r\ndata: [DONE]\r\n\r\n".as_bytes();
        let whole = Parser::new().push(body).unwrap();
        assert_eq!(data(&whole), ["{\"text\":\"é\"}", "[DONE]"]);
        for piece in 1..body.len() {
            assert_eq!(parse_in_pieces(body, piece), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn a_crlf_split_between_reads_ends_one_line_only() {
        let mut parser = Parser::new();
        assert!(parser.push(b"data: x\r").unwrap().is_empty());
        // The LF completes the CRLF; the next CR LF is the blank line.
        let events = parser.push(b"\n\r\n").unwrap();
        assert_eq!(data(&events), ["x"]);
    }

    #[test]
    fn bare_cr_line_endings_are_accepted() {
        let events = Parser::new().push(b"data: a\r\rdata: b\r\r").unwrap();
        assert_eq!(data(&events), ["a", "b"]);
    }

    #[test]
    fn data_lines_of_one_event_join_with_newlines() {
        let events = Parser::new()
            .push(b"event: delta\ndata: one\ndata:two\ndata\n\n")
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name, "delta");
        assert_eq!(events[0].data, "one\ntwo\n");
    }

    #[test]
    fn comments_and_events_without_data_dispatch_nothing() {
        let events = Parser::new()
            .push(b": ping\n\nevent: x\nid: 3\nretry: 10\n\n")
            .unwrap();
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn an_unterminated_event_is_held_until_its_blank_line() {
        let mut parser = Parser::new();
        assert!(parser.push(b"data: tail").unwrap().is_empty());
        assert!(parser.push(b"\n").unwrap().is_empty());
        assert_eq!(data(&parser.push(b"\n").unwrap()), ["tail"]);
    }

    #[test]
    fn invalid_utf8_in_a_line_is_an_error() {
        assert_eq!(
            Parser::new().push(b"data: \xff\n\n"),
            Err(SseError::NotUtf8)
        );
    }

    #[test]
    fn an_endless_line_is_refused_instead_of_buffered() {
        let mut parser = Parser::new();
        let chunk = vec![b'a'; 1 << 20];
        let result = (0..5).try_for_each(|_| parser.push(&chunk).map(drop));
        assert_eq!(result, Err(SseError::LineTooLong(MAX_LINE)));
    }
}
