/**
 * The worker end to end on real Postgres with the memory transport and the order example:
 * (a) the happy and compensation paths end `completed` / `compensated` with the step timeline in
 *     saga_steps, contiguous versions (sagas.version = number of transitions) and compensations in
 *     reverse order (refund before release);
 * (b) a crash after COMMIT and before the ack (every delivery handed over again after it
 *     committed): the inbox absorbs each redelivery, no effect is applied twice.
 */
import { describe, expect, it } from 'vitest';
import { MemoryTransport } from '../../../src/transport/memory.js';
import { RedeliveringTransport } from '../../helpers/redelivering-transport.js';
import { waitFor } from '../../helpers/wait.js';
import { shape, workerSuite } from './suite.js';

const suite = workerSuite('sf_wk_flow');
const { startWorker, orders, startMessage, sagaRows, waitTerminal, steps, effectsOf, eventsFor, expectContiguous } = suite;

describe('(a) happy path and compensation path', () => {
  it('end completed / compensated with the step timeline, contiguous versions and compensations in reverse order', async () => {
    const w = await startWorker();
    const list = orders(7, ['none', 'none', 'none', 'shipping', 'shipping', 'payment', 'stock']);
    const starts = list.map((o) => startMessage(o));
    await w.transport.publisher.publish(starts.map((s) => s.message));
    const rows = await waitTerminal(starts.map((s) => s.sagaId));
    const byId = new Map(rows.map((r) => [r.id, r]));
    const effects = await effectsOf(list.map((o) => o.orderId));

    const expected = {
      none: {
        status: 'completed',
        version: 4,
        steps: ['1:reserveStock/forward#1=succeeded', '2:chargePayment/forward#1=succeeded', '3:shipOrder/forward#1=succeeded'],
        effects: ['reserve', 'charge', 'ship'],
      },
      shipping: {
        status: 'compensated',
        version: 6,
        steps: [
          '1:reserveStock/forward#1=succeeded',
          '2:chargePayment/forward#1=succeeded',
          '3:shipOrder/forward#1=failed',
          '4:chargePayment/compensation#1=succeeded',
          '5:reserveStock/compensation#1=succeeded',
        ],
        effects: ['reserve', 'charge', 'refund', 'release'],
      },
      payment: {
        status: 'compensated',
        version: 4,
        steps: ['1:reserveStock/forward#1=succeeded', '2:chargePayment/forward#1=failed', '3:reserveStock/compensation#1=succeeded'],
        effects: ['reserve', 'release'],
      },
      stock: { status: 'compensated', version: 2, steps: ['1:reserveStock/forward#1=failed'], effects: [] },
    } as const;

    for (const [i, o] of list.entries()) {
      const e = expected[o.failAt as keyof typeof expected];
      const saga = byId.get(starts[i]!.sagaId)!;
      expect(saga.status, o.failAt).toBe(e.status);
      expect(saga.version, o.failAt).toBe(e.version);
      expect(saga.data.orderId).toBe(o.orderId);
      expect(shape(await steps(saga.id)), o.failAt).toEqual(e.steps);
      // Effects in the order they were applied: the refund comes before the release.
      expect(effects.get(o.orderId), o.failAt).toEqual(e.effects);
    }
    const reasons = rows.filter((r) => r.status === 'compensated').map((r) => r.reason);
    expect(reasons.every((r) => typeof r === 'string' && r.length > 0)).toBe(true);
    expectContiguous(await eventsFor(w.transitions, rows), rows);
  });
});

describe('(b) crash after COMMIT, before the ack', () => {
  it('every redelivered message hits the inbox: no second effect, the duplicate path is taken', async () => {
    const inner = new MemoryTransport();
    const transport = new RedeliveringTransport(inner, (consumer) => consumer !== 'sagaflow.dead-letter-recorder');
    const w = await startWorker({ transport });
    const list = orders(6, ['none', 'none', 'none', 'none', 'shipping', 'payment']);
    const starts = list.map((o) => startMessage(o));
    await transport.publisher.publish(starts.map((s) => s.message));
    const rows = await waitTerminal(starts.map((s) => s.sagaId));
    const versions = await eventsFor(w.transitions, rows);
    expectContiguous(versions, rows);

    // Each saga version is one message the orchestrator applied; each step row is one command a participant handled.
    const orchestratorMessages = rows.reduce((n, r) => n + r.version, 0);
    const commands = (await Promise.all(rows.map((r) => steps(r.id)))).reduce((n, s) => n + s.length, 0);
    await waitFor(
      'every redelivery to be handled',
      () => w.log.count('duplicate delivery ignored'),
      (n) => n === orchestratorMessages + commands,
      { timeoutMs: 10_000 },
    );
    const dupes = w.log.lines.filter((l) => l.msg === 'duplicate delivery ignored');
    expect(dupes.filter((l) => l.consumer === 'orchestrator.order')).toHaveLength(orchestratorMessages);
    expect(dupes.filter((l) => String(l.consumer).startsWith('participant.'))).toHaveLength(commands);
    expect(transport.redelivered).toBeGreaterThanOrEqual(orchestratorMessages + commands);
    // Participants ran each command's business code once, not once per delivery.
    expect(w.handled).toBe(commands);

    const effects = await effectsOf(list.map((o) => o.orderId));
    for (const o of list) {
      const want = { none: ['reserve', 'charge', 'ship'], shipping: ['reserve', 'charge', 'refund', 'release'], payment: ['reserve', 'release'] }[
        o.failAt as 'none' | 'shipping' | 'payment'
      ];
      expect(effects.get(o.orderId), o.orderId).toEqual(want);
    }

    // A publisher retry: the identical start message once more, long after it was processed.
    const before = w.log.count('duplicate delivery ignored');
    await transport.publisher.publish([starts[0]!.message]);
    await waitFor('the repeated start to be ignored', () => w.log.count('duplicate delivery ignored'), (n) => n === before + 2);
    expect((await sagaRows([starts[0]!.sagaId]))[0]!.version).toBe(rows.find((r) => r.id === starts[0]!.sagaId)!.version);
    expect((await effectsOf([list[0]!.orderId])).get(list[0]!.orderId)).toEqual(['reserve', 'charge', 'ship']);
  });
});

