//! MCP protocol versions Jetway speaks, by era.

/// Legacy (session-based) versions served today, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Version assumed when a request carries no `MCP-Protocol-Version` header.
pub const DEFAULT_HEADER_VERSION: &str = "2025-03-26";

/// The newest version Jetway negotiates.
pub const LATEST: &str = "2025-11-25";

/// True if `v` is a version this gateway serves.
pub fn is_supported(v: &str) -> bool {
    LEGACY_VERSIONS.contains(&v)
}

/// True for versions that still allow JSON-RPC batches (2025-03-26 only).
pub fn allows_batches(v: &str) -> bool {
    v == "2025-03-26"
}

/// True for versions whose POST streams start with a priming event (2025-11-25 on).
pub fn primes_streams(v: &str) -> bool {
    v >= "2025-11-25"
}
