#!/usr/bin/env bash
# Installs the foreign clients of the conformance tests (test/conformance/) from Debian: python3-pika
# (a RabbitMQ client for Python, used by /usr/bin/python3) and kcat (a Kafka command-line client).
# They are written by others, on purpose: the tests prove a service needs nothing of sagaflow's to
# take part in a saga. Idempotent: does nothing when both are present.
#
# Exit code 0 also when they cannot be installed here (not Debian, no root, no package): the tests
# that need them then skip loudly, saying so; this script prints why on stderr.
set -uo pipefail
. "$(dirname "$0")/../lib/debian-packages.sh"

have_pika() { /usr/bin/python3 -c 'import pika' >/dev/null 2>&1; }
have_kcat() { command -v kcat >/dev/null 2>&1; }

if have_pika && have_kcat; then
  echo "conformance: python3-pika $(/usr/bin/python3 -c 'import pika; print(pika.__version__)') and $(kcat -V 2>&1 | head -n1) present"
  exit 0
fi

started=$(date +%s)
if ! debian_install conformance python3-pika kcat; then
  echo "conformance: python3-pika and kcat are missing; the conformance tests will skip" >&2
  exit 0
fi
echo "conformance: python3-pika and kcat installed in $(( $(date +%s) - started )) s"
