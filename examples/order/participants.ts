import { randomUUID } from 'node:crypto';
import { defineParticipant, reply, type Db } from '../../src/index.js';
import {
  ChargePayment,
  OrderShipped,
  PaymentCharged,
  PaymentDeclined,
  PaymentOutageSet,
  PaymentRefunded,
  PaymentUnavailable,
  RefundPayment,
  ReleaseStock,
  ReserveStock,
  SetPaymentOutage,
  ShipOrder,
  ShippingFailed,
  StockRejected,
  StockReleased,
  StockReserved,
} from './messages.js';

/**
 * The three services of the order example, each keeping its own state in Postgres. Their writes
 * run in the worker's transaction (inbox + business write + outbox reply commit together), and
 * each is also idempotent by business key (the order id), so a retried command with a NEW message
 * id (a saga retry after a timeout) still applies its effect once. They are batch handlers
 * (`onBatch`): a worker hands them every command of one type in its transaction at once. Every applied effect is logged
 * in `effects` WITHOUT a unique key, so tests can prove that nothing was applied twice.
 */
const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

export function exampleTables(schema: string) {
  if (!SCHEMA.test(schema)) throw new Error(`invalid example schema name ${schema}`);
  const s = `"${schema}"`;
  return {
    schema: s,
    inventory: `${s}.inventory`,
    reservations: `${s}.reservations`,
    payments: `${s}.payments`,
    shipments: `${s}.shipments`,
    effects: `${s}.effects`,
    settings: `${s}.settings`,
    outageCalls: `${s}.outage_calls`,
  };
}

export async function migrateExample(db: Db, schema: string, skus = 10_000): Promise<void> {
  const t = exampleTables(schema);
  await db.transaction(async (tx) => {
    // An advisory lock makes concurrent starts of several example processes safe.
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`sagaflow.example.${schema}`]);
    await tx.query(`CREATE SCHEMA IF NOT EXISTS ${t.schema}`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.inventory} (sku text PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0))`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.reservations} (
      order_id text PRIMARY KEY, reservation_id text NOT NULL, items jsonb NOT NULL,
      status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), released_at timestamptz)`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.payments} (
      order_id text PRIMARY KEY, payment_id text NOT NULL, customer_id text NOT NULL, amount_cents bigint NOT NULL,
      status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), refunded_at timestamptz)`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.shipments} (
      order_id text PRIMARY KEY, tracking_number text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.effects} (
      id bigserial PRIMARY KEY, order_id text NOT NULL, kind text NOT NULL, at timestamptz NOT NULL DEFAULT now())`);
    await tx.query(`CREATE INDEX IF NOT EXISTS effects_order ON ${t.effects} (order_id)`);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.settings} (key text PRIMARY KEY, value jsonb NOT NULL)`);
    // every ChargePayment the payment service turned away during an outage: what a breaker spares it
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.outageCalls} (order_id text NOT NULL, at timestamptz NOT NULL DEFAULT now())`);
    await tx.query(
      `INSERT INTO ${t.inventory} (sku, available) SELECT 'sku-' || g, 1000000000 FROM generate_series(0, $1::int - 1) g ON CONFLICT DO NOTHING`,
      [skus],
    );
  });
}


