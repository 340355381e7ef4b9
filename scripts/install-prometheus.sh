#!/usr/bin/env bash
# Install a pinned Prometheus (server and promtool) from Debian's packages.
#
# The metrics test (`tests/tests/metrics.rs`) starts a real Prometheus that
# scrapes a running stack, and checks the alert rules with `promtool check
# rules`; both ship in Debian's `prometheus` package. The package's own
# service is not wanted (the test runs its own server on a temp dir), so it is
# stopped and disabled when systemd is present.
#
# Usage: scripts/install-prometheus.sh            (idempotent; needs root)
#        PROMETHEUS_DEB_VERSION=2.42.0+ds-5+deb12u1 scripts/install-prometheus.sh
set -euo pipefail

VERSION="${PROMETHEUS_DEB_VERSION:-2.42.0+ds-5+deb12u1}"

installed_version() {
    dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true
}

if [[ "$(installed_version)" == "${VERSION}" ]] && command -v promtool >/dev/null 2>&1; then
    echo "prometheus ${VERSION} already installed at $(command -v prometheus)"
    exit 0
fi

if [[ "$(id -u)" != "0" ]]; then
    echo "error: installing the Debian package prometheus=${VERSION} needs root;" >&2
    echo "       run: sudo apt-get install -y --no-install-recommends prometheus=${VERSION}" >&2
    exit 1
fi

echo "installing prometheus ${VERSION} (Debian package)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show "prometheus=${VERSION}" >/dev/null 2>&1; then
    apt-get update -qq
fi
# policy-rc.d keeps the package's post-install from starting its service.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [[ ! -e "${POLICY}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${POLICY}"
    chmod +x "${POLICY}"
    CREATED_POLICY=1
fi
trap '[[ ${CREATED_POLICY} == 1 ]] && rm -f "${POLICY}"' EXIT
apt-get install -y -qq --no-install-recommends "prometheus=${VERSION}" >/dev/null

GOT="$(installed_version)"
if [[ "${GOT}" != "${VERSION}" ]]; then
    echo "error: dpkg reports prometheus '${GOT}', expected ${VERSION}" >&2
    exit 1
fi
for tool in prometheus promtool; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
        echo "error: ${tool} not on PATH after installing prometheus ${VERSION}" >&2
        exit 1
    fi
done
echo "installed prometheus ${VERSION} at $(command -v prometheus)"
