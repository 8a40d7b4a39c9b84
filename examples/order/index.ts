import type { SagaflowModule } from '../../src/index.js';
import { PlaceOrder, SetPaymentOutage } from './messages.js';
import { migrateExample, orderParticipants } from './participants.js';
import { orderSagaWith } from './saga.js';

/**
 * The module `sagaflow worker --module examples/order` loads. Its own tables live in the schema
 * named by ORDER_EXAMPLE_SCHEMA (default order_example), so test runs can isolate themselves.
 */
export default function orderModule(ctx: { env: Readonly<Record<string, string | undefined>> }): SagaflowModule {
  const schema = ctx.env.ORDER_EXAMPLE_SCHEMA || 'order_example';
  const onOutage = ctx.env.ORDER_ON_OUTAGE === 'compensate' ? 'compensate' : 'fail';
  return {
    sagas: [orderSagaWith({ onOutage })],
    // ORDER_CIRCUITS=on: a breaker on the payment participant (the outage walkthrough and test).
    resilience: {
      ...(ctx.env.ORDER_CIRCUITS === 'on' ? { circuits: { payment: paymentBreaker(ctx.env) } } : {}),
      // ORDER_BULKHEAD=K: at most K commands in flight to each participant (the backlog bench).
      ...(ctx.env.ORDER_BULKHEAD ? { bulkheads: bulkheads(Number(ctx.env.ORDER_BULKHEAD)) } : {}),
      // ORDER_PAYMENT_RATE=R: at most R charges and refunds per second (the rate-limit test).
      ...(ctx.env.ORDER_PAYMENT_RATE ? { rateLimits: { payment: { perSecond: Number(ctx.env.ORDER_PAYMENT_RATE) } } } : {}),
    },
    participants: orderParticipants(schema),
    messages: [PlaceOrder, SetPaymentOutage],
    migrate: (db) => migrateExample(db, schema),
  };
}

/** Opens after 5 outage replies or timeouts within 10 s; probes every ORDER_CIRCUIT_COOLDOWN_MS (default 3 s). */
function paymentBreaker(env: Readonly<Record<string, string | undefined>>) {
  const coolDownMs = Number(env.ORDER_CIRCUIT_COOLDOWN_MS ?? 3000);
  return { failureThreshold: 5, windowMs: 10_000, coolDownMs, probeTimeoutMs: 30_000, releasePerSecond: 200 };
}

function bulkheads(maxInFlight: number) {
  return { stock: { maxInFlight }, payment: { maxInFlight }, shipping: { maxInFlight } };
}

export { orderSaga, orderSagaWith } from './saga.js';
export * from './messages.js';
export { exampleTables, migrateExample, orderParticipants } from './participants.js';
