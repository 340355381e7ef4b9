//! `jetway sessions show <id>`: the session record and its streams — the
//! GET stream and one stream per request with method, id, status and event
//! count — read from the session's messages in one pass.

use super::{
    client_name, locate, state_name,
    streams::{Status, Streams, streams},
};
use crate::{
    args::ShowArgs,
    bus::Bus,
    error::{CliError, human},
    message::show_id,
    output::{Paint, Style, Table},
    replay::reader::{Reader, Start},
    timefmt::rfc3339,
};
use serde_json::{Value, json};
use std::io::Write;

pub async fn run(
    bus: &Bus,
    args: &ShowArgs,
    style: &Style,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let found = locate(bus, &args.id).await?;
    let messages = Reader::open(bus, &found.stream, &found.id, Start::Beginning, false)
        .await?
        .collect()
        .await?;
    let s = streams(&messages);
    if args.json {
        let record = found
            .record
            .as_ref()
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null));
        let requests: Vec<Value> = s
            .requests
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                v["time"] = json!(rfc3339(r.time_ms));
                v
            })
            .collect();
        let doc = json!({
            "id": found.id.as_str(),
            "record": record,
            "retention_secs": found.retention.as_secs(),
            "messages": {"in": s.messages_in, "out": s.messages_out},
            "last_activity": rfc3339(s.last_ms),
            "get_stream": s.get,
            "requests": requests,
        });
        serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    write_record(out, style, &found, &s)?;
    writeln!(out)?;
    write_streams(out, style, &s)
}

fn write_record(
    out: &mut impl Write,
    style: &Style,
    found: &super::Found,
    s: &Streams,
) -> Result<(), CliError> {
    let label = |t: &str| style.pad(Some(Paint::Bold), t, 15);
    writeln!(
        out,
        "{}{}",
        label("session"),
        style.paint(Paint::Cyan, found.id.as_str())
    )?;
    match &found.record {
        Some(r) => {
            writeln!(out, "{}{}", label("state"), state_name(r.state))?;
            writeln!(out, "{}{}", label("client"), client_name(r))?;
            writeln!(out, "{}{}", label("protocol"), r.protocol_version)?;
            writeln!(out, "{}{}", label("transport"), r.transport)?;
            writeln!(
                out,
                "{}{} by {}",
                label("created"),
                rfc3339(r.created_ms),
                r.created_by
            )?;
            writeln!(out, "{}{}", label("last seen"), rfc3339(r.last_seen_ms))?;
            writeln!(
                out,
                "{}{}",
                label("log level"),
                r.log_level.map_or("-", |l| l.as_str())
            )?;
            let caps = r
                .client
                .get("capabilities")
                .map(Value::to_string)
                .unwrap_or_else(|| "{}".into());
            writeln!(out, "{}{caps}", label("capabilities"))?;
        }
        None => writeln!(
            out,
            "{}{}",
            label("state"),
            style.paint(Paint::Yellow, "unknown (the record has aged out)")
        )?,
    }
    writeln!(out, "{}{}", label("last activity"), rfc3339(s.last_ms))?;
    writeln!(
        out,
        "{}{} in, {} out",
        label("messages"),
        s.messages_in,
        s.messages_out
    )?;
    writeln!(out, "{}{}", label("retention"), human(found.retention))?;
    Ok(())
}

fn write_streams(out: &mut impl Write, style: &Style, s: &Streams) -> Result<(), CliError> {
    let mut table = Table::new(&[
        "STREAM", "REQUEST", "METHOD", "STATUS", "EVENTS", "STARTED", "GATEWAY", "WORKERS",
    ])
    .right_align(&[4]);
    let get_status = if s.get.closed {
        "closed".to_owned()
    } else {
        format!("open ({} connections)", s.get.connections)
    };
    table.row(vec![
        ("get".into(), Some(Paint::Cyan)),
        ("-".into(), None),
        ("-".into(), None),
        (get_status, None),
        (s.get.events.to_string(), None),
        ("-".into(), None),
        ("-".into(), None),
        ("-".into(), None),
    ]);
    for r in &s.requests {
        let method = match &r.target {
            Some(t) => format!("{} {t}", r.method),
            None => r.method.clone(),
        };
        let paint = match r.status {
            Status::Finished => Paint::Green,
            Status::Failed => Paint::Red,
            Status::Cancelled => Paint::Yellow,
            Status::Open => Paint::Magenta,
        };
        let workers: Vec<&str> = r.workers.iter().map(String::as_str).collect();
        table.row(vec![
            (r.stream.clone(), Some(Paint::Cyan)),
            (show_id(&r.id), None),
            (method, None),
            (r.status.as_str().to_owned(), Some(paint)),
            (r.events.to_string(), None),
            (rfc3339(r.time_ms), Some(Paint::Dim)),
            (r.gateway.clone().unwrap_or_else(|| "-".into()), None),
            (
                if workers.is_empty() {
                    "-".into()
                } else {
                    workers.join(",")
                },
                None,
            ),
        ]);
    }
    table.write(out, style)?;
    Ok(())
}
