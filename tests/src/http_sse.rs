//! [`SseSession`]: a raw HTTP+SSE (2024-11-05) client that shows the test
//! everything a stock client hides: each event's id, which gateway served
//! each request (`jetway-instance`), the `endpoint` event of every
//! connection, and a reconnect with an explicit `Last-Event-ID`.

use crate::mcp::{LAST_EVENT_ID_HEADER, http_client};
use crate::sse::{SseEvent, SseStream};
use anyhow::{Context, Result, bail, ensure};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use std::time::Duration;

/// Response header naming the gateway that served a request.
pub const INSTANCE: &str = "jetway-instance";

/// One HTTP+SSE connection and the session it carries.
pub struct SseSession {
    http: reqwest::Client,
    /// The SSE URL (`…/sse`).
    pub sse_url: Url,
    /// The message URL of the `endpoint` event, resolved against `sse_url`.
    pub endpoint: Url,
    /// The raw `data` of the `endpoint` event.
    pub endpoint_data: String,
    /// The session id in the message URL.
    pub session_id: String,
    /// The gateway holding the SSE connection.
    pub instance: String,
    /// The id of the `endpoint` event.
    pub endpoint_id: Option<String>,
    pub stream: SseStream,
    /// Sent as `Authorization: Bearer …` with the GET and every POST.
    pub bearer: Option<String>,
}

/// What a POST to the message URL got.
#[derive(Debug)]
pub struct Posted {
    pub status: StatusCode,
    pub instance: String,
    pub body: String,
}

impl SseSession {
    /// `GET sse_url`: a new session.
    pub async fn open(sse_url: &str) -> Result<Self> {
        Self::connect(sse_url, None, None).await
    }

    /// `GET sse_url` with a bearer token: a new session of its principal.
    pub async fn open_as(sse_url: &str, bearer: &str) -> Result<Self> {
        Self::connect(sse_url, None, Some(bearer)).await
    }

    /// `GET sse_url` with `Last-Event-ID`: the same session, resumed.
    pub async fn resume(sse_url: &str, last_event_id: &str) -> Result<Self> {
        Self::connect(sse_url, Some(last_event_id), None).await
    }

    async fn connect(sse_url: &str, last: Option<&str>, bearer: Option<&str>) -> Result<Self> {
        let http = http_client();
        let mut req = http.get(sse_url).header("accept", "text/event-stream");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last {
            req = req.header(LAST_EVENT_ID_HEADER, id);
        }
        let resp = req.send().await.context("GET /sse")?;
        ensure!(
            resp.status() == StatusCode::OK,
            "GET {sse_url}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        let instance = header(&resp, INSTANCE);
        let mut stream = SseStream::new(resp);
        let first = stream
            .next_event(Duration::from_secs(10))
            .await?
            .context("the SSE connection ended before the endpoint event")?;
        ensure!(
            first.event.as_deref() == Some("endpoint"),
            "the first event is not `endpoint`: {first:?}"
        );
        let sse_url = Url::parse(sse_url)?;
        let endpoint = sse_url.join(&first.data)?;
        let session_id = endpoint
            .query_pairs()
            .find(|(k, _)| k == "session_id")
            .map(|(_, v)| v.into_owned())
            .context("the endpoint URL names no session_id")?;
        Ok(Self {
            http,
            sse_url,
            endpoint,
            endpoint_data: first.data,
            session_id,
            instance,
            endpoint_id: first.id,
            stream,
            bearer: bearer.map(str::to_owned),
        })
    }

    /// POSTs one JSON-RPC message to the message URL.
    pub async fn post(&self, message: &Value) -> Result<Posted> {
        let mut req = self
            .http
            .post(self.endpoint.clone())
            .header("content-type", "application/json");
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        let resp = req
            .body(serde_json::to_vec(message)?)
            .send()
            .await
            .context("POST /messages")?;
        Ok(Posted {
            status: resp.status(),
            instance: header(&resp, INSTANCE),
            body: resp.text().await.unwrap_or_default(),
        })
    }

    /// POSTs and insists on 202.
    pub async fn send(&self, message: Value) -> Result<Posted> {
        let p = self.post(&message).await?;
        ensure!(
            p.status == StatusCode::ACCEPTED,
            "POST {message}: {} {}",
            p.status,
            p.body
        );
        Ok(p)
    }

    /// The next event that carries JSON.
    pub async fn next(&mut self, timeout: Duration) -> Result<SseEvent> {
        self.stream
            .next_message(timeout)
            .await?
            .context("the SSE connection ended")
    }

    /// Reads events until the response to `id`, answering nothing; returns
    /// every event read, the response last.
    pub async fn until_response(&mut self, id: i64, timeout: Duration) -> Result<Vec<SseEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next(left).await?;
            let done = is_response_to(&ev, id);
            out.push(ev);
            if done {
                return Ok(out);
            }
        }
    }

    /// `initialize` (2024-11-05), its answer, and `notifications/initialized`.
    pub async fn initialize(&mut self) -> Result<Value> {
        self.send(json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2024-11-05",
                "capabilities": { "sampling": {} },
                "clientInfo": { "name": "jetway-raw-sse", "version": "0" }
            }
        }))
        .await?;
        let events = self.until_response(0, Duration::from_secs(20)).await?;
        let answer = events
            .last()
            .and_then(|e| e.json.clone())
            .context("no answer")?;
        if answer.get("result").is_none() {
            bail!("initialize failed: {answer}");
        }
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(answer)
    }
}

/// True if `ev` is the response (result or error) to request `id`.
pub fn is_response_to(ev: &SseEvent, id: i64) -> bool {
    ev.json.as_ref().is_some_and(|j| {
        j.get("id") == Some(&json!(id)) && (j.get("result").is_some() || j.get("error").is_some())
    })
}

/// The sequence of an HTTP+SSE event id `<session>.<sequence>`.
pub fn sequence_of(id: &str) -> Option<u64> {
    id.rsplit_once('.').and_then(|(_, s)| s.parse().ok())
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}
