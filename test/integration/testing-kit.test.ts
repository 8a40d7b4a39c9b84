/**
 * The test kit (sagaflow/testing) on a small saga of its own, participants all scripted: a step
 * timeout, a retry exhaustion and a compensation, each moved through with virtual time (minutes of
 * saga time, no real waiting: every test prints the real milliseconds it took), plus a participant
 * that throws (its command dead-lettered, the step then timing out).
 *
 * The kit's database is the test services' PostgreSQL here (databaseUrl); without it the kit
 * starts an embedded one, as examples/order/order.test.ts shows.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineMessage, defineSaga } from '../../src/index.js';
import { createSagaTestKit, inTurn, noReply, replyWith, throws, type SagaTestKit } from '../../src/testing/index.js';
import { databaseUrl } from '../helpers/db.js';

const id = z.object({ bookingId: z.string() });
const BookTrip = defineMessage({ type: 'BookTrip', topic: 'kit.trips', schema: id });
const HoldSeat = defineMessage({ type: 'HoldSeat', topic: 'kit.seats', schema: id });
const SeatHeld = defineMessage({ type: 'SeatHeld', schema: z.object({ bookingId: z.string(), seat: z.string() }) });
const ReleaseSeat = defineMessage({ type: 'ReleaseSeat', topic: 'kit.seats', schema: z.object({ bookingId: z.string(), seat: z.string() }) });
const SeatReleased = defineMessage({ type: 'SeatReleased', schema: id });
const TakePayment = defineMessage({ type: 'TakePayment', topic: 'kit.payments', schema: id });
const PaymentTaken = defineMessage({ type: 'PaymentTaken', schema: id });
const PaymentFailed = defineMessage({ type: 'PaymentFailed', schema: z.object({ bookingId: z.string(), reason: z.string() }) });

const MINUTE = 60_000;

const tripSaga = defineSaga({ name: 'kit-trip', version: 1, start: BookTrip, data: (b) => ({ bookingId: b.bookingId }) })
  .step('holdSeat', {
    command: HoldSeat,
    payload: (d) => ({ bookingId: d.bookingId }),
    success: [SeatHeld],
    keep: (r) => ({ seat: r.seat }),
    compensate: { command: ReleaseSeat, payload: (d, kept) => ({ bookingId: d.bookingId, seat: kept.seat }), success: [SeatReleased], timeoutMs: 5 * MINUTE },
    timeoutMs: 5 * MINUTE,
  })
  .step('takePayment', {
    command: TakePayment,
    payload: (d) => ({ bookingId: d.bookingId }),
    success: [PaymentTaken],
    failure: [PaymentFailed],
    retryFailures: true,
    // Ten minutes for an answer; three attempts, 30 then 60 minutes apart.
    timeoutMs: 10 * MINUTE,
    retry: { maxAttempts: 3, initialDelayMs: 30 * MINUTE, maxDelayMs: 120 * MINUTE, multiplier: 2, jitter: 0 },
  })
  .build();

let kit: SagaTestKit;
let n = 0;
const booking = () => ({ bookingId: `b-${++n}` });

beforeAll(async () => {
  kit = await createSagaTestKit({ module: { sagas: [tripSaga] }, participants: 'scripted', databaseUrl: databaseUrl() });
});
afterAll(async () => {
  await kit?.close();
});
beforeEach(() => {
  kit.reset();
  kit.script(HoldSeat, replyWith(SeatHeld, (c) => ({ bookingId: c.payload.bookingId, seat: '12A' })));
  kit.script(ReleaseSeat, replyWith(SeatReleased, (c) => ({ bookingId: c.payload.bookingId })));
});

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const out = await fn();
  console.log(`[testing-kit] ${label}: ${(performance.now() - t).toFixed(0)} ms real, virtual clock at +${kit.elapsedMs / MINUTE} min`);
  return out;
}

describe('sagaflow/testing', () => {
  it('completes when every participant answers', async () => {
    kit.script(TakePayment, replyWith(PaymentTaken, (c) => c.payload));
    await timed('happy path', async () => {
      const saga = await kit.start(tripSaga, booking());
      await saga.waitFor('completed');
      expect(await saga.commands()).toEqual(['HoldSeat', 'TakePayment']);
      expect(await saga.compensations()).toEqual([]);
    });
  });

  it('a step timeout fires when the clock passes it, not before', async () => {
    kit.script(TakePayment, inTurn<{ bookingId: string }>(noReply(), replyWith(PaymentTaken, (c) => c.payload)));
    await timed('timeout', async () => {
      const saga = await kit.start(tripSaga, booking());
      await expect.poll(async () => (await saga.commands()).length, { timeout: 30_000 }).toBe(2);
      await kit.advance(10 * MINUTE - 1000);
      expect(await saga.commands()).toEqual(['HoldSeat', 'TakePayment']);
      await kit.advance(1000);
      // Timed out: the attempt failed, the retry waits its back-off (30 min), then succeeds.
      await kit.advance(30 * MINUTE);
      await saga.waitFor('completed');
      const t = await saga.timeline();
      expect(t.filter((s) => s.step === 'takePayment').map((s) => s.status)).toEqual(['timed_out', 'succeeded']);
      expect(t.find((s) => s.step === 'takePayment')!.error).toMatch(/no reply within 600000 ms/);
    });
  });

  it('retries are exhausted after their back-offs, then the completed steps are compensated', async () => {
    kit.script(TakePayment, replyWith(PaymentFailed, (c) => ({ bookingId: c.payload.bookingId, reason: 'gateway busy' })));
    await timed('retry exhaustion', async () => {
      const saga = await kit.start(tripSaga, booking());
      await expect.poll(async () => (await saga.commands()).length, { timeout: 30_000 }).toBe(2);
      await kit.advance(30 * MINUTE); // second attempt
      await expect.poll(async () => (await saga.commands()).length, { timeout: 30_000 }).toBe(3);
      await kit.advance(60 * MINUTE); // third and last
      await saga.waitFor('compensated');
      expect(await saga.commands()).toEqual(['HoldSeat', 'TakePayment', 'TakePayment', 'TakePayment', 'ReleaseSeat']);
      expect(await saga.compensations()).toEqual(['ReleaseSeat']);
      expect(kit.delivered().filter((c) => c.type === 'TakePayment')).toHaveLength(3);
    });
  });

  it('a refusal with no retry budget compensates at once, releasing the seat with what was kept', async () => {
    kit.script(TakePayment, replyWith(PaymentFailed, (c) => ({ bookingId: c.payload.bookingId, reason: 'card declined' })));
    const released: unknown[] = [];
    kit.script(ReleaseSeat, (c) => {
      released.push(c.payload);
      return replyWith(SeatReleased, { bookingId: c.payload.bookingId })(c);
    });
    const one = await createSagaTestKit({ module: { sagas: [noRetrySaga()] }, participants: 'scripted', databaseUrl: databaseUrl() });
    try {
      one.script(HoldSeat, replyWith(SeatHeld, (c) => ({ bookingId: c.payload.bookingId, seat: '7C' })));
      one.script(TakePayment, replyWith(PaymentFailed, (c) => ({ bookingId: c.payload.bookingId, reason: 'card declined' })));
      one.script(ReleaseSeat, (c) => {
        released.push(c.payload);
        return replyWith(SeatReleased, { bookingId: c.payload.bookingId })(c);
      });
      await timed('compensation', async () => {
        const saga = await one.start(noRetrySaga(), { bookingId: 'b-once' });
        await saga.waitFor('compensated');
        expect(await saga.compensations()).toEqual(['ReleaseSeat']);
        expect(released).toEqual([{ bookingId: 'b-once', seat: '7C' }]);
        const t = await saga.timeline();
        expect(t.map((s) => `${s.kind}:${s.step}:${s.status}`)).toEqual(['forward:holdSeat:succeeded', 'forward:takePayment:failed', 'compensation:holdSeat:succeeded']);
      });
    } finally {
      await one.close();
    }
  });

  it('a participant that throws: its command is dead-lettered, and the step times out', async () => {
    kit.script(TakePayment, throws('payment service crashed'));
    await timed('throwing participant', async () => {
      const saga = await kit.start(tripSaga, booking());
      await expect.poll(async () => (await kit.deadLetters()).some((d) => d.type === 'TakePayment'), { timeout: 30_000 }).toBe(true);
      // Three attempts that all time out (10 min each, with 30 and 60 min between): compensated.
      await kit.advance(10 * MINUTE);
      await kit.advance(30 * MINUTE);
      await expect.poll(async () => (await saga.commands()).length, { timeout: 30_000 }).toBe(3);
      await kit.advance(10 * MINUTE);
      await kit.advance(60 * MINUTE);
      await expect.poll(async () => (await saga.commands()).length, { timeout: 30_000 }).toBe(4);
      await kit.advance(10 * MINUTE);
      await saga.waitFor('compensated');
      expect(await saga.compensations()).toEqual(['ReleaseSeat']);
    });
  });
});

let noRetry: ReturnType<typeof buildNoRetry> | undefined;
function noRetrySaga() {
  return (noRetry ??= buildNoRetry());
}
function buildNoRetry() {
  return defineSaga({ name: 'kit-trip-once', version: 1, start: defineMessage({ type: 'BookTripOnce', topic: 'kit.trips-once', schema: id }), data: (b) => ({ bookingId: b.bookingId }) })
    .step('holdSeat', {
      command: HoldSeat,
      payload: (d) => ({ bookingId: d.bookingId }),
      success: [SeatHeld],
      keep: (r) => ({ seat: r.seat }),
      compensate: { command: ReleaseSeat, payload: (d, kept) => ({ bookingId: d.bookingId, seat: kept.seat }), success: [SeatReleased] },
    })
    .step('takePayment', { command: TakePayment, payload: (d) => ({ bookingId: d.bookingId }), success: [PaymentTaken], failure: [PaymentFailed] })
    .build();
}
