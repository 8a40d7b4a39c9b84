#!/usr/bin/env bash
# Installs the foreign clients of the conformance tests (test/conformance/) from Debian: python3-pika
# (a RabbitMQ client for Python, used by /usr/bin/python3) and kcat (a Kafka command-line client).
# They are written by others, on purpose: the tests prove a service needs nothing of sagaflow's to
# take part in a saga. Idempotent: does nothing when both are present.
#
# Exit code 0 also when they cannot be installed here (not Debian, no root, no package): the tests
# that need them then skip loudly, saying so; this script prints why on stderr.
set -uo pipefail

have_pika() { /usr/bin/python3 -c 'import pika' >/dev/null 2>&1; }
have_kcat() { command -v kcat >/dev/null 2>&1; }

if have_pika && have_kcat; then
  echo "conformance: python3-pika $(/usr/bin/python3 -c 'import pika; print(pika.__version__)') and $(kcat -V 2>&1 | head -n1) present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "conformance: no apt-get here; install python3-pika (for /usr/bin/python3) and kcat yourself" >&2
  exit 0
fi

SUDO=''
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO='sudo -n'; else
    echo "conformance: not root and no password-less sudo: cannot apt-get install python3-pika kcat" >&2
    exit 0
  fi
fi

echo "conformance: installing Debian packages python3-pika and kcat (once)"
started=$(date +%s)
# Package lists may be missing or stale on a fresh machine: update once, retry the install once.
apt_install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pika kcat "$@"; }
if ! apt_install >/dev/null 2>&1; then
  $SUDO apt-get update -qq >/dev/null 2>&1 || echo "conformance: apt-get update failed" >&2
  if ! apt_install; then
    echo "conformance: apt-get install python3-pika kcat failed; the conformance tests will skip" >&2
    exit 0
  fi
fi
echo "conformance: python3-pika and kcat installed in $(( $(date +%s) - started )) s"
