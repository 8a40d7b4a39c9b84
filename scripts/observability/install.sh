#!/usr/bin/env bash
# Installs what the observability backends of the tests need from the OS: Prometheus, Debian's
# package `prometheus` (Zipkin's server is a jar that scripts/observability/zipkin.ts fetches with
# Maven into the user cache on first use). Idempotent: does nothing when a prometheus binary is
# already there (on PATH, or SAGAFLOW_PROMETHEUS_BIN).
#
# Exit code 0 also when Prometheus cannot be installed here (not Debian, no root, no package): the
# tests that need it then skip loudly, saying so; this script prints why on stderr.
set -uo pipefail
. "$(dirname "$0")/../lib/debian-packages.sh"

have_prometheus() {
  if [ -n "${SAGAFLOW_PROMETHEUS_BIN:-}" ]; then [ -x "$SAGAFLOW_PROMETHEUS_BIN" ]; else command -v prometheus >/dev/null 2>&1; fi
}

if have_prometheus; then
  echo "observability: prometheus present ($( (${SAGAFLOW_PROMETHEUS_BIN:-prometheus} --version 2>&1 || true) | head -n1))"
  exit 0
fi

debian_sudo observability || exit 0

# The package's maintainer scripts would start a system-wide Prometheus on :9090 (all interfaces).
# The tests never use it (each starts its own on a free loopback port), so keep it from starting:
# policy-rc.d exiting 101 tells invoke-rc.d "action forbidden". Only ours is removed afterwards.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=''
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# temporary, from sagaflow scripts/observability/install.sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  OWN_POLICY=1
fi
cleanup() { [ -n "$OWN_POLICY" ] && $SUDO rm -f "$POLICY"; }
trap cleanup EXIT

started=$(date +%s)
if ! debian_install observability prometheus; then
  echo "observability: the Prometheus tests will skip" >&2
  exit 0
fi

# Should an init system have started the packaged service anyway, stop it: it is not ours to keep.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

echo "observability: $(prometheus --version 2>&1 | head -n1) installed in $(( $(date +%s) - started )) s"
