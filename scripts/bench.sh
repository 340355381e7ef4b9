#!/usr/bin/env bash
# The benchmark: Jetway against the same tools served directly by rmcp, side by
# side in one run (see BENCHMARKS.md). Installs the pinned nats-server into
# .local/ if missing, builds the release binaries, raises the open-files limit
# (10,000 idle SSE streams need as many sockets in the gateway and in the
# client), then runs every scenario. jetway-bench starts and stops everything
# itself: a nats-server per scenario (temp store, random ports), gateways,
# workers and the rmcp baseline; all traffic stays on 127.0.0.1.
#
# Scenarios, in order (full run and --smoke alike): tools_call, idle_streams,
# resume, crash (worker SIGKILL → result, default lease), replay, scaling,
# claims (what a request's claim costs against a plain publish), renewals
# (what lease renewals cost with 1,000 requests in flight) and bridge (echo
# through a bridge worker against its upstream, a jetway-baseline, called
# directly).
#
# Usage: scripts/bench.sh                 (full run, a few minutes)
#        scripts/bench.sh --smoke         (every scenario, tiny counts, < 1 min)
#        scripts/bench.sh --only crash,claims,renewals --out /tmp/r.json
#        scripts/bench.sh --only bridge      (the bridge scenario, < 2 min)
#        scripts/bench.sh --only crash --crash-ack-wait-secs 6   (another lease)
# Output: a Markdown report on stdout, target/bench/results.{json,md}
# (smoke: target/bench/smoke.{json,md}), process logs in target/bench/logs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-nats.sh
export NATS_SERVER_BIN="$PWD/.local/bin/nats-server"

want=65536
hard="$(ulimit -Hn)"
if [[ "${hard}" != unlimited && "${hard}" -lt "${want}" ]]; then
    want="${hard}"
fi
ulimit -n "${want}"
echo "open-files limit: $(ulimit -n) (hard limit ${hard})"
if [[ "$(ulimit -n)" -lt 11000 ]]; then
    echo "warning: the idle-streams scenario needs an open-files limit above 11000;" \
        "it will open fewer streams and say so" >&2
fi

cargo build --release --workspace --bins
echo "cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# A relative path: it is printed in the report (BENCHMARKS.md).
exec "${CARGO_TARGET_DIR:-target}/release/jetway-bench" all --nats-server .local/bin/nats-server "$@"
