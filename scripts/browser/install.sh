#!/usr/bin/env bash
# The browser the dashboard test drives: Debian's Chromium (playwright-core downloads no browser
# here; it is pointed at /usr/bin/chromium). Idempotent: does nothing when it is installed.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown')"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing and this is not root: install it with 'apt-get install -y chromium' (the dashboard browser test skips without it)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
