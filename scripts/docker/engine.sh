#!/usr/bin/env bash
# A Docker engine for CI and for machines where none runs as a service (no systemd):
#
#   bash scripts/docker/engine.sh install   # Debian's docker.io, debootstrap and docker-compose (v1), when missing
#   bash scripts/docker/engine.sh start     # dockerd in the background, unless an engine already answers
#   bash scripts/docker/engine.sh stop      # stops the dockerd THIS script started, and nothing else
#
# The engine is the one DOCKER_HOST names (unix sockets only), else the default socket. `start`
# records the pid of the daemon it started in a state file next to its log
# (SAGAFLOW_DOCKERD_STATE, default /tmp/sagaflow-dockerd); `stop` stops only that daemon, so an
# engine that was already running before is left alone.
set -Eeuo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"

STATE="${SAGAFLOW_DOCKERD_STATE:-/tmp/sagaflow-dockerd}"

answers() { timeout 10 docker info > /dev/null 2>&1; }

install() {
  local missing=()
  command -v dockerd > /dev/null || missing+=(docker.io)
  command -v debootstrap > /dev/null || missing+=(debootstrap)
  command -v docker-compose > /dev/null || docker compose version > /dev/null 2>&1 || missing+=(docker-compose)
  if [ "${#missing[@]}" -eq 0 ]; then dlog "engine packages already installed"; return; fi
  dlog "installing ${missing[*]} (Debian's packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > "$STATE.apt.log" 2>&1 || { tail -n 30 "$STATE.apt.log" >&2; exit 1; }
}

start() {
  if answers; then dlog "a Docker engine already answers (${DOCKER_HOST:-default socket}); not starting one"; return; fi
  command -v dockerd > /dev/null || { dlog "ERROR: dockerd is not installed (bash scripts/docker/engine.sh install)"; exit 1; }
  local args=()
  case "${DOCKER_HOST:-}" in
    '') ;;
    unix://*) args+=(-H "$DOCKER_HOST" --pidfile "$STATE.dockerd.pid"); mkdir -p "$(dirname "${DOCKER_HOST#unix://}")" ;;
    *) dlog "ERROR: DOCKER_HOST=$DOCKER_HOST does not answer and is not a local socket this script could serve"; exit 1 ;;
  esac
  dlog "starting dockerd (log: $STATE.log)"
  # setsid: the daemon keeps running after this script's shell ends, until `stop`.
  setsid dockerd "${args[@]}" > "$STATE.log" 2>&1 < /dev/null &
  echo $! > "$STATE.pid"
  local deadline=$((SECONDS + 60))
  until answers; do
    if ! kill -0 "$(cat "$STATE.pid")" 2> /dev/null; then tail -n 30 "$STATE.log" >&2; dlog "ERROR: dockerd exited"; rm -f "$STATE.pid"; exit 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then tail -n 30 "$STATE.log" >&2; dlog "ERROR: dockerd did not answer within 60 s"; exit 1; fi
    sleep 0.5
  done
  dlog "dockerd answers (pid $(cat "$STATE.pid")): $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupDriver}}')"
}

stop() {
  [ -f "$STATE.pid" ] || { dlog "no dockerd started by this script; nothing to stop"; return; }
  local pid
  pid="$(cat "$STATE.pid")"
  # A state file left by a run that died may name a pid that is now another process: only a dockerd is stopped.
  if kill -0 "$pid" 2> /dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null | grep -q '^dockerd\b'; then
    dlog "stopping dockerd pid $pid"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2> /dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then dlog "dockerd pid $pid did not stop within 60 s: SIGKILL"; kill -KILL "$pid" 2> /dev/null || true; break; fi
      sleep 0.5
    done
  fi
  rm -f "$STATE.pid"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
