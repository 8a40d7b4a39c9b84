/**
 * (d) two workers fed the same and competing replies for the same sagas at once: no lost update.
 */
import { describe, expect, it } from 'vitest';
import { OrderShipped, PaymentCharged, StockReserved } from '../../../examples/order/index.js';
import type { OutgoingMessage } from '../../../src/transport/contract.js';
import { shape, workerSuite, type Order } from './suite.js';

const suite = workerSuite('sf_wk_race');
const { startWorker, orders, startMessage, waitTerminal, steps, waitingOn, replyTo, eventsFor, expectContiguous, shuffle } = suite;

describe('(d) two workers racing on the same sagas', () => {
  it('the same and competing replies fed to both at once: each applied once, versions contiguous', async () => {
    // Orchestrators only: the test answers for the participants (their queues exist, nobody reads them).
    const opts = { role: 'orchestrator' as const, options: { maxBatch: 4 } };
    const [a, b] = await Promise.all([startWorker(opts), startWorker(opts)]);
    const K = 20;
    const list = orders(K);
    const starts = list.map((o) => startMessage(o));
    const ids = starts.map((s) => s.sagaId);
    // The same start messages to both workers.
    await Promise.all([a.transport.publisher.publish(starts.map((s) => s.message)), b.transport.publisher.publish(starts.map((s) => s.message))]);

    const rounds = [
      { step: 'reserveStock', message: StockReserved, payload: (o: Order) => ({ orderId: o.orderId, reservationId: `res-${o.orderId}` }) },
      { step: 'chargePayment', message: PaymentCharged, payload: (o: Order) => ({ orderId: o.orderId, paymentId: `pay-${o.orderId}` }) },
      { step: 'shipOrder', message: OrderShipped, payload: (o: Order) => ({ orderId: o.orderId, trackingNumber: `trk-${o.orderId}` }) },
    ];
    const sent = new Map<string, Set<string>>(); // step row key -> reply ids offered for it
    for (const round of rounds) {
      const toA: OutgoingMessage[] = [];
      const toB: OutgoingMessage[] = [];
      for (const [i, o] of list.entries()) {
        const row = await waitingOn(ids[i]!, round.step);
        // R: one reply, delivered to both workers (a broker duplicate); R2: the participant
        // answered twice with different ids (a retried command). Only one may change the saga.
        const r1 = replyTo(ids[i]!, row, round.message, round.payload(o), { correlationId: o.orderId });
        const r2 = replyTo(ids[i]!, row, round.message, round.payload(o), { correlationId: o.orderId });
        sent.set(`${ids[i]}:${row.seq}`, new Set([r1.id, r2.id]));
        toA.push(r1);
        toB.push(r2);
        if (suite.random() < 0.5) toB.push(r1);
        else toA.push(r2);
      }
      await Promise.all([a.transport.publisher.publish(shuffle(toA)), b.transport.publisher.publish(shuffle(toB))]);
    }

    const rows = await waitTerminal(ids);
    for (const r of rows) {
      expect(r.status).toBe('completed');
      expect(r.version).toBe(4);
      const rs = await steps(r.id);
      expect(shape(rs)).toEqual(['1:reserveStock/forward#1=succeeded', '2:chargePayment/forward#1=succeeded', '3:shipOrder/forward#1=succeeded']);
      for (const s of rs) expect(sent.get(`${r.id}:${s.seq}`)!.has(s.reply_id!)).toBe(true);
    }
    const versions = await eventsFor([...a.transitions, ...b.transitions], rows);
    expectContiguous(versions, rows);
    const appliedByA = a.transitions.filter((e) => ids.includes(e.sagaId)).length;
    const appliedByB = b.transitions.filter((e) => ids.includes(e.sagaId)).length;
    console.log(`[race] transitions applied by worker A: ${appliedByA}, by worker B: ${appliedByB}`);
    expect(appliedByA + appliedByB).toBe(4 * K);
    // Both workers really took part.
    expect(appliedByA).toBeGreaterThan(0);
    expect(appliedByB).toBeGreaterThan(0);
    expect([...a.deadLetters, ...b.deadLetters]).toEqual([]);
  });
});

