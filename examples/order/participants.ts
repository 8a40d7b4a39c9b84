import { randomUUID } from 'node:crypto';
import { defineParticipant, reply, type Db, type Queryable } from '../../src/index.js';
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

async function effect(tx: Queryable, table: string, orderId: string, kind: string): Promise<void> {
  await tx.query(`INSERT INTO ${table} (order_id, kind) VALUES ($1, $2)`, [orderId, kind]);
}

export function orderParticipants(schema: string) {
  const t = exampleTables(schema);

  const stock = defineParticipant('stock')
    .on(
      ReserveStock,
      async ({ payload, tx }) => {
        const existing = await tx.query<{ reservation_id: string; status: string }>(
          `SELECT reservation_id, status FROM ${t.reservations} WHERE order_id = $1`,
          [payload.orderId],
        );
        const row = existing.rows[0];
        if (row) return reply(StockReserved, { orderId: payload.orderId, reservationId: row.reservation_id });
        if (payload.reject) return reply(StockRejected, { orderId: payload.orderId, reason: 'out of stock' });
        // Sorted skus: concurrent transactions lock inventory rows in the same order (no deadlock).
        const items = mergeItems(payload.items);
        const stockRows = await tx.query<{ sku: string; available: string }>(
          `SELECT sku, available FROM ${t.inventory} WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE`,
          [items.map((i) => i.sku)],
        );
        const available = new Map(stockRows.rows.map((r) => [r.sku, Number(r.available)]));
        const short = items.find((i) => (available.get(i.sku) ?? 0) < i.qty);
        if (short) return reply(StockRejected, { orderId: payload.orderId, reason: `not enough ${short.sku}` });
        await tx.query(
          `UPDATE ${t.inventory} i SET available = i.available - x.qty FROM unnest($1::text[], $2::int[]) AS x(sku, qty) WHERE i.sku = x.sku`,
          [items.map((i) => i.sku), items.map((i) => i.qty)],
        );
        const reservationId = randomUUID();
        await tx.query(`INSERT INTO ${t.reservations} (order_id, reservation_id, items, status) VALUES ($1, $2, $3, 'reserved')`, [
          payload.orderId,
          reservationId,
          JSON.stringify(items),
        ]);
        await effect(tx, t.effects, payload.orderId, 'reserve');
        return reply(StockReserved, { orderId: payload.orderId, reservationId });
      },
      [StockReserved, StockRejected],
    )
    .on(
      ReleaseStock,
      async ({ payload, tx }) => {
        const res = await tx.query<{ items: { sku: string; qty: number }[] }>(
          `UPDATE ${t.reservations} SET status = 'released', released_at = now()
           WHERE order_id = $1 AND status = 'reserved' RETURNING items`,
          [payload.orderId],
        );
        const items = res.rows[0]?.items;
        if (items) {
          await tx.query(
            `UPDATE ${t.inventory} i SET available = i.available + x.qty FROM unnest($1::text[], $2::int[]) AS x(sku, qty) WHERE i.sku = x.sku`,
            [items.map((i) => i.sku), items.map((i) => i.qty)],
          );
          await effect(tx, t.effects, payload.orderId, 'release');
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
        const existing = await tx.query<{ payment_id: string }>(`SELECT payment_id FROM ${t.payments} WHERE order_id = $1`, [payload.orderId]);
        if (existing.rows[0]) return reply(PaymentCharged, { orderId: payload.orderId, paymentId: existing.rows[0].payment_id });
        if (await outage(tx, t.settings)) return reply(PaymentUnavailable, { orderId: payload.orderId, reason: 'unavailable: payment gateway outage' });
        if (payload.decline) return reply(PaymentDeclined, { orderId: payload.orderId, reason: 'card declined' });
        const paymentId = randomUUID();
        await tx.query(`INSERT INTO ${t.payments} (order_id, payment_id, customer_id, amount_cents, status) VALUES ($1, $2, $3, $4, 'charged')`, [
          payload.orderId,
          paymentId,
          payload.customerId,
          payload.amountCents,
        ]);
        await effect(tx, t.effects, payload.orderId, 'charge');
        return reply(PaymentCharged, { orderId: payload.orderId, paymentId });
      },
      [PaymentCharged, PaymentDeclined, PaymentUnavailable],
    )
    .on(
      RefundPayment,
      async ({ payload, tx }) => {
        const res = await tx.query(`UPDATE ${t.payments} SET status = 'refunded', refunded_at = now() WHERE order_id = $1 AND status = 'charged'`, [
          payload.orderId,
        ]);
        if ((res.rowCount ?? 0) > 0) await effect(tx, t.effects, payload.orderId, 'refund');
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
        await tx.query(`INSERT INTO ${t.shipments} (order_id, tracking_number) VALUES ($1, $2)`, [payload.orderId, trackingNumber]);
        await effect(tx, t.effects, payload.orderId, 'ship');
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

async function outage(tx: Queryable, settings: string): Promise<boolean> {
  const r = await tx.query<{ value: unknown }>(`SELECT value FROM ${settings} WHERE key = 'payment_outage'`);
  return r.rows[0]?.value === true;
}
