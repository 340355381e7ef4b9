//! What Jetway's gateway and worker binaries are started with: an instance
//! id (given, or generated unique per process), the NATS URL and an
//! OS-chosen port.

use std::ffi::OsString;
use std::sync::atomic::{AtomicU32, Ordering};

/// A unique-enough instance id: `<kind>-<pid>-<n>`.
pub(crate) fn next_instance_id(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The first arguments of a Jetway binary.
pub(crate) fn jetway_args(nats_url: &str, instance_id: &str) -> Vec<OsString> {
    vec![
        "--nats-url".into(),
        nats_url.into(),
        "--instance-id".into(),
        instance_id.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]
}
