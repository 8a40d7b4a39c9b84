/**
 * (c) a step timeout that falls due while the only worker is stopped fires exactly once after
 *     restart, with two new workers racing for it: one `timed_out` row per attempt.
 * (c2) a saga whose timer transition throws (its step was renamed while it waited) is parked with
 *     a visible reason and a counter, and cannot delay another saga's timer that falls due in the
 *     same round; the reply for the renamed step is dead-lettered DEFINITION_MISMATCH at once.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createClient } from '../../../src/client.js';
import { defineMessage } from '../../../src/messages/message.js';
import { defineSaga } from '../../../src/saga/definition.js';
import { MemoryTransport } from '../../../src/transport/memory.js';
import type { SagaflowModule } from '../../../src/module.js';
import { defineParticipant, reply } from '../../../src/participant/definition.js';
import { waitFor } from '../../helpers/wait.js';
import { shape, workerSuite } from './suite.js';

const suite = workerSuite('sf_wk_tm');
const { startWorker, stopWorker, waitTerminal, steps, waitingOn, eventsFor, expectContiguous, replyTo } = suite;

describe('(c) timers across a worker restart', () => {
  const TStart = defineMessage({ type: 'Tm.Start', topic: 'tm.start', schema: z.object({ n: z.number().int() }) });
  const Prepare = defineMessage({ type: 'Tm.Prepare', topic: 'tm.prep', schema: z.object({ n: z.number().int() }) });
  const Prepared = defineMessage({ type: 'Tm.Prepared', schema: z.object({}) });
  const Unprepare = defineMessage({ type: 'Tm.Unprepare', topic: 'tm.prep', schema: z.object({ n: z.number().int() }) });
  const Unprepared = defineMessage({ type: 'Tm.Unprepared', schema: z.object({}) });
  const Ask = defineMessage({ type: 'Tm.Ask', topic: 'tm.void', schema: z.object({ n: z.number().int() }) });
  const Answer = defineMessage({ type: 'Tm.Answer', schema: z.object({}) });
  const TIMEOUT_MS = 1500;

  const timeoutSaga = defineSaga({ name: 'timeouts', start: TStart, data: (s) => ({ n: s.n }) })
    .step('prepare', {
      command: Prepare,
      payload: (d) => ({ n: d.n }),
      success: [Prepared],
      compensate: { command: Unprepare, payload: (d) => ({ n: d.n }), success: [Unprepared] },
    })
    // Nobody ever answers Ask: every attempt times out, then `prepare` is compensated.
    .step('ask', { command: Ask, payload: (d) => ({ n: d.n }), success: [Answer], timeoutMs: TIMEOUT_MS, retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 50 } })
    .build();

  function timeoutModule(table: string): SagaflowModule {
    const prep = defineParticipant('prep')
      .on(Prepare, () => reply(Prepared, {}), [Prepared])
      .on(
        Unprepare,
        async ({ envelope, tx }) => {
          await tx.query(`INSERT INTO ${table} (saga_id) VALUES ($1)`, [envelope.sagaId]);
          return reply(Unprepared, {});
        },
        [Unprepared],
      )
      .build();
    return { sagas: [timeoutSaga], participants: [prep] };
  }

  /** A transport where Ask is routable (a queue exists) but nobody consumes it. */
  async function transportWithSilentParticipant(): Promise<MemoryTransport> {
    const tr = new MemoryTransport();
    await tr.declare({ topics: [{ name: 'tm.void' }], consumers: [{ consumer: 'nobody', topics: ['tm.void'] }] });
    return tr;
  }

  it('a timeout due while no worker runs fires once after restart, even with two workers racing for it', async () => {
    const table = `"${suite.exampleSchema}".timer_undo`;
    await suite.db.query(`CREATE TABLE ${table} (saga_id uuid NOT NULL)`);
    const mod = timeoutModule(table);
    const client = createClient({ schema: suite.t.schema });

    const w1 = await startWorker({ module: mod, transport: await transportWithSilentParticipant() });
    const K = 4;
    const starts = Array.from({ length: K }, (_, n) => {
      const sagaId = randomUUID();
      return { sagaId, message: client.build(TStart, { n }, { sagaId }) };
    });
    await w1.transport.publisher.publish(starts.map((s) => s.message));
    const ids = starts.map((s) => s.sagaId);
    for (const id of ids) await waitingOn(id, 'ask');
    await stopWorker(w1);
    // Stopped before the timers fell due; they are rows in the database, not in the dead process.
    const pending = await suite.db.query<{ due_in_ms: number }>(
      `SELECT extract(epoch FROM (wake_at - now())) * 1000 AS due_in_ms FROM "${suite.t.schema}".sagas WHERE id = ANY($1::uuid[])`,
      [ids],
    );
    expect(pending.rows).toHaveLength(K);
    for (const r of pending.rows) expect(Number(r.due_in_ms)).toBeGreaterThan(0);
    expect(w1.worker.stats().timersFired).toBe(0);

    await waitFor(
      'the timers to fall due with no worker running',
      async () => (await suite.db.query<{ due: boolean }>(`SELECT bool_and(wake_at <= now()) AS due FROM "${suite.t.schema}".sagas WHERE id = ANY($1::uuid[])`, [ids])).rows[0]!.due,
      (due) => due === true,
      { timeoutMs: TIMEOUT_MS + 5_000 },
    );

    const [w2, w3] = await Promise.all([
      startWorker({ module: mod, transport: await transportWithSilentParticipant() }),
      startWorker({ module: mod, transport: await transportWithSilentParticipant() }),
    ]);
    const rows = await waitTerminal(ids, 20_000);

    for (const r of rows) {
      expect(r.status).toBe('compensated');
      expect(r.reason).toBe(`step ask failed after 2 attempt(s): no reply within ${TIMEOUT_MS} ms`);
      expect(shape(await steps(r.id))).toEqual([
        '1:prepare/forward#1=succeeded',
        '2:ask/forward#1=timed_out',
        '3:ask/forward#2=timed_out',
        '4:prepare/compensation#1=succeeded',
      ]);
      // start, Prepared, timeout #1, retry timer, timeout #2 (compensate), Unprepared
      expect(r.version).toBe(6);
    }
    // Three timers per saga (two timeouts and one retry back-off), each fired by exactly one worker.
    expect(w2.worker.stats().timersFired + w3.worker.stats().timersFired).toBe(3 * K);
    const versions = await eventsFor([...w1.transitions, ...w2.transitions, ...w3.transitions], rows);
    expectContiguous(versions, rows);
    const undo = await suite.db.query<{ saga_id: string; n: number }>(`SELECT saga_id, count(*)::int AS n FROM ${table} GROUP BY saga_id`);
    expect(undo.rows.map((r) => r.n)).toEqual(Array(K).fill(1));
    console.log(`[timers] fired by worker 2: ${w2.worker.stats().timersFired}, by worker 3: ${w3.worker.stats().timersFired}`);
  });
});


