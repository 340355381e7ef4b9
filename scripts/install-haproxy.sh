#!/usr/bin/env bash
# Installs the load balancer the HTTP+SSE tests put in front of gateways
# (tests/tests/http_sse.rs, jetway_harness::LoadBalancer): HAProxy from
# Debian 12 (bookworm), pinned to the exact package version below.
#
# Usage: scripts/install-haproxy.sh   (idempotent; silent when up to date)
#
# Installing needs root (apt-get), as in CI. Without root, and with no
# HAProxy of the pinned version, it says what is missing and exits 1; set
# JETWAY_HAPROXY_BIN to use another HAProxy binary instead (the tests use
# only plain HTTP mode: round robin, health checks, path rewriting).
set -euo pipefail

HAPROXY_VERSION="2.6.12-1+deb12u4"   # Debian bookworm's haproxy package

die() { printf 'install-haproxy.sh: error: %s\n' "$*" >&2; exit 1; }

if [[ -n "${JETWAY_HAPROXY_BIN:-}" ]]; then
  [[ -x "$JETWAY_HAPROXY_BIN" ]] || die "JETWAY_HAPROXY_BIN=$JETWAY_HAPROXY_BIN is not an executable"
  exit 0
fi

installed_version() { dpkg-query -W -f='${Version}' haproxy 2>/dev/null || true; }

if [[ "$(installed_version)" == "$HAPROXY_VERSION" ]] && [[ -x /usr/sbin/haproxy ]]; then
  exit 0
fi

command -v apt-get >/dev/null 2>&1 ||
  die "haproxy $HAPROXY_VERSION is not installed and apt-get is not available; install HAProxy 2.6 and set JETWAY_HAPROXY_BIN=/path/to/haproxy"
if [[ "$(id -u)" != 0 ]]; then
  die "haproxy $HAPROXY_VERSION is not installed (found: '$(installed_version)'); run as root: apt-get install -y haproxy=$HAPROXY_VERSION, or set JETWAY_HAPROXY_BIN=/path/to/haproxy"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends "haproxy=$HAPROXY_VERSION" >/dev/null ||
  die "apt-get could not install haproxy=$HAPROXY_VERSION (is this Debian 12?)"
# The package starts a system-wide haproxy; the tests start their own.
if command -v service >/dev/null 2>&1; then service haproxy stop >/dev/null 2>&1 || true; fi
[[ "$(installed_version)" == "$HAPROXY_VERSION" ]] || die "haproxy is not $HAPROXY_VERSION after install"
printf 'install-haproxy.sh: installed haproxy %s\n' "$HAPROXY_VERSION"
