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
 * id (a saga retry after a timeout) still applies its effect once. Every applied effect is logged
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
    await tx.query(
      `INSERT INTO ${t.inventory} (sku, available) SELECT 'sku-' || g, 1000000000 FROM generate_series(0, $1::int - 1) g ON CONFLICT DO NOTHING`,
      [skus],
    );
  });
}


export function orderParticipants(schema: string) {
  const t = exampleTables(schema);

  // Each handler needs one or two round trips: a read that decides, and one statement with
  // data-modifying CTEs for every write (business rows and the effects ledger together).
  const stock = defineParticipant('stock')
    .on(
      ReserveStock,
      async ({ payload, tx }) => {
        const items = mergeItems(payload.items);
        const skus = items.map((i) => i.sku);
        // Sorted skus: concurrent transactions lock inventory rows in the same order (no deadlock).
        const read = await tx.query<{ reservation_id: string | null; sku: string | null; available: string | null }>(
          `SELECT r.reservation_id, NULL AS sku, NULL AS available FROM ${t.reservations} r WHERE r.order_id = $1
           UNION ALL
           SELECT NULL, i.sku, i.available::text FROM (SELECT sku, available FROM ${t.inventory} WHERE sku = ANY($2::text[]) ORDER BY sku FOR UPDATE) i`,
          [payload.orderId, skus],
        );
        const existing = read.rows.find((r) => r.reservation_id !== null);
        if (existing) return reply(StockReserved, { orderId: payload.orderId, reservationId: existing.reservation_id! });
        if (payload.reject) return reply(StockRejected, { orderId: payload.orderId, reason: 'out of stock' });
        const available = new Map(read.rows.filter((r) => r.sku !== null).map((r) => [r.sku!, Number(r.available)]));
        const short = items.find((i) => (available.get(i.sku) ?? 0) < i.qty);
        if (short) return reply(StockRejected, { orderId: payload.orderId, reason: `not enough ${short.sku}` });
        const reservationId = randomUUID();
        await tx.query(
          `WITH inv AS (
             UPDATE ${t.inventory} i SET available = i.available - x.qty FROM unnest($3::text[], $4::int[]) AS x(sku, qty) WHERE i.sku = x.sku),
           res AS (INSERT INTO ${t.reservations} (order_id, reservation_id, items, status) VALUES ($1, $2, $5, 'reserved'))
           INSERT INTO ${t.effects} (order_id, kind) VALUES ($1, 'reserve')`,
          [payload.orderId, reservationId, skus, items.map((i) => i.qty), JSON.stringify(items)],
        );
        return reply(StockReserved, { orderId: payload.orderId, reservationId });
      },
      [StockReserved, StockRejected],
    )
    .on(
      ReleaseStock,
      async ({ payload, tx }) => {
        // Idempotent by state: only a reservation still 'reserved' is released (and logged) once.
        const released = await tx.query<{ reservation_id: string }>(
          `WITH r AS (
             UPDATE ${t.reservations} SET status = 'released', released_at = now()
             WHERE order_id = $1 AND status = 'reserved' RETURNING order_id, reservation_id, items),
           inv AS (
             UPDATE ${t.inventory} i SET available = i.available + x.qty
             FROM r, jsonb_to_recordset(r.items) AS x(sku text, qty int) WHERE i.sku = x.sku),
           eff AS (INSERT INTO ${t.effects} (order_id, kind) SELECT order_id, 'release' FROM r)
           SELECT reservation_id FROM r`,
          [payload.orderId],
        );
        const found = released.rows[0]?.reservation_id;
        if (found !== undefined && found !== payload.reservationId) {
          // Data that does not add up is not something to paper over: throwing rolls the release
          // back, and after its retries the command lands in the dead letters for a human.
          throw new Error(`reservation mismatch for order ${payload.orderId}: asked to release ${payload.reservationId}, holding ${found}`);
        }
        return reply(StockReleased, { orderId: payload.orderId });
      },
      [StockReleased],
    )
    .build();

  const payment = defineParticipant('payment')
    .on(
      ChargePayment,
      async ({ payload, tx }) => {
        const read = await tx.query<{ payment_id: string | null; outage: boolean }>(
          `SELECT (SELECT payment_id FROM ${t.payments} WHERE order_id = $1) AS payment_id,
                  coalesce((SELECT value = 'true'::jsonb FROM ${t.settings} WHERE key = 'payment_outage'), false) AS outage`,
          [payload.orderId],
        );
        const { payment_id: existing, outage } = read.rows[0]!;
        if (existing) return reply(PaymentCharged, { orderId: payload.orderId, paymentId: existing });
        if (outage) return reply(PaymentUnavailable, { orderId: payload.orderId, reason: 'unavailable: payment gateway outage' });
        if (payload.decline) return reply(PaymentDeclined, { orderId: payload.orderId, reason: 'card declined' });
        const paymentId = randomUUID();
        await tx.query(
          `WITH p AS (INSERT INTO ${t.payments} (order_id, payment_id, customer_id, amount_cents, status) VALUES ($1, $2, $3, $4, 'charged'))
           INSERT INTO ${t.effects} (order_id, kind) VALUES ($1, 'charge')`,
          [payload.orderId, paymentId, payload.customerId, payload.amountCents],
        );
        return reply(PaymentCharged, { orderId: payload.orderId, paymentId });
      },
      [PaymentCharged, PaymentDeclined, PaymentUnavailable],
    )
    .on(
      RefundPayment,
      async ({ payload, tx }) => {
        await tx.query(
          `WITH p AS (UPDATE ${t.payments} SET status = 'refunded', refunded_at = now() WHERE order_id = $1 AND status = 'charged' RETURNING order_id)
           INSERT INTO ${t.effects} (order_id, kind) SELECT order_id, 'refund' FROM p`,
          [payload.orderId],
        );
        return reply(PaymentRefunded, { orderId: payload.orderId });
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
    .on(
      ShipOrder,
      async ({ payload, tx }) => {
        const existing = await tx.query<{ tracking_number: string }>(`SELECT tracking_number FROM ${t.shipments} WHERE order_id = $1`, [payload.orderId]);
        if (existing.rows[0]) return reply(OrderShipped, { orderId: payload.orderId, trackingNumber: existing.rows[0].tracking_number });
        if (payload.fail) return reply(ShippingFailed, { orderId: payload.orderId, reason: 'address not deliverable' });
        const trackingNumber = `TRK-${randomUUID().slice(0, 8)}`;
        await tx.query(
          `WITH s AS (INSERT INTO ${t.shipments} (order_id, tracking_number) VALUES ($1, $2))
           INSERT INTO ${t.effects} (order_id, kind) VALUES ($1, 'ship')`,
          [payload.orderId, trackingNumber],
        );
        return reply(OrderShipped, { orderId: payload.orderId, trackingNumber });
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
