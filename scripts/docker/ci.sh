#!/usr/bin/env bash
# The Docker part of CI (called by .ci/run after the tests on local services), on a real engine:
#
#   1. the engine: Debian's docker.io, debootstrap and docker-compose; dockerd started in the
#      background unless one answers (and stopped at the end, only if started here);
#   2. the images: the official ones when all are present locally, else the local stand-ins of
#      scripts/docker/offline-images.sh (no image registry is needed; cached between runs);
#   3. test/docker/: `docker build` and the image HEALTHCHECK, then the compose stack on RabbitMQ
#      and on the Kafka overlay (SAGAFLOW_DOCKER_TESTS=require: a skip would be a failure);
#   4. a subset of the integration and end-to-end tests on testcontainers-started Postgres,
#      RabbitMQ and Kafka (SAGAFLOW_TEST_SERVICES=containers; which and why: TESTCONTAINERS_SUBSET).
#
# Prints the time of each part at the end. Run it alone: `bash scripts/docker/ci.sh`.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/docker/lib.sh
. scripts/docker/lib.sh

TIMINGS="$(mktemp /tmp/sagaflow-docker-timings.XXXXXX)"
export SAGAFLOW_DOCKER_TIMINGS="$TIMINGS"
part() { printf '%s: %s s\n' "$1" "$(elapsed "$2")" >> "$TIMINGS"; }
t_all="$(now)"

summary() {
  local rc=$?
  printf '%s: %s s\n' "docker CI, total" "$(elapsed "$t_all")" >> "$TIMINGS"
  echo "== docker: times"
  sed 's/^/  /' "$TIMINGS"
  rm -f "$TIMINGS"
  bash scripts/docker/engine.sh stop || true
  exit "$rc"
}
trap summary EXIT

echo "== docker: engine"
t="$(now)"; bash scripts/docker/engine.sh install; part "engine install" "$t"
t="$(now)"; bash scripts/docker/engine.sh start; part "engine start" "$t"

echo "== docker: images"
official=(postgres:16 rabbitmq:3.13-management apache/kafka:4.4.0 node:20-bookworm-slim)
if [ -z "${SAGAFLOW_POSTGRES_IMAGE:-}${SAGAFLOW_RABBITMQ_IMAGE:-}${SAGAFLOW_KAFKA_IMAGE:-}${SAGAFLOW_NODE_IMAGE:-}" ]; then
  if docker image inspect "${official[@]}" > /dev/null 2>&1; then
    dlog "the official images are present: using them"
  else
    dlog "the official images are not all present (no image registry here): building the local stand-ins"
    exports="$(bash scripts/docker/offline-images.sh)"
    eval "$exports"
    echo "$exports"
  fi
else
  dlog "images named by the environment: postgres=${SAGAFLOW_POSTGRES_IMAGE:-default} rabbitmq=${SAGAFLOW_RABBITMQ_IMAGE:-default} kafka=${SAGAFLOW_KAFKA_IMAGE:-default} node=${SAGAFLOW_NODE_IMAGE:-default}"
fi

echo "== docker: image build, HEALTHCHECK, compose stacks (test/docker)"
# The stack tests need no test services of their own: the local Postgres and RabbitMQ satisfy the
# global setup, and no Kafka broker is started for them.
t="$(now)"
SAGAFLOW_DOCKER_TESTS=require SAGAFLOW_TEST_SERVICES=local SAGAFLOW_TEST_KAFKA=skip \
  npx vitest run test/docker --no-file-parallelism
part "test/docker (image build + HEALTHCHECK, compose RabbitMQ, compose Kafka)" "$t"

echo "== docker: integration and end-to-end subset on testcontainers-started services"
# Every file here takes its services from the global setup, so on containers it runs against the
# container Postgres, RabbitMQ and Kafka. Left out: rabbitmq-faults and the RabbitMQ end-to-end
# (they inject faults with the host's rabbitmqctl, i.e. into the local broker), the Kafka faults,
# smoke and end-to-end files (they start the project's own broker whatever the services are), the
# unit and static tests (no services), and for time the CLI-process-heavy cli test and replay
# walkthrough (the compose runs drive the CLI in the image; redrive stays as the CLI end-to-end);
# all of them ran on the local services above.
TESTCONTAINERS_SUBSET=(
  test/contract/rabbitmq.contract.test.ts
  test/contract/kafka.contract.test.ts
  test/integration/migrations.test.ts
  test/integration/inbox-outbox.test.ts
  test/integration/worker
  test/integration/client.test.ts
  test/integration/admin-http.test.ts
  test/integration/local-steps.test.ts
  test/integration/container-check.test.ts
  test/e2e/redrive.e2e.test.ts
)
t="$(now)"
SAGAFLOW_TEST_SERVICES=containers npx vitest run "${TESTCONTAINERS_SUBSET[@]}"
part "testcontainers subset (${#TESTCONTAINERS_SUBSET[@]} files)" "$t"
