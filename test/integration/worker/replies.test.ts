/**
 * (g) duplicate replies, a reply for an unknown saga, stale and out-of-order replies (ignored, no
 *     transition), and a late success after the saga gave up (compensated after all).
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { OrderShipped, PaymentCharged, PaymentDeclined, PaymentRefunded, PaymentUnavailable, StockReleased, StockReserved } from '../../../examples/order/index.js';
import { waitFor } from '../../helpers/wait.js';
import { RETRY, shape, workerSuite } from './suite.js';

const suite = workerSuite('sf_wk_rep');
const { startWorker, orders, startMessage, sagaRows, waitTerminal, steps, waitingOn, replyTo, eventsFor, expectContiguous } = suite;

describe('(g) duplicate, unknown, stale and late replies', () => {
  it('duplicates are absorbed, a stale reply is ignored, an unknown saga is dead-lettered after retries', async () => {
    const w = await startWorker({ role: 'orchestrator' });
    const [o] = orders(1);
    const s = startMessage(o!);
    await w.transport.publisher.publish([s.message]);
    const reserve = await waitingOn(s.sagaId, 'reserveStock');
    // Row 16, out of order: a reply for a step the saga has not reached (no such command was sent).
    // It is dead-lettered as OUT_OF_ORDER for a human, with no transition.
    const early = replyTo(s.sagaId, { ...reserve, step_name: 'shipOrder', seq: 3, command_id: randomUUID() }, OrderShipped, {
      orderId: o!.orderId,
      trackingNumber: 't-early',
    });
    await w.transport.publisher.publish([early]);
    await waitFor('the early reply to be processed', () => w.log.lines.find((l) => l.messageId === early.id && l.code), Boolean);
    expect(w.log.lines.find((l) => l.messageId === early.id && l.code)!.code).toBe('OUT_OF_ORDER');
    await waitFor('the early reply in the dead letters', () => w.deadLetters.find((d) => d.messageId === early.id), (d) => d?.reasonCode === 'OUT_OF_ORDER');
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(1);
    const stockReserved = replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-1' });
    await w.transport.publisher.publish([stockReserved]);
    const charge1 = await waitingOn(s.sagaId, 'chargePayment', 1);
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(2);

    // Row 12: the same reply again (same id): the inbox absorbs it.
    await w.transport.publisher.publish([stockReserved]);
    await waitFor('the duplicate to be ignored', () => w.log.lines.some((l) => l.msg === 'duplicate delivery ignored' && l.messageId === stockReserved.id), Boolean);
    // The same answer with a new id (the participant answered twice): the engine ignores it.
    const again = replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-1' });
    await w.transport.publisher.publish([again]);
    await waitFor('the second answer to be processed', () => w.log.lines.find((l) => l.messageId === again.id && l.code), Boolean);
    expect(w.log.lines.find((l) => l.messageId === again.id && l.code)!.code).toBe('DUPLICATE_REPLY');
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(2);

    // Row 16: attempt 1 of chargePayment fails (retryable), attempt 2 starts; then attempt 1's late success arrives: stale.
    await w.transport.publisher.publish([replyTo(s.sagaId, charge1, PaymentUnavailable, { orderId: o!.orderId, reason: 'unavailable: gateway' })]);
    const charge2 = await waitingOn(s.sagaId, 'chargePayment', 2);
    expect(charge2.command_id).not.toBe(charge1.command_id);
    const versionBefore = (await sagaRows([s.sagaId]))[0]!.version;
    const stale = replyTo(s.sagaId, charge1, PaymentCharged, { orderId: o!.orderId, paymentId: 'pay-stale' });
    await w.transport.publisher.publish([stale]);
    await waitFor('the stale reply to be processed', () => w.log.lines.find((l) => l.messageId === stale.id && l.code), Boolean);
    expect(w.log.lines.find((l) => l.messageId === stale.id && l.code)!.code).toBe('STALE_REPLY');
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(versionBefore);

    // The current attempt's reply still counts.
    await w.transport.publisher.publish([replyTo(s.sagaId, charge2, PaymentCharged, { orderId: o!.orderId, paymentId: 'pay-2' })]);
    const ship = await waitingOn(s.sagaId, 'shipOrder');
    await w.transport.publisher.publish([replyTo(s.sagaId, ship, OrderShipped, { orderId: o!.orderId, trackingNumber: 't' })]);
    const [done] = await waitTerminal([s.sagaId]);
    expect(done!.status).toBe('completed');
    expect(shape(await steps(s.sagaId))).toEqual([
      '1:reserveStock/forward#1=succeeded',
      '2:chargePayment/forward#1=failed',
      '3:chargePayment/forward#2=succeeded',
      '4:shipOrder/forward#1=succeeded',
    ]);
    expect((await steps(s.sagaId))[2]!.reply_type).toBe('PaymentCharged');
    expectContiguous(await eventsFor(w.transitions, [done!]), [done!]);

    // Row 14: a reply for a saga that does not exist: retried, then dead-lettered.
    const ghostSaga = randomUUID();
    const ghost = replyTo(ghostSaga, { ...reserve, command_id: randomUUID() }, StockReserved, { orderId: 'ghost', reservationId: 'r' });
    await w.transport.publisher.publish([ghost]);
    const dl = await waitFor(
      'the unknown-saga reply to be dead-lettered',
      async () =>
        (await suite.db.query<{ reason_code: string; error: string; attempts: number }>(`SELECT reason_code, error, attempts FROM "${suite.t.schema}".dead_letters WHERE message_id = $1`, [ghost.id]))
          .rows,
      (r) => r.length === 1,
      { timeoutMs: 10_000 },
    );
    expect(dl[0]!.attempts).toBe(RETRY.maxAttempts);
    expect(dl[0]!.reason_code).toBe('MAX_ATTEMPTS_EXCEEDED');
    expect(dl[0]!.error).toMatch(/^UNKNOWN_SAGA: /);
    expect(w.log.lines.filter((l) => l.messageId === ghost.id && l.code === 'UNKNOWN_SAGA')).toHaveLength(RETRY.maxAttempts);
    expect((await sagaRows([ghostSaga])).length).toBe(0);
  });

  it('a late success after the saga gave up is compensated after all', async () => {
    const w = await startWorker({ role: 'orchestrator' });
    const [o] = orders(1);
    const s = startMessage(o!);
    await w.transport.publisher.publish([s.message]);
    const reserve = await waitingOn(s.sagaId, 'reserveStock');
    await w.transport.publisher.publish([replyTo(s.sagaId, reserve, StockReserved, { orderId: o!.orderId, reservationId: 'res-1' })]);
    const charge = await waitingOn(s.sagaId, 'chargePayment');
    // The payment service says no: the saga gives up and undoes the reservation.
    await w.transport.publisher.publish([replyTo(s.sagaId, charge, PaymentDeclined, { orderId: o!.orderId, reason: 'card declined' })]);
    const release = await waitingOn(s.sagaId, 'reserveStock', 1, 'compensation');
    await w.transport.publisher.publish([replyTo(s.sagaId, release, StockReleased, { orderId: o!.orderId })]);
    const [gaveUp] = await waitTerminal([s.sagaId]);
    expect(gaveUp).toMatchObject({ status: 'compensated', version: 4 });

    // ...but the charge did go through after all, and its success arrives late.
    const late = replyTo(s.sagaId, charge, PaymentCharged, { orderId: o!.orderId, paymentId: 'pay-late' });
    await w.transport.publisher.publish([late]);
    const refund = await waitingOn(s.sagaId, 'chargePayment', 1, 'compensation');
    expect(refund.command_type).toBe('RefundPayment');
    expect(w.transitions.find((e) => e.sagaId === s.sagaId && e.code === 'LATE_REPLY')).toMatchObject({ status: 'compensating', version: 5 });
    await w.transport.publisher.publish([replyTo(s.sagaId, refund, PaymentRefunded, { orderId: o!.orderId })]);
    const final = await waitFor('the saga to be compensated again', () => sagaRows([s.sagaId]), (r) => r[0]?.status === 'compensated' && r[0].version === 6);
    expect(shape(await steps(s.sagaId))).toEqual([
      '1:reserveStock/forward#1=succeeded',
      '2:chargePayment/forward#1=failed',
      '3:reserveStock/compensation#1=succeeded',
      '4:chargePayment/compensation#1=succeeded',
    ]);
    expectContiguous(await eventsFor(w.transitions, final), final);
    // The late reply is recorded as processed: a redelivery of it changes nothing.
    await w.transport.publisher.publish([late]);
    await waitFor('the redelivered late reply to be ignored', () => w.log.lines.some((l) => l.msg === 'duplicate delivery ignored' && l.messageId === late.id), Boolean);
    expect((await sagaRows([s.sagaId]))[0]!.version).toBe(6);
  });
});
