# Sourced by the install scripts (scripts/*/install.sh): installs Debian packages once, the same way
# for every optional tool the tests use. Never fails the caller's shell: it returns 1 and says why
# on stderr, so each caller decides whether a missing tool is fatal or makes its tests skip loudly.
#
#   debian_install <label> <package>...   # apt-get install, with one `apt-get update` and retry
#   debian_sudo                           # sets SUDO ('' as root, 'sudo -n' with password-less sudo)

debian_sudo() {
  local label=$1
  SUDO=''
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$label: no apt-get here; install the packages yourself" >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO='sudo -n'; else
      echo "$label: not root and no password-less sudo: cannot apt-get install" >&2
      return 1
    fi
  fi
}

debian_install() {
  local label=$1
  shift
  debian_sudo "$label" || return 1
  echo "$label: installing Debian packages $* (once)"
  # Package lists may be missing or stale on a fresh machine: update once, retry the install once.
  local install=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@")
  if ! "${install[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null 2>&1 || echo "$label: apt-get update failed" >&2
    if ! "${install[@]}" >/dev/null; then
      echo "$label: apt-get install $* failed" >&2
      return 1
    fi
  fi
}
