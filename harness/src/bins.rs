//! Where the binaries come from.
//!
//! - [`jetway_bin`]: `jetway-gateway`, `jetway-worker`, … from
//!   `JETWAY_BIN_DIR` if set, else from `<target-dir>/debug/` after one
//!   `cargo build --bins -q` in the workspace root per process. Builders take
//!   an explicit path instead (`bin(…)`), as the benchmark does.
//! - [`nats_server_bin`]: `NATS_SERVER_BIN` if set, else
//!   `<workspace>/.local/bin/nats-server` (installed by
//!   `scripts/install-nats.sh`), else `nats-server` on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use crate::error::{HarnessError, Result};

/// The Cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative paths are taken
/// from the workspace root) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The directory holding the Jetway binaries, building them on first use.
pub fn jetway_bin_dir() -> Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("JETWAY_BIN_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        build_bins()
    })
    .clone()
    .map_err(|detail| HarnessError::Build {
        dir: workspace_root(),
        detail,
    })
}

fn build_bins() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let out = std::process::Command::new(&cargo)
        .args(["build", "--bins", "-q"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cargo:?} build --bins: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build --bins -q` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir().join("debug"))
}

/// Path of the Jetway binary `name` (e.g. `"jetway-gateway"`).
pub fn jetway_bin(name: &str) -> Result<PathBuf> {
    let dir = jetway_bin_dir()?;
    let path = dir.join(name);
    if !path.is_file() {
        return Err(HarnessError::NotFound {
            what: format!("binary {name} in {}", dir.display()),
            hint: format!(
                "set JETWAY_BIN_DIR, or check that the workspace builds a binary named {name}"
            ),
        });
    }
    Ok(path)
}

/// Locate the nats-server binary (see the module docs for the order).
pub fn nats_server_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(HarnessError::NotFound {
                what: format!("NATS_SERVER_BIN={}", bin.display()),
                hint: "point it at a nats-server binary".into(),
            });
        }
        return Ok(bin);
    }
    let local = workspace_root().join(".local/bin/nats-server");
    if local.is_file() {
        return Ok(local);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| HarnessError::NotFound {
            what: "nats-server".into(),
            hint: format!(
                "run scripts/install-nats.sh (installs {}), or set NATS_SERVER_BIN, \
                 or put nats-server on PATH",
                local.display()
            ),
        })
}
