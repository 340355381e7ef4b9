//! Server-Sent Events, read incrementally from an HTTP response body.
//!
//! [`Parser`] implements the parts of the `text/event-stream` format both
//! servers under test use: `id`, `event`, `data` and `retry` fields, comment
//! lines (`: keep-alive`), LF or CRLF line ends, and an empty line that
//! dispatches the event. A block without `data` (a `retry` hint alone) is not
//! an event. [`EventStream`] drives it over a [`reqwest::Response`].

use anyhow::{Context, Result};
use bytes::BytesMut;
use serde_json::Value;
use std::collections::VecDeque;

/// One dispatched SSE event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `id` field of this event's block, if it had one.
    pub id: Option<String>,
    /// The data lines joined by `\n` (empty for a priming event).
    pub data: String,
}

impl Event {
    /// `data` as JSON, when it is a JSON-RPC message.
    pub fn json(&self) -> Option<Value> {
        if self.data.is_empty() {
            return None;
        }
        serde_json::from_str(&self.data).ok()
    }
}

/// Push parser: feed bytes, take complete events.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
    id: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Feeds a chunk and appends the events it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut VecDeque<Event>) {
        self.buf.extend_from_slice(chunk);
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line = self.buf.split_to(end + 1);
            let mut line = &line[..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            self.line(line, out);
        }
    }

    fn line(&mut self, line: &[u8], out: &mut VecDeque<Event>) {
        if line.is_empty() {
            let id = self.id.take();
            if let Some(data) = self.data.take() {
                out.push_back(Event { id, data });
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "id" => self.id = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
}

/// The events of one SSE response, read as they arrive. A JSON response
/// (`application/json`) reads as one event holding the body.
pub struct EventStream {
    response: reqwest::Response,
    parser: Parser,
    ready: VecDeque<Event>,
    json_body: bool,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        let json_body = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        Self {
            response,
            parser: Parser::default(),
            ready: VecDeque::new(),
            json_body,
        }
    }

    /// The next event, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            if self.json_body {
                let mut data = Vec::new();
                while let Some(c) = self.response.chunk().await.context("reading body")? {
                    data.extend_from_slice(&c);
                }
                if data.is_empty() {
                    return Ok(None);
                }
                self.json_body = false;
                return Ok(Some(Event {
                    id: None,
                    data: String::from_utf8_lossy(&data).into_owned(),
                }));
            }
            let chunk = self.response.chunk().await.context("reading SSE body")?;
            match chunk {
                Some(c) => self.parser.feed(&c, &mut self.ready),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_priming_messages_comments_and_split_chunks() {
        let mut p = Parser::default();
        let mut out = VecDeque::new();
        p.feed(
            b"id: r1-6\ndata: \n\n: keep-alive\n\nid: r1-7\nevent: mess",
            &mut out,
        );
        p.feed(b"age\r\ndata: {\"id\":1}\r\n\r\nretry: 500\n\n", &mut out);
        let got: Vec<_> = out.into_iter().collect();
        assert_eq!(
            got,
            vec![
                Event {
                    id: Some("r1-6".into()),
                    data: String::new()
                },
                Event {
                    id: Some("r1-7".into()),
                    data: "{\"id\":1}".into()
                },
            ]
        );
        assert_eq!(got[1].json().and_then(|v| v["id"].as_i64()), Some(1));
    }
}
