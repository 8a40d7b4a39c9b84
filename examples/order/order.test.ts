/**
 * The order saga tested the way a user tests their own sagas: only with sagaflow/testing. No
 * server to start: the kit runs the module against the memory transport and an embedded
 * PostgreSQL (kept under ~/.cache/sagaflow, started once per test process), with the example's real
 * participants unless a test scripts a command. Timeouts are 30 s and back-offs up to a second in
 * the saga definition; the tests wait for neither (virtual time).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSagaTestKit, noReply, replyWith, type SagaTestKit } from '../../src/testing/index.js';
import orderModule, { ChargePayment, orderSaga, PaymentUnavailable } from './index.js';

let kit: SagaTestKit;
let n = 0;
const order = (failAt: 'none' | 'stock' | 'payment' | 'shipping' = 'none') => ({
  orderId: `kit-${process.pid}-${++n}`,
  customerId: 'customer-1',
  items: [{ sku: 'sku-1', qty: 1 }],
  amountCents: 2500,
  failAt,
});

beforeAll(async () => {
  kit = await createSagaTestKit({ module: orderModule({ env: process.env }) });
}, 120_000);
afterAll(async () => kit?.close());
beforeEach(() => kit.reset());

describe('order saga', () => {
  it('reserves, charges and ships', async () => {
    const saga = await kit.start(orderSaga, order());
    await saga.waitFor('completed');
    expect(await saga.commands()).toEqual(['ReserveStock', 'ChargePayment', 'ShipOrder']);
  });

  it('undoes the charge and the reservation, in reverse order, when shipping fails', async () => {
    const saga = await kit.start(orderSaga, order('shipping'));
    await saga.waitFor('compensated');
    expect(await saga.compensations()).toEqual(['RefundPayment', 'ReleaseStock']);
  });

  it('a declined card releases the stock and charges nothing', async () => {
    const saga = await kit.start(orderSaga, order('payment'));
    await saga.waitFor('compensated');
    expect(await saga.commands()).toEqual(['ReserveStock', 'ChargePayment', 'ReleaseStock']);
  });

  it('stops as failed for an operator when the payment service never answers', async () => {
    kit.script(ChargePayment, noReply());
    const saga = await kit.start(orderSaga, order());
    // Three attempts, each timing out after 30 s, with a short back-off in between.
    for (let i = 0; i < 6 && (await saga.status()) === 'running'; i++) await kit.advance(30_000);
    await saga.waitFor('failed');
    const payment = (await saga.timeline()).filter((s) => s.step === 'chargePayment');
    expect(payment.map((s) => s.status)).toEqual(['timed_out', 'timed_out', 'timed_out']);
    expect(await saga.compensations()).toEqual([]);
  });

  it('retries a payment outage, then stops as failed (not compensated: not the customer\'s fault)', async () => {
    kit.script(ChargePayment, replyWith(PaymentUnavailable, (c) => ({ orderId: c.payload.orderId, reason: 'unavailable: gateway down' })));
    const saga = await kit.start(orderSaga, order());
    await kit.advance(1_000);
    await kit.advance(1_000);
    await saga.waitFor('failed');
    expect(await saga.commands()).toEqual(['ReserveStock', 'ChargePayment', 'ChargePayment', 'ChargePayment']);
  });
});
