#!/usr/bin/env bash
# Installs what the observability backends of the tests need from the OS: Prometheus, Debian's
# package `prometheus` (Zipkin's server is a jar that scripts/observability/zipkin.ts fetches with
# Maven into the user cache on first use). Idempotent: does nothing when a prometheus binary is
# already there (on PATH, or SAGAFLOW_PROMETHEUS_BIN).
#
# Exit code 0 also when Prometheus cannot be installed here (not Debian, no root, no package): the
# tests that need it then skip loudly, saying so; this script prints why on stderr.
set -uo pipefail

have_prometheus() {
  if [ -n "${SAGAFLOW_PROMETHEUS_BIN:-}" ]; then [ -x "$SAGAFLOW_PROMETHEUS_BIN" ]; else command -v prometheus >/dev/null 2>&1; fi
}

if have_prometheus; then
  echo "observability: prometheus present ($( (${SAGAFLOW_PROMETHEUS_BIN:-prometheus} --version 2>&1 || true) | head -n1))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "observability: no apt-get here; install Prometheus yourself and put it on PATH (or set SAGAFLOW_PROMETHEUS_BIN)" >&2
  exit 0
fi

SUDO=''
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO='sudo -n'; else
    echo "observability: not root and no password-less sudo: cannot apt-get install prometheus" >&2
    exit 0
  fi
fi

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

echo "observability: installing Debian package prometheus (once)"
started=$(date +%s)
# Package lists may be missing or stale on a fresh machine: update once, retry the install once.
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null 2>&1 || echo "observability: apt-get update failed" >&2
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; then
    echo "observability: apt-get install prometheus failed; the Prometheus tests will skip" >&2
    exit 0
  fi
fi

# Should an init system have started the packaged service anyway, stop it: it is not ours to keep.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

echo "observability: $(prometheus --version 2>&1 | head -n1) installed in $(( $(date +%s) - started )) s"
