#!/usr/bin/env bash
# Runs every test: unit tests, integration tests against a real nats-server
# with real gateway and worker processes, and the official MCP conformance
# suite. Installs what it needs (pinned) into .local/ if missing.
#
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-nats.sh
export NATS_SERVER_BIN="$PWD/.local/bin/nats-server"
# Upstream MCP servers for the bridge tests (server-everything, FastMCP).
bash scripts/install-upstreams.sh
# Prometheus and promtool for the metrics test (Debian package, pinned).
bash scripts/install-prometheus.sh
# The load balancer of the HTTP+SSE tests (HAProxy, Debian's package, pinned).
bash scripts/install-haproxy.sh

# Build the binaries the integration tests start, once, before the tests run.
cargo build --workspace --bins
export JETWAY_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug"

cargo test --workspace "$@"
