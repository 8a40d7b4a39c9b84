#!/usr/bin/env bash
# The whole stack up and orders flowing, in one command (needs only Docker and Compose v2 or v1):
#
#   bash scripts/docker/demo.sh            # 200 orders on RabbitMQ
#   bash scripts/docker/demo.sh 1000 kafka # 1,000 orders on the Kafka overlay
#
# `up -d --build`, then one publisher container makes the orders (every 10th fails at shipping and
# is compensated) and publishes them, and the saga counts are printed every two seconds until every
# order has ended. The stack keeps running: `docker compose down -v` (with the same -f files for
# Kafka) removes it. Image names come from SAGAFLOW_*_IMAGE as in docker-compose.yml; without
# registry access, first `eval "$(bash scripts/docker/offline-images.sh)"`.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/docker/lib.sh
. scripts/docker/lib.sh

orders="${1:-200}"
files=(-f docker-compose.yml)
case "${2:-rabbitmq}" in
  rabbitmq) ;;
  kafka) files+=(-f docker/compose.kafka.yml) ;;
  *) echo "usage: $0 [ORDERS] [rabbitmq|kafka]" >&2; exit 2 ;;
esac
[[ "$orders" =~ ^[1-9][0-9]{0,5}$ ]] || { echo "ORDERS must be a number from 1 to 999999" >&2; exit 2; }

if docker compose version > /dev/null 2>&1; then compose=(docker compose "${files[@]}"); else compose=(docker-compose "${files[@]}"); fi

t0="$(now)"
dlog "${compose[*]} up -d --build"
"${compose[@]}" up -d --build

# `run` waits for healthy workers (the publisher's depends_on), then makes and publishes the orders.
dlog "publishing $orders orders"
"${compose[@]}" run --rm -T -e LOG_LEVEL=warn --entrypoint /bin/sh publisher -c "
  node -e \"import('/app/dist/examples/order/run.js').then((m) => { for (const o of m.makeOrders($orders)) console.log(JSON.stringify(o)); })\" > /tmp/orders.ndjson &&
  node /app/bin/sagaflow.js publish PlaceOrder --module examples/order --file /tmp/orders.ndjson --json > /tmp/published.json &&
  node -e \"console.log('published', require('/tmp/published.json').published, 'PlaceOrder messages')\""

# Counts straight from the sagas table, through the orchestrator's container.
count='
  const pg = require("/app/node_modules/pg");
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  c.connect()
    .then(() => c.query("SELECT status, count(*)::int AS n FROM sagaflow.sagas GROUP BY 1 ORDER BY 1"))
    .then((r) => { console.log(r.rows.map((x) => x.status + " " + x.n).join(", ") || "no sagas yet"); return c.end(); });'
deadline=$((SECONDS + 600))
while :; do
  line="$("${compose[@]}" exec -T orchestrator node -e "$count")"
  dlog "sagas: $line"
  ended=$(printf '%s' "$line" | grep -oE '(completed|compensated|failed) [0-9]+' | awk '{ s += $2 } END { print s + 0 }')
  [ "$ended" -ge "$orders" ] && break
  [ "$SECONDS" -lt "$deadline" ] || { dlog "not all orders ended within 10 minutes: docker compose logs"; exit 1; }
  sleep 2
done
dlog "all $orders orders ended in $(elapsed "$t0") s (from up); the stack keeps running"
"${compose[@]}" exec -T orchestrator node /app/bin/sagaflow.js sagas list --limit 5
