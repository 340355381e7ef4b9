//! Redrive over HTTP+SSE (2024-11-05), for sessions recorded on that
//! transport: one `GET /sse` connection, its `endpoint` event's message URL
//! for every POST, and a task that hands each message of the connection to
//! the request it belongs to.
//!
//! A response goes to the request with its id. Notifications and
//! server→client requests name no request on this transport; they go to
//! the oldest request still waiting (redrive sends a recorded session's
//! requests in their recorded order, mostly one at a time).

use crate::error::CliError;
use futures::StreamExt;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// How many messages one waiting request may have queued.
const QUEUE: usize = 64;

/// The requests waiting for messages, oldest first: id and channel.
type Waiting = Arc<Mutex<Vec<(Value, mpsc::Sender<Value>)>>>;

/// The session's one SSE connection and the requests waiting on it.
pub struct Link {
    /// The message URL, resolved against the SSE URL.
    pub endpoint: String,
    /// The session id the message URL names.
    pub session_id: String,
    waiting: Waiting,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    /// Opens `GET sse_url` and waits for the `endpoint` event.
    pub async fn open(http: &reqwest::Client, sse_url: &str) -> Result<Self, CliError> {
        let err = |reason: String| CliError::Gateway {
            url: sse_url.to_owned(),
            reason: reason.into(),
        };
        let resp = http
            .get(sse_url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("GET answered {}", resp.status())));
        }
        let mut blocks = sse_stream::SseStream::from_bytes_stream(resp.bytes_stream()).boxed();
        let endpoint = loop {
            match blocks.next().await {
                Some(Ok(b)) if b.event.as_deref() == Some("endpoint") => {
                    break b.data.unwrap_or_default();
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(err(e.to_string())),
                None => return Err(err("the SSE connection ended before `endpoint`".into())),
            }
        };
        let endpoint = reqwest::Url::parse(sse_url)
            .and_then(|u| u.join(&endpoint))
            .map_err(|e| err(format!("endpoint {endpoint:?}: {e}")))?;
        let session_id = endpoint
            .query_pairs()
            .find(|(k, _)| k == "session_id" || k == "sessionId")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let waiting: Waiting = Arc::default();
        let routes = waiting.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(block)) = blocks.next().await {
                let Some(msg) = block
                    .data
                    .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                else {
                    continue;
                };
                let is_response = msg.get("method").is_none();
                let to = {
                    let Ok(mut w) = routes.lock() else { return };
                    let at = if is_response {
                        w.iter().position(|(id, _)| msg.get("id") == Some(id))
                    } else if w.is_empty() {
                        None
                    } else {
                        Some(0)
                    };
                    match at {
                        Some(i) if is_response => Some(w.remove(i).1),
                        Some(i) => Some(w[i].1.clone()),
                        None => None,
                    }
                };
                if let Some(tx) = to {
                    let _ = tx.send(msg).await;
                }
            }
            // The connection ended: every waiting request's stream ends.
            if let Ok(mut w) = routes.lock() {
                w.clear();
            }
        });
        Ok(Self {
            endpoint: endpoint.to_string(),
            session_id,
            waiting,
            reader,
        })
    }

    /// Registers a request about to be posted: the messages that belong
    /// to it, its response last.
    pub fn expect(&self, id: Value) -> mpsc::Receiver<Value> {
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Ok(mut w) = self.waiting.lock() {
            w.push((id, tx));
        }
        rx
    }
}