describe('(c2) a saga whose timer transition throws', () => {
  const PStart = defineMessage({ type: 'Tp.Start', topic: 'tp.start', schema: z.object({ n: z.number().int() }) });
  const Reserve = defineMessage({ type: 'Tp.Reserve', topic: 'tp.void', schema: z.object({ n: z.number().int() }) });
  const Reserved = defineMessage({ type: 'Tp.Reserved', schema: z.object({}) });
  // Long enough to start both sagas (under two worker lifetimes) before either timer falls due.
  const TIMEOUT_MS = 4_000;
  const PARK_MS = 600_000;

  /** The saga as deployed, then with its only step renamed: a saga waiting at the old name no longer fits. */
  const sagaWithStep = (step: string) =>
    defineSaga({ name: 'tparked', start: PStart, data: (s) => ({ n: s.n }) })
      .step(step, { command: Reserve, payload: (d) => ({ n: d.n }), success: [Reserved], timeoutMs: TIMEOUT_MS, retry: { maxAttempts: 1 } })
      .build();
  const before: SagaflowModule = { sagas: [sagaWithStep('reserveStock')] };
  const after: SagaflowModule = { sagas: [sagaWithStep('reserveItems')] };

  async function silentTransport(): Promise<MemoryTransport> {
    const tr = new MemoryTransport();
    await tr.declare({ topics: [{ name: 'tp.void' }], consumers: [{ consumer: 'nobody', topics: ['tp.void'] }] });
    return tr;
  }

  async function start(w: Awaited<ReturnType<typeof startWorker>>, n: number): Promise<string> {
    const sagaId = randomUUID();
    await w.transport.publisher.publish([createClient({ schema: suite.t.schema }).build(PStart, { n }, { sagaId })]);
    return sagaId;
  }

  async function row(id: string) {
    const { rows } = await suite.db.query<{ status: string; reason: string | null; version: number; wake_in_ms: number | null }>(
      `SELECT status, reason, version, extract(epoch FROM (wake_at - now())) * 1000 AS wake_in_ms FROM "${suite.t.schema}".sagas WHERE id = $1`,
      [id],
    );
    return rows[0]!;
  }

  it('is parked with its reason while the other saga of the same round fires on time; its reply is dead-lettered at once', async () => {
    // The poisoned saga waits at reserveStock under the old definition...
    const w1 = await startWorker({ module: before, transport: await silentTransport(), options: { timers: { parkMs: PARK_MS } } });
    const poisoned = await start(w1, 1);
    const poisonedRow = await waitingOn(poisoned, 'reserveStock');
    await stopWorker(w1);
    // ...a valid saga waits at reserveItems under the new one...
    const w2 = await startWorker({ module: after, transport: await silentTransport(), options: { timers: { parkMs: PARK_MS } } });
    const valid = await start(w2, 2);
    await waitingOn(valid, 'reserveItems');
    await stopWorker(w2);
    expect(w1.worker.stats().timersFired + w2.worker.stats().timersFired, 'no timer fired before both sagas waited').toBe(0);
    await waitFor(
      'both timers to fall due with no worker running',
      async () => (await suite.db.query<{ due: boolean }>(`SELECT bool_and(wake_at <= now()) AS due FROM "${suite.t.schema}".sagas WHERE id = ANY($1::uuid[])`, [[poisoned, valid]])).rows[0]!.due,
      (due) => due === true,
      { timeoutMs: TIMEOUT_MS + 10_000 },
    );

    // ...and one worker with the new definition claims both in one timer round.
    const w3 = await startWorker({ module: after, transport: await silentTransport(), options: { timers: { parkMs: PARK_MS } } });
    const [validEnd] = await waitTerminal([valid], 15_000);
    expect(validEnd!.reason).toBe(`step reserveItems failed after 1 attempt(s): no reply within ${TIMEOUT_MS} ms`);
    expect(shape(await steps(valid))).toEqual(['1:reserveItems/forward#1=timed_out']);

    const parked = await waitFor('the poisoned saga to be parked', () => row(poisoned), (r) => r.reason !== null, { timeoutMs: 10_000 });
    expect(parked.status).toBe('running');
    expect(parked.version, 'parking is no transition').toBe(1);
    expect(parked.reason).toMatch(/^parked: timer failed: saga tparked has no step reserveStock/);
    // Tried again only after the park delay (database clock), not every second.
    expect(Number(parked.wake_in_ms)).toBeGreaterThan(PARK_MS - 60_000);
    expect(w3.worker.stats()).toMatchObject({ sagasParked: 1, timersFired: 1 });
    expect(w3.log.count('timer round failed; isolating its sagas one by one')).toBe(1);
    const warn = w3.log.lines.find((l) => /^saga parked: its timer failed/.test(l.msg));
    expect(warn).toMatchObject({ level: 40, sagaId: poisoned, sagaType: 'tparked', code: 'DEFINITION_MISMATCH' });
    expect(w3.log.count('timer round failed; retrying')).toBe(0);

    // The participant's reply to the renamed step: it can never apply, so it is dead-lettered at once
    // (not retried as a handler error), and the saga says so too.
    const reply = replyTo(poisoned, poisonedRow, Reserved, {}, { saga: { name: 'tparked', topic: PStart.topic! } });
    await w3.transport.publisher.publish([reply]);
    const dl = await waitFor('the reply to be dead-lettered', () => w3.deadLetters.find((d) => d.messageId === reply.id), (d) => d !== undefined, { timeoutMs: 10_000 });
    expect(dl).toMatchObject({ reasonCode: 'DEFINITION_MISMATCH', consumer: 'orchestrator.tparked' });
    const { rows } = await suite.db.query<{ attempts: number | null }>(`SELECT attempts FROM "${suite.t.schema}".dead_letters WHERE message_id = $1`, [reply.id]);
    expect(rows[0]!.attempts).toBe(1);
    const afterReply = await waitFor('the reply to park the saga', () => row(poisoned), (r) => r.reason?.startsWith('parked: Tp.Reserved') === true, { timeoutMs: 5_000 });
    expect(afterReply.reason).toContain('failed: saga tparked has no step reserveStock');
    expect(w3.worker.stats().sagasParked).toBe(2);
  });
});
