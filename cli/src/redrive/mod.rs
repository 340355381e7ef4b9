//! `jetway replay <id> --redrive --gateway <url>`: re-sends a recorded
//! session's client traffic as a new session through a gateway and compares
//! each result with the recorded one — a new worker version checked against
//! real recorded traffic.
//!
//! - [`plan`] — the recorded client requests and notifications, in order.
//! - [`client`] — the MCP Streamable HTTP client that re-sends them.
//! - [`http_sse`] — its HTTP+SSE side, for sessions recorded on that transport
//!   (re-sent over HTTP+SSE, so `initialize` negotiates 2024-11-05 again).
//! - [`diff`] — structural differences, volatile fields told apart.
//! - [`report`] — the side-by-side comparison and the verdict.
//!
//! Requests are sent in recorded order. A request whose recorded result
//! came before the client's next message is awaited before that message,
//! so sequential traffic stays sequential; overlapping requests overlap.
//! Server→client requests are answered with the client's recorded answer to
//! the same method at the same position within that request.

pub mod client;
pub mod diff;
pub mod http_sse;
pub mod plan;
pub mod report;

use crate::{
    args::ReplayArgs,
    bus::Bus,
    error::CliError,
    output::Style,
    replay::reader::{Reader, Start},
    sessions::{locate, streams::Status},
};
use client::{Client, Reply};
use jetway_shared::{jsonrpc, protocol::ProtocolVersion};
use plan::{Plan, Recorded, Step};
use report::Report;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;
use tokio::sync::watch;

/// How a redriven request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Its final response or error.
    Final(Value),
    /// Its stream ended without one (it was cancelled).
    Ended,
    /// It could not be completed.
    Failed(String),
}

/// Runs the redrive; returns how many results differ from the recording.
pub async fn run(
    bus: &Bus,
    args: &ReplayArgs,
    gateway: &str,
    style: Style,
    out: &mut impl Write,
) -> Result<usize, CliError> {
    let found = locate(bus, &args.id).await?;
    let messages = Reader::open(bus, &found.stream, &found.id, Start::Beginning, false)
        .await?
        .collect()
        .await?;
    let plan = Plan::from_messages(&messages);
    let starts_with_initialize = matches!(plan.steps.first(),
        Some(Step::Request(r)) if r.method == jsonrpc::method::INITIALIZE);
    if !starts_with_initialize {
        return Err(CliError::NothingToRedrive {
            id: found.id.to_string(),
        });
    }
    let on_http_sse = found
        .record
        .as_ref()
        .is_some_and(|r| r.transport == jetway_shared::protocol::Transport::HttpSse);
    let client = if on_http_sse {
        Client::http_sse(gateway).await?
    } else {
        Client::new(gateway)?
    };
    let results = drive(&client, &plan, args.timeout).await?;
    if plan.closed {
        client.delete().await?;
    }
    let mut volatile: Vec<String> = diff::DEFAULT_VOLATILE
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    volatile.extend(args.volatile.iter().cloned());
    let report = Report::new(&plan, &results, &volatile);
    let new_id = client.session_id().unwrap_or_else(|| "-".into());
    report.write(
        out,
        &style,
        args.json,
        found.id.as_str(),
        &new_id,
        client.url(),
    )?;
    Ok(report.differing())
}

