#!/usr/bin/env bash
# Starts a whole local Jetway stack in the foreground: nats-server with
# JetStream (started here, data in .local/stack/nats), one gateway and one
# worker. Clients connect to http://127.0.0.1:8080/mcp. Ctrl-C stops all.
#
# Usage: scripts/stack.sh
# Environment: GATEWAY_PORT (8080), NATS_PORT (4222), WORKER_PORT (9090, its
# /healthz and /readyz), PROFILE (release|debug).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GATEWAY_PORT="${GATEWAY_PORT:-8080}"
NATS_PORT="${NATS_PORT:-4222}"
WORKER_PORT="${WORKER_PORT:-9090}"
PROFILE="${PROFILE:-release}"
DIR=".local/stack"
mkdir -p "$DIR"

bash scripts/install-nats.sh
if [ "$PROFILE" = release ]; then
  cargo build --release --bins
else
  cargo build --bins
fi
BIN="${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stack stopped"
}
trap cleanup EXIT INT TERM

.local/bin/nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$DIR/nats" >"$DIR/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q "Server is ready" "$DIR/nats.log" && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$DIR/nats.log"; echo "nats-server failed to start" >&2; exit 1; }
  sleep 0.1
done

NATS_URL="nats://127.0.0.1:$NATS_PORT"
"$BIN/jetway-gateway" --nats-url "$NATS_URL" --instance-id gateway-1 --listen "127.0.0.1:$GATEWAY_PORT" >"$DIR/gateway.log" 2>&1 &
pids+=($!)
"$BIN/jetway-worker" --nats-url "$NATS_URL" --instance-id worker-1 --listen "127.0.0.1:$WORKER_PORT" >"$DIR/worker.log" 2>&1 &
pids+=($!)

for _ in $(seq 300); do
  if curl -sf "http://127.0.0.1:$GATEWAY_PORT/readyz" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$WORKER_PORT/readyz" >/dev/null 2>&1; then
    echo "Jetway is ready: MCP endpoint http://127.0.0.1:$GATEWAY_PORT/mcp"
    echo "  NATS $NATS_URL (JetStream data in $DIR/nats); logs in $DIR/*.log"
    echo "  Ctrl-C stops the stack."
    wait -n "${pids[@]}" || true
    echo "a stack process exited; see $DIR/*.log" >&2
    exit 1
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$DIR"/*.log; echo "a stack process failed to start" >&2; exit 1; }
  done
  sleep 0.1
done
echo "stack did not become ready; see $DIR/*.log" >&2
exit 1