export function orderParticipants(schema: string) {
  const t = exampleTables(schema);

  // Batch handlers: one read and one write statement for a whole batch of commands (set-based
  // SQL with unnest), whatever the batch size. Every decision is still made per command.
  const stock = defineParticipant('stock')
    .onBatch(
      ReserveStock,
      async ({ items, tx }) => {
        const orderIds = items.map((i) => i.payload.orderId);
        const skus = [...new Set(items.flatMap((i) => i.payload.items.map((x) => x.sku)))].sort();
        // Inventory rows are locked in sku order: concurrent batches never deadlock on them.
        const read = await tx.query<{ kind: 'reservation' | 'stock'; k: string; v: string }>(
          `SELECT 'reservation' AS kind, order_id AS k, reservation_id AS v FROM ${t.reservations} WHERE order_id = ANY($1::text[])
           UNION ALL
           SELECT 'stock', sku, available::text FROM (SELECT sku, available FROM ${t.inventory} WHERE sku = ANY($2::text[]) ORDER BY sku FOR UPDATE) i`,
          [orderIds, skus],
        );
        const reserved = new Map(read.rows.filter((r) => r.kind === 'reservation').map((r) => [r.k, r.v]));
        const available = new Map(read.rows.filter((r) => r.kind === 'stock').map((r) => [r.k, Number(r.v)]));
        const taken = new Map<string, number>();
        const created: { orderId: string; reservationId: string; lines: { sku: string; qty: number }[] }[] = [];
        const replies = items.map(({ payload }) => {
          // Idempotent by order id: a retried command (new message id) finds the reservation.
          const existing = reserved.get(payload.orderId);
          if (existing) return reply(StockReserved, { orderId: payload.orderId, reservationId: existing });
          if (payload.reject) return reply(StockRejected, { orderId: payload.orderId, reason: 'out of stock' });
          const lines = mergeItems(payload.items);
          const short = lines.find((l) => (available.get(l.sku) ?? 0) < l.qty);
          if (short) return reply(StockRejected, { orderId: payload.orderId, reason: `not enough ${short.sku}` });
          for (const l of lines) {
            available.set(l.sku, available.get(l.sku)! - l.qty);
            taken.set(l.sku, (taken.get(l.sku) ?? 0) + l.qty);
          }
          const reservationId = randomUUID();
          reserved.set(payload.orderId, reservationId);
          created.push({ orderId: payload.orderId, reservationId, lines });
          return reply(StockReserved, { orderId: payload.orderId, reservationId });
        });
        if (created.length > 0) {
          await tx.query(
            `WITH inv AS (
               UPDATE ${t.inventory} i SET available = i.available - x.qty FROM unnest($1::text[], $2::int[]) AS x(sku, qty) WHERE i.sku = x.sku),
             res AS (
               INSERT INTO ${t.reservations} (order_id, reservation_id, items, status)
               SELECT o, r, it, 'reserved' FROM unnest($3::text[], $4::text[], $5::jsonb[]) AS x(o, r, it))
             INSERT INTO ${t.effects} (order_id, kind) SELECT o, 'reserve' FROM unnest($3::text[]) AS o`,
            [
              [...taken.keys()],
              [...taken.values()],
              created.map((c) => c.orderId),
              created.map((c) => c.reservationId),
              created.map((c) => JSON.stringify(c.lines)),
            ],
          );
        }
        return replies;
      },
      [StockReserved, StockRejected],
    )
    .onBatch(
      ReleaseStock,
      async ({ items, tx }) => {
        // Idempotent by state: only a reservation still 'reserved' is released (and logged) once.
        const { rows: mismatched } = await tx.query<{ order_id: string; held: string; asked: string }>(
          `WITH req AS (SELECT o AS order_id, r AS reservation_id FROM unnest($1::text[], $2::text[]) AS x(o, r)),
           rel AS (
             UPDATE ${t.reservations} res SET status = 'released', released_at = now() FROM req
             WHERE res.order_id = req.order_id AND res.status = 'reserved' AND res.reservation_id = req.reservation_id
             RETURNING res.order_id, res.items),
           inv AS (
             UPDATE ${t.inventory} i SET available = i.available + x.qty
             FROM (SELECT l.sku, sum(l.qty)::int AS qty FROM rel, jsonb_to_recordset(rel.items) AS l(sku text, qty int) GROUP BY l.sku) x
             WHERE i.sku = x.sku),
           eff AS (INSERT INTO ${t.effects} (order_id, kind) SELECT order_id, 'release' FROM rel)
           SELECT req.order_id, res.reservation_id AS held, req.reservation_id AS asked FROM req
           JOIN ${t.reservations} res ON res.order_id = req.order_id
           WHERE res.status = 'reserved' AND res.reservation_id <> req.reservation_id`,
          [items.map((i) => i.payload.orderId), items.map((i) => i.payload.reservationId)],
        );
        const bad = mismatched[0];
        if (bad) {
          // Data that does not add up is not something to paper over: throwing rolls the batch
          // back; re-run one by one, only this command fails and, after its retries, lands in the
          // dead letters for a human.
          throw new Error(`reservation mismatch for order ${bad.order_id}: asked to release ${bad.asked}, holding ${bad.held}`);
        }
        return items.map((i) => reply(StockReleased, { orderId: i.payload.orderId }));
      },
      [StockReleased],
    )
    .build();

  const payment = defineParticipant('payment')
    .onBatch(
      ChargePayment,
      async ({ items, tx }) => {
        const read = await tx.query<{ order_id: string | null; payment_id: string | null; outage: boolean | null }>(
          `SELECT order_id, payment_id, NULL::boolean AS outage FROM ${t.payments} WHERE order_id = ANY($1::text[])
           UNION ALL
           SELECT NULL, NULL, value = 'true'::jsonb FROM ${t.settings} WHERE key = 'payment_outage'`,
          [items.map((i) => i.payload.orderId)],
        );
        const paid = new Map(read.rows.filter((r) => r.order_id !== null).map((r) => [r.order_id!, r.payment_id!]));
        const outage = read.rows.some((r) => r.outage === true);
        const created: { orderId: string; paymentId: string; customerId: string; amountCents: number }[] = [];
        const replies = items.map(({ payload }) => {
          const existing = paid.get(payload.orderId);
          if (existing) return reply(PaymentCharged, { orderId: payload.orderId, paymentId: existing });
          if (outage) return reply(PaymentUnavailable, { orderId: payload.orderId, reason: 'unavailable: payment gateway outage' });
          if (payload.decline) return reply(PaymentDeclined, { orderId: payload.orderId, reason: 'card declined' });
          const paymentId = randomUUID();
          paid.set(payload.orderId, paymentId);
          created.push({ orderId: payload.orderId, paymentId, customerId: payload.customerId, amountCents: payload.amountCents });
          return reply(PaymentCharged, { orderId: payload.orderId, paymentId });
        });
        if (outage) {
          const refused = items.filter((i) => !paid.has(i.payload.orderId)).map((i) => i.payload.orderId);
          await tx.query(`INSERT INTO ${t.outageCalls} (order_id) SELECT unnest($1::text[])`, [refused]);
        }
        if (created.length > 0) {
          await tx.query(
            `WITH p AS (
               INSERT INTO ${t.payments} (order_id, payment_id, customer_id, amount_cents, status)
               SELECT o, p, c, a, 'charged' FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS x(o, p, c, a))
             INSERT INTO ${t.effects} (order_id, kind) SELECT o, 'charge' FROM unnest($1::text[]) AS o`,
            [created.map((c) => c.orderId), created.map((c) => c.paymentId), created.map((c) => c.customerId), created.map((c) => c.amountCents)],
          );
        }
        return replies;
      },
      [PaymentCharged, PaymentDeclined, PaymentUnavailable],
    )
    .onBatch(
      RefundPayment,
      async ({ items, tx }) => {
        await tx.query(
          `WITH p AS (
             UPDATE ${t.payments} SET status = 'refunded', refunded_at = now()
             WHERE order_id = ANY($1::text[]) AND status = 'charged' RETURNING order_id)
           INSERT INTO ${t.effects} (order_id, kind) SELECT order_id, 'refund' FROM p`,
          [items.map((i) => i.payload.orderId)],
        );
        return items.map((i) => reply(PaymentRefunded, { orderId: i.payload.orderId }));
      },
      [PaymentRefunded],
    )
    .on(
      SetPaymentOutage,
      async ({ payload, tx }) => {
        await tx.query(
          `INSERT INTO ${t.settings} (key, value) VALUES ('payment_outage', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
          [JSON.stringify(payload.down)],
        );
        return reply(PaymentOutageSet, { down: payload.down });
      },
      [PaymentOutageSet],
    )
    .build();

  const shipping = defineParticipant('shipping')
    .onBatch(
      ShipOrder,
      async ({ items, tx }) => {
        const read = await tx.query<{ order_id: string; tracking_number: string }>(
          `SELECT order_id, tracking_number FROM ${t.shipments} WHERE order_id = ANY($1::text[])`,
          [items.map((i) => i.payload.orderId)],
        );
        const shipped = new Map(read.rows.map((r) => [r.order_id, r.tracking_number]));
        const created: { orderId: string; trackingNumber: string }[] = [];
        const replies = items.map(({ payload }) => {
          const existing = shipped.get(payload.orderId);
          if (existing) return reply(OrderShipped, { orderId: payload.orderId, trackingNumber: existing });
          if (payload.fail) return reply(ShippingFailed, { orderId: payload.orderId, reason: 'address not deliverable' });
          const trackingNumber = `TRK-${randomUUID().slice(0, 8)}`;
          shipped.set(payload.orderId, trackingNumber);
          created.push({ orderId: payload.orderId, trackingNumber });
          return reply(OrderShipped, { orderId: payload.orderId, trackingNumber });
        });
        if (created.length > 0) {
          await tx.query(
            `WITH s AS (INSERT INTO ${t.shipments} (order_id, tracking_number) SELECT * FROM unnest($1::text[], $2::text[]))
             INSERT INTO ${t.effects} (order_id, kind) SELECT o, 'ship' FROM unnest($1::text[]) AS o`,
            [created.map((c) => c.orderId), created.map((c) => c.trackingNumber)],
          );
        }
        return replies;
      },
      [OrderShipped, ShippingFailed],
    )
    .build();

  return [stock, payment, shipping];
}

/** One line per sku (an order may name a sku twice), sorted by sku. */
function mergeItems(items: readonly { sku: string; qty: number }[]): { sku: string; qty: number }[] {
  const qty = new Map<string, number>();
  for (const i of items) qty.set(i.sku, (qty.get(i.sku) ?? 0) + i.qty);
  return [...qty].map(([sku, q]) => ({ sku, qty: q })).sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
}
