//! Server-Sent Events, read incrementally from an HTTP response body with
//! the `sse-stream` crate: `id`, `event`, `data` and `retry` fields, comment
//! lines (`: keep-alive`), LF, CRLF or CR line ends, an empty line ending a
//! block. A block without `data` (a `retry` hint alone) is not an event.
//! [`EventStream`] drives it over a [`reqwest::Response`].

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde_json::Value;

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

/// What a response body is read as.
enum Body {
    /// `text/event-stream`, block by block.
    Sse(BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>),
    /// `application/json`: one event holding the body, once.
    Json(Option<reqwest::Response>),
}

/// The events of one SSE response, read as they arrive. A JSON response
/// (`application/json`) reads as one event holding the body.
pub struct EventStream {
    body: Body,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        let json_body = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        if json_body {
            Self {
                body: Body::Json(Some(response)),
            }
        } else {
            Self::from_sse(response.bytes_stream())
        }
    }

    /// Reads any byte stream as SSE.
    fn from_sse<E>(bytes: impl Stream<Item = Result<Bytes, E>> + Send + 'static) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self {
            body: Body::Sse(sse_stream::SseStream::from_bytes_stream(bytes).boxed()),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        match &mut self.body {
            Body::Json(response) => {
                let Some(response) = response.take() else {
                    return Ok(None);
                };
                let data = response.bytes().await.context("reading body")?;
                if data.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Event {
                    id: None,
                    data: String::from_utf8_lossy(&data).into_owned(),
                }))
            }
            Body::Sse(blocks) => {
                while let Some(block) = blocks.next().await {
                    let block = block.context("reading SSE body")?;
                    if let Some(data) = block.data {
                        return Ok(Some(Event { id: block.id, data }));
                    }
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_priming_messages_comments_and_split_chunks() -> Result<()> {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(
                b"id: r1-6\ndata: \n\n: keep-alive\n\nid: r1-7\nevent: mess",
            )),
            Ok(Bytes::from_static(
                b"age\r\ndata: {\"id\":1}\r\n\r\nretry: 500\n\n",
            )),
        ];
        let mut events = EventStream::from_sse(futures::stream::iter(chunks));
        let mut got = Vec::new();
        while let Some(event) = events.next().await? {
            got.push(event);
        }
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
        Ok(())
    }
}