/// Sends every step; returns each request's outcome, in plan order.
async fn drive(client: &Client, plan: &Plan, timeout: Duration) -> Result<Vec<Outcome>, CliError> {
    let mut pending: Vec<(usize, tokio::task::JoinHandle<Outcome>)> = Vec::new();
    let mut results: Vec<Option<Outcome>> = Vec::new();
    // Messages each running request has received so far.
    let mut seen: Vec<watch::Receiver<usize>> = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Notification { message, after } => {
                if let Some((request, events)) = after
                    && let Some(rx) = seen.get_mut(*request)
                {
                    // Cancel no earlier than the recorded client did; a
                    // request that already ended closes the channel.
                    let _ = tokio::time::timeout(timeout, rx.wait_for(|n| n >= events)).await;
                }
                if let Reply::Json(v) = client.post(message).await? {
                    return Err(CliError::gateway(
                        client.url(),
                        format!("refused a recorded notification: {v}"),
                    ));
                }
            }
            Step::Request(recorded) => {
                let index = results.len();
                results.push(None);
                let (tx, rx) = watch::channel(0);
                seen.push(rx);
                let reply = client.post(&recorded.message).await?;
                let task = tokio::spawn(exchange(
                    client.clone(),
                    reply,
                    recorded.clone(),
                    timeout,
                    tx,
                ));
                let first = index == 0;
                if recorded.wait || first {
                    let outcome = join(task).await;
                    if first {
                        initialized(client, &outcome)?;
                    }
                    results[index] = Some(outcome);
                } else {
                    pending.push((index, task));
                }
            }
        }
    }
    for (index, task) in pending {
        results[index] = Some(join(task).await);
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Outcome::Failed("not run".into())))
        .collect())
}

async fn join(task: tokio::task::JoinHandle<Outcome>) -> Outcome {
    task.await
        .unwrap_or_else(|e| Outcome::Failed(format!("exchange task failed: {e}")))
}

/// After `initialize`: the session must exist, and later requests carry the
/// negotiated protocol version.
fn initialized(client: &Client, outcome: &Outcome) -> Result<(), CliError> {
    let version = match outcome {
        Outcome::Final(v) => v
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .and_then(ProtocolVersion::parse),
        _ => None,
    };
    match (version, client.session_id()) {
        (Some(v), Some(_)) => {
            client.set_protocol(v);
            Ok(())
        }
        _ => Err(CliError::gateway(
            client.url(),
            format!("initialize did not start a session: {outcome:?}"),
        )),
    }
}

/// Reads one request's response stream to its final message, answering
/// server→client requests with the recorded answers; resumes the stream
/// (`Last-Event-ID`) if it ends early.
async fn exchange(
    client: Client,
    reply: Reply,
    recorded: Recorded,
    timeout: Duration,
    seen: watch::Sender<usize>,
) -> Outcome {
    let mut asked: HashMap<String, usize> = HashMap::new();
    let mut reply = reply;
    let mut resumes = 0;
    loop {
        let mut events = match reply {
            Reply::Accepted => return Outcome::Failed("the gateway answered 202".into()),
            Reply::Json(v) => return Outcome::Final(v),
            Reply::Events(events) => events,
        };
        loop {
            let next = match tokio::time::timeout(timeout, events.next_message()).await {
                Err(_) => return Outcome::Failed(format!("no result within {timeout:?}")),
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) | Ok(Err(_)) => break,
            };
            if next.get("id") == Some(&recorded.id) && next.get("method").is_none() {
                return Outcome::Final(next);
            }
            seen.send_modify(|n| *n += 1);
            let (Some(method), Some(id)) =
                (next.get("method").and_then(Value::as_str), next.get("id"))
            else {
                continue;
            };
            let n = asked.entry(method.to_owned()).or_default();
            let mut answer = recorded.answer_for(method, *n).cloned().unwrap_or_else(|| {
                jsonrpc::error(
                    Some(id),
                    jsonrpc::INTERNAL_ERROR,
                    "redrive: the recording has no answer to this request",
                )
            });
            *n += 1;
            answer["id"] = id.clone();
            if let Err(e) = client.post(&answer).await {
                return Outcome::Failed(format!("answering {method}: {}", e.line()));
            }
        }
        // The stream ended without a final message.
        if recorded.status == Status::Cancelled || resumes >= 3 {
            return Outcome::Ended;
        }
        let Some(last) = events.last_event_id.clone() else {
            return Outcome::Ended;
        };
        resumes += 1;
        reply = match client.resume(&last).await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.line()),
        };
    }
}
