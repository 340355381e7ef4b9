//! `jetway replay <id>`: a session's full transcript, both directions, in
//! stream order — the order JetStream stored the messages, which is the
//! order the gateways and workers saw them.
//!
//! - [`reader`] — the ordered consumer over `jetway.<p>.<sid>.>`.
//! - [`filter`] — `--until`, `--stream`, `--request`.
//! - [`render`] — aligned text or JSON Lines.
//!
//! `--redrive` hands over to [`crate::redrive`].

pub mod filter;
pub mod reader;
pub mod render;

use crate::{
    args::ReplayArgs,
    bus::Bus,
    error::CliError,
    message::{Control, What, parse_request_id},
    output::Style,
    sessions::locate,
    timefmt::{now_ms, parse_when},
};
use filter::{Filter, Verdict};
use jetway_shared::subjects::StreamKey;
use reader::{Reader, Start};
use render::Renderer;
use std::io::Write;
use std::time::Duration;

pub async fn run(
    bus: &Bus,
    args: &ReplayArgs,
    style: Style,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let now = now_ms();
    let since = args
        .since
        .as_deref()
        .map(|v| parse_when("--since", v, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|v| parse_when("--until", v, now))
        .transpose()?;
    if let Some(key) = &args.stream
        && StreamKey::parse(key).is_none()
    {
        return Err(CliError::BadStreamKey(key.clone()));
    }
    let found = locate(bus, &args.id).await?;
    let start = since.map_or(Start::Beginning, Start::Time);
    let mut reader = Reader::open(bus, &found.stream, &found.id, start, args.follow).await?;
    let mut filter = Filter::new(
        until,
        args.stream.clone(),
        args.request.as_deref().map(parse_request_id),
    );
    let mut renderer = Renderer::new(args.json, style);
    // Following up to a time in the future ends at that time, once the
    // stored messages are out.
    let deadline = tokio::time::sleep(match until {
        Some(u) => Duration::from_millis(u.saturating_sub(now_ms())),
        None => Duration::from_secs(365 * 24 * 3600),
    });
    tokio::pin!(deadline);
    loop {
        let live = args.follow && until.is_some() && reader.caught_up();
        let next = tokio::select! {
            m = reader.next() => m,
            () = &mut deadline, if live => None,
        };
        let Some(m) = next else { break };
        let m = m?;
        match filter.check(&m) {
            Verdict::Stop => break,
            Verdict::Show => renderer.write(out, &m)?,
            Verdict::Skip => {}
        }
        if reader.caught_up() {
            out.flush()?;
        }
        // Nothing follows the session-closed marker.
        if args.follow && m.what == What::Control(Control::Closed) {
            break;
        }
    }
    out.flush()?;
    // A scope that matched nothing names something this session never had
    // (unless `--since` cut it off).
    if !filter.matched() && since.is_none() {
        let what = match (&args.request, &args.stream) {
            (Some(r), _) => format!("request {r}"),
            (None, Some(k)) => format!("stream {k}"),
            (None, None) => String::new(),
        };
        return Err(CliError::NotInSession {
            id: found.id.to_string(),
            what,
        });
    }
    Ok(())
}
