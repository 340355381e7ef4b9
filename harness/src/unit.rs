//! Unit tests for the harness's pure logic: ANSI stripping, reading
//! addresses from log lines, the process log, launch commands.

// Test code: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::launch::Launch;
use crate::listen::{address_after, parse_listening_line};
use crate::log::{ProcessLog, strip_ansi};

#[test]
fn ansi_codes_are_stripped() {
    let line = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
                \u{1b}[2mjetway_gateway\u{1b}[0m\u{1b}[2m:\u{1b}[0m listening on 127.0.0.1:40123";
    assert_eq!(
        strip_ansi(line),
        "2026-01-01T00:00:00Z  INFO jetway_gateway: listening on 127.0.0.1:40123"
    );
    assert_eq!(strip_ansi("a\u{1b}]0;title\u{7}b"), "ab");
}

#[test]
fn listening_line_parsing() {
    let addr = |l: &str| parse_listening_line(l).map(|a| a.to_string());
    assert_eq!(
        addr("INFO jetway_gateway: listening on 127.0.0.1:40123").as_deref(),
        Some("127.0.0.1:40123")
    );
    assert_eq!(
        addr("listening on http://127.0.0.1:5/ now").as_deref(),
        Some("127.0.0.1:5")
    );
    assert_eq!(
        addr("listening on addr=127.0.0.1:7,").as_deref(),
        Some("127.0.0.1:7")
    );
    assert_eq!(addr("listening on 127.0.0.1:0"), None);
    assert_eq!(addr("not ready"), None);
}

#[test]
fn nats_server_address_lines() {
    let client = "[1] 2026/01/01 [INF] Listening for client connections on 127.0.0.1:4222";
    assert_eq!(
        address_after(client, "Listening for client connections on ").map(|a| a.port()),
        Some(4222)
    );
    let monitor = "[1] 2026/01/01 [INF] Starting http monitor on 127.0.0.1:8222";
    assert_eq!(
        address_after(monitor, "Starting http monitor on ").map(|a| a.port()),
        Some(8222)
    );
}

#[tokio::test]
async fn process_log_wait_and_bounds() {
    let log = ProcessLog::new("t");
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_for_text(0, Duration::from_secs(5), "ready").await })
    };
    log.push("starting".into());
    log.push("worker ready".into());
    assert_eq!(waiter.await.unwrap().unwrap(), "worker ready");
    // Waiting from the current position ignores earlier lines.
    let pos = log.position();
    let err = log
        .wait_for_text(pos, Duration::from_millis(20), "ready")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("did not appear"), "{err:#}");
    for i in 0..crate::log::MAX_LINES + 10 {
        log.push(format!("line {i}"));
    }
    assert_eq!(log.lines().len(), crate::log::MAX_LINES);
    assert_eq!(log.tail(1), [format!("line {}", crate::log::MAX_LINES + 9)]);
}

#[tokio::test]
async fn process_log_reports_closed_output() {
    let log = ProcessLog::new("t");
    log.attach(&b"only line\n"[..]);
    let err = log
        .wait_for_text(0, Duration::from_secs(5), "never")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("closed its output"), "{err:#}");
    assert!(log.contains("only line"));
}

#[tokio::test]
async fn process_log_copies_lines_to_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/p.log");
    let log = ProcessLog::to_file("p", &path).unwrap();
    log.attach(&b"one\ntwo\n"[..]);
    assert!(log.wait_closed(Duration::from_secs(5)).await);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
}

#[test]
fn launch_puts_the_wrapper_first_and_extra_args_last() {
    let launch = Launch {
        args: vec!["--extra".into()],
        wrapper: vec!["valgrind".into(), "--tool=massif".into()],
        ..Launch::default()
    };
    let cmd = launch.command(Path::new("/bin/gw"), &["--listen".into()]);
    let cmd = cmd.as_std();
    assert_eq!(cmd.get_program(), "valgrind");
    let args: Vec<OsString> = cmd.get_args().map(OsString::from).collect();
    assert_eq!(args, ["--tool=massif", "/bin/gw", "--listen", "--extra"]);
}
