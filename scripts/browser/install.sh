#!/usr/bin/env bash
# The browser the dashboard test drives: Debian's Chromium (playwright-core downloads no browser
# here; it is pointed at /usr/bin/chromium). Idempotent: does nothing when it is installed.
# Fails (exit 1) when it cannot install it: CI must not lose the browser test silently.
set -uo pipefail
. "$(dirname "$0")/../lib/debian-packages.sh"
if [ -x /usr/bin/chromium ]; then
  echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown')"
  exit 0
fi
if ! debian_install browser chromium fonts-dejavu-core; then
  echo "browser: install chromium with 'apt-get install -y chromium' (the dashboard browser test skips without it)" >&2
  exit 1
fi
/usr/bin/chromium --version
