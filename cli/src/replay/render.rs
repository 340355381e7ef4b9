//! How a replayed message is printed: one aligned line for people, or one
//! JSON object per line (the raw message with its metadata) for tools.

use crate::{
    message::{Direction, Stored, What, show_id},
    output::{Paint, Style, truncate},
    sessions::streams::target,
    timefmt::{rfc3339, system_time},
};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;

/// Prints replayed messages.
pub enum Renderer {
    Human(Human),
    Json,
}

impl Renderer {
    pub fn new(json: bool, style: Style) -> Self {
        if json {
            Renderer::Json
        } else {
            Renderer::Human(Human {
                style,
                stream_width: 17,
                event_width: 22,
                instance_width: 10,
            })
        }
    }

    pub fn write(&mut self, out: &mut impl Write, m: &Stored) -> std::io::Result<()> {
        match self {
            Renderer::Human(h) => h.write(out, m),
            Renderer::Json => {
                serde_json::to_writer(&mut *out, &JsonLine::from(m))?;
                out.write_all(b"\n")
            }
        }
    }
}

/// Aligned text lines: time, direction, stream, event id, instance, what,
/// trace id. Column widths grow to the widest value seen so far.
pub struct Human {
    style: Style,
    stream_width: usize,
    event_width: usize,
    instance_width: usize,
}

impl Human {
    /// Writes one line straight into `out` (no per-column strings: this
    /// runs for every message of a replay).
    fn write(&mut self, out: &mut impl Write, m: &Stored) -> std::io::Result<()> {
        let stream = m.stream.as_deref().unwrap_or("-");
        let event = m.event_id.as_deref().unwrap_or("-");
        let instance = m.instance.as_deref().unwrap_or("-");
        self.stream_width = self.stream_width.max(stream.len());
        self.event_width = self.event_width.max(event.len());
        self.instance_width = self.instance_width.max(instance.len());
        let style = self.style;
        let on = |p: Paint| style.codes(p).0;
        let off = |p: Paint| style.codes(p).1;
        let time = humantime::format_rfc3339_millis(system_time(m.time_ms));
        let arrow = match m.direction {
            Direction::In => Paint::Cyan,
            Direction::Out => Paint::Green,
        };
        let (what, paint) = describe(m);
        let what = crate::output::printable(&what);
        write!(
            out,
            "{}{time}{}  {}{}{}  {stream:<sw$}  {}{event:<ew$}{}  {}{instance:<iw$}{}  ",
            on(Paint::Dim),
            off(Paint::Dim),
            on(arrow),
            m.direction.arrow(),
            off(arrow),
            on(Paint::Dim),
            off(Paint::Dim),
            on(Paint::Magenta),
            off(Paint::Magenta),
            sw = self.stream_width,
            ew = self.event_width,
            iw = self.instance_width,
        )?;
        match paint {
            Some(p) => write!(out, "{}{what}{}", on(p), off(p))?,
            None => out.write_all(what.as_bytes())?,
        }
        if let Some(t) = &m.trace_id {
            write!(out, "  {}trace={t}{}", on(Paint::Dim), off(Paint::Dim))?;
        }
        out.write_all(b"\n")
    }
}

/// The "what" column: method (and its target or a short detail),
/// `response <id>`, `error <id> <code> <message>`, or a control marker.
pub fn describe(m: &Stored) -> (String, Option<Paint>) {
    match &m.what {
        What::Request { method, id } => {
            let mut text = format!("{method} id={}", show_id(id));
            if let Some(t) = m.message.as_ref().and_then(target) {
                text.push(' ');
                text.push_str(&t);
            }
            (text, Some(Paint::Bold))
        }
        What::Notification { method } => {
            let detail = m
                .message
                .as_ref()
                .and_then(|v| v.get("params"))
                .and_then(|p| notification_detail(method, p));
            match detail {
                Some(d) => (format!("{method} {d}"), None),
                None => (method.clone(), None),
            }
        }
        What::Response { id } => (format!("response {}", show_id(id)), None),
        What::Error { id, code, message } => (
            format!("error {} {code} {}", show_id(id), truncate(message, 60)),
            Some(Paint::Red),
        ),
        What::Control(c) => (format!("[{}]", c.as_str()), Some(Paint::Yellow)),
        What::Other => (
            format!("({} bytes, not JSON-RPC)", m.payload.len()),
            Some(Paint::Red),
        ),
    }
}

fn notification_detail(method: &str, params: &Value) -> Option<String> {
    match method {
        "notifications/progress" => {
            let p = params.get("progress")?;
            Some(match params.get("total") {
                Some(t) => format!("{p}/{t}"),
                None => p.to_string(),
            })
        }
        "notifications/message" => {
            let level = params.get("level").and_then(Value::as_str).unwrap_or("");
            let data = params.get("data")?;
            // Loggers often send `{"msg": "…"}`: show the text itself.
            let text = ["msg", "message"]
                .iter()
                .find_map(|k| data.get(*k).and_then(Value::as_str))
                .or(data.as_str());
            let data = match text {
                Some(t) => t.to_owned(),
                None => data.to_string(),
            };
            Some(format!("{level}: {}", truncate(&data, 60)))
        }
        "notifications/cancelled" => {
            Some(format!("requestId={}", show_id(params.get("requestId")?)))
        }
        "notifications/resources/updated" => Some(params.get("uri")?.as_str()?.to_owned()),
        _ => None,
    }
}

/// One line of `replay --json`.
#[derive(Serialize)]
struct JsonLine<'a> {
    seq: u64,
    subject: &'a str,
    time: String,
    time_ms: u64,
    direction: &'static str,
    stream: Option<&'a str>,
    event_id: Option<&'a str>,
    instance: Option<&'a str>,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    control: Option<&'static str>,
    #[serde(rename = "final")]
    is_final: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    headers: &'a BTreeMap<String, Vec<String>>,
    /// The JSON-RPC message; `null` for control markers.
    message: Option<&'a Value>,
    /// The payload as text when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
}

impl<'a> From<&'a Stored> for JsonLine<'a> {
    fn from(m: &'a Stored) -> Self {
        let (kind, control) = match &m.what {
            What::Request { .. } => ("request", None),
            What::Notification { .. } => ("notification", None),
            What::Response { .. } => ("response", None),
            What::Error { .. } => ("error", None),
            What::Control(c) => ("control", Some(c.as_str())),
            What::Other => ("other", None),
        };
        let payload = (m.message.is_none() && !m.payload.is_empty())
            .then(|| String::from_utf8_lossy(&m.payload).into_owned());
        Self {
            seq: m.seq,
            subject: &m.subject,
            time: rfc3339(m.time_ms),
            time_ms: m.time_ms,
            direction: m.direction.as_str(),
            stream: m.stream.as_deref(),
            event_id: m.event_id.as_deref(),
            instance: m.instance.as_deref(),
            kind,
            control,
            is_final: m.is_final,
            trace_id: m.trace_id.as_deref(),
            headers: &m.headers,
            message: m.message.as_ref(),
            payload,
        }
    }
}
