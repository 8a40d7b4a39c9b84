import { randomUUID } from 'node:crypto';
import { createClient, sagaIdFor, type Publisher } from '../../src/index.js';
import { PlaceOrder, type FAIL_AT } from './messages.js';

/** Deterministic orders: order i fails at `failAt` when (i + 1) is a multiple of `failEvery`. */
export function makeOrders(n: number, opts: { runId?: string; failEvery?: number; failAt?: (typeof FAIL_AT)[number]; skus?: number } = {}) {
  const runId = opts.runId ?? randomUUID().slice(0, 8);
  const failEvery = opts.failEvery ?? 10;
  const skus = opts.skus ?? 10_000;
  return Array.from({ length: n }, (_, i) => ({
    orderId: `${runId}-${i}`,
    customerId: `customer-${i % 1000}`,
    items: [{ sku: `sku-${(i * 7919) % skus}`, qty: 1 + (i % 3) }],
    amountCents: 1000 + (i % 50) * 100,
    failAt: failEvery > 0 && (i + 1) % failEvery === 0 ? (opts.failAt ?? 'shipping') : ('none' as const),
  }));
}

/** Publishes PlaceOrder messages in chunks (many confirms in flight); returns the saga ids in order. */
export async function publishOrders(
  publisher: Publisher,
  orders: ReturnType<typeof makeOrders>,
  opts: { schema?: string; chunk?: number } = {},
): Promise<string[]> {
  const client = createClient({ schema: opts.schema ?? 'sagaflow', publisher });
  const chunk = opts.chunk ?? 500;
  const sagaIds: string[] = [];
  for (let i = 0; i < orders.length; i += chunk) {
    const msgs = orders.slice(i, i + chunk).map((o) => {
      const messageId = randomUUID();
      const sagaId = sagaIdFor(messageId);
      sagaIds.push(sagaId);
      return client.build(PlaceOrder, o, { messageId, sagaId, correlationId: o.orderId });
    });
    await publisher.publish(msgs);
  }
  return sagaIds;
}
