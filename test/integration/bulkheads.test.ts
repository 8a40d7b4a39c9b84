/**
 * Bulkheads (concurrency limits) against a real Postgres, separate gate instances standing in for
 * separate orchestrator processes:
 * - of many concurrent transactions, at most K take a slot; the others hold with the visible reason;
 * - a reply frees the slot and hands it, in the same transaction, to the saga that waited longest
 *   (its wake time moved to now), which takes it even though the gate is full;
 * - a transaction that dies (rolled back, as a kill -9 leaves it) leaves no slot taken; a slot whose
 *   saga moved on without a reply (cancelled, deadline) is recognised from the saga's state and freed;
 * - a woken saga takes the slot handed to it even while another transaction holds that slot's row
 *   lock (it waits instead of skipping its own slot), and a saga found asleep on a handed slot is
 *   woken by the safety net (a 100,000 burst once left 48 compensations asleep for an hour that way);
 * - a compensation waiting at the gate is served before forward steps that waited longer, and with
 *   20,000 sagas waiting a hand-off reads the front of the queue from the index instead of sorting
 *   them all (a 100,000-saga burst once spent 1.7 s per hand-off that way).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Queryable } from '../../src/db/db.js';
import { silentLogger } from '../../src/log.js';
import { BulkheadGates } from '../../src/resilience/bulkhead-gates.js';
import { bulkheadPolicy } from '../../src/resilience/policy.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';

let t: TestDb;
beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_bulkheads', pool: 14 });
});
afterAll(async () => t?.drop());

const K = 3;
const { random } = seededRandom('bulkheads');
const policies = new Map([['payment', bulkheadPolicy('payment', { maxInFlight: K, maxWaitMs: 3_600_000 })]]);
const gates = (onRelease = () => {}) => new BulkheadGates({ schema: t.schema, policies, logger: silentLogger(), random, onRelease });

/** Writes a saga row as the transition would: waiting for `commandId`'s reply, or held at the gate. */
async function writeSaga(db: Queryable, id: string, at: { commandId: string } | { held: string; wakeInMs: number; phase?: 'forward' | 'compensation' }): Promise<void> {
  const cursor =
    'commandId' in at
      ? { step: 'pay', phase: 'forward', attempt: 1, seq: 1, waiting: 'reply', commandId: at.commandId, earlier: [] }
      : { step: 'pay', phase: at.phase ?? 'forward', attempt: 1, seq: 0, waiting: 'held', commandId: null, earlier: [], held: { gate: 'payment', reason: at.held } };
  const state = { done: [], undone: [], kept: {}, seq: cursor.seq, correlationId: id, failedAt: null, cursor };
  await db.query(
    `INSERT INTO "${t.schema}".sagas (id, tenant_id, saga_type, definition_version, status, data, state, version, wake_at)
     VALUES ($1, 't', 'order', 1, 'running', '{}', $2, 1, now() + $3 * interval '1 millisecond')
     ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, wake_at = EXCLUDED.wake_at, version = sagas.version + 1`,
    [id, JSON.stringify(state), 'commandId' in at ? 30_000 : at.wakeInMs],
  );
}

/** One orchestrator transaction asking to send saga `id`'s payment command; writes the saga as the engine would. */
async function attempt(g: BulkheadGates, id: string, opts: { wasHeld?: boolean; waitMs?: number } = {}) {
  return t.db.transaction(async (tx) => {
    const gt = g.begin();
    const commandId = randomUUID();
    const hold = await gt.admit(tx, 'payment', id, { commandId, tenantId: 't', wasHeld: opts.wasHeld ?? false });
    // Concurrent transactions overlap here, as batches of two processes do.
    if (opts.waitMs) await tx.query('SELECT pg_sleep($1)', [opts.waitMs / 1000]);
    await writeSaga(tx, id, hold ? { held: hold.reason, wakeInMs: hold.delayMs } : { commandId });
    await gt.flush(tx);
    gt.committed();
    return { hold, commandId };
  });
}

/** The transaction applying saga `id`'s reply: the saga moves on and its slot is freed (and handed on). */
async function reply(g: BulkheadGates, id: string): Promise<void> {
  await t.db.transaction(async (tx) => {
    const gt = g.begin();
    gt.record('payment', id, 'ok');
    await tx.query(`UPDATE "${t.schema}".sagas SET state = jsonb_set(state, '{cursor}', 'null') WHERE id = $1`, [id]);
    await gt.flush(tx);
    gt.committed();
  });
}

async function slots() {
  return (await t.db.query<{ slot: number; saga_id: string | null; command_id: string | null }>(`SELECT slot, saga_id, command_id FROM "${t.schema}".gate_slots WHERE gate = 'payment' ORDER BY slot`)).rows;
}

describe('bulkheads in Postgres', () => {
  it('at most K of many concurrent transactions (two "processes") send; the rest hold with the reason, attempts untouched', async () => {
    const a = gates();
    const b = gates();
    await a.ensure(t.db);
    await b.ensure(t.db);
    const ids = Array.from({ length: 10 }, () => randomUUID());
    const results = await Promise.all(ids.map((id, i) => attempt(i % 2 ? a : b, id, { waitMs: 50 })));
    expect(results.filter((r) => r.hold === null)).toHaveLength(K);
    for (const r of results.filter((r) => r.hold)) {
      expect(r.hold).toMatchObject({ reason: 'waiting: bulkhead payment full' });
      expect(r.hold!.delayMs).toBeGreaterThanOrEqual(3_600_000);
    }
    const taken = (await slots()).filter((s) => s.command_id !== null);
    expect(taken.map((s) => s.command_id).sort()).toEqual(results.filter((r) => !r.hold).map((r) => r.commandId).sort());
    // Clean up for the next test: every attempt ends.
    await t.db.query(`UPDATE "${t.schema}".gate_slots SET saga_id = NULL, command_id = NULL`);
    await t.db.query(`DELETE FROM "${t.schema}".sagas`);
  });

  it('a reply hands its slot to the saga that waited longest, which takes it although the gate is full', async () => {
    let released = 0;
    const g = gates(() => released++);
    const inFlight = Array.from({ length: K }, () => randomUUID());
    for (const id of inFlight) expect((await attempt(g, id)).hold).toBeNull();
    const first = randomUUID();
    const second = randomUUID();
    expect((await attempt(g, first)).hold).not.toBeNull();
    expect((await attempt(g, second)).hold).not.toBeNull();
    // The reply of the first in-flight command: its transaction frees the slot.
    await reply(g, inFlight[0]!);
    expect(released).toBe(1);
    const handed = (await slots()).find((s) => s.saga_id === first);
    expect(handed).toMatchObject({ command_id: null });
    const wake = await t.db.query<{ due: boolean }>(`SELECT wake_at <= now() AS due FROM "${t.schema}".sagas WHERE id = $1`, [first]);
    expect(wake.rows[0]!.due).toBe(true);
    // A newcomer finds the gate full; the woken saga takes its handed slot.
    expect((await attempt(g, randomUUID())).hold).not.toBeNull();
    const woken = await attempt(g, first, { wasHeld: true });
    expect(woken.hold).toBeNull();
    expect((await slots()).find((s) => s.saga_id === first)).toMatchObject({ command_id: woken.commandId });
    // The second waiter is still asleep (nothing freed for it).
    const still = await t.db.query<{ due: boolean }>(`SELECT wake_at <= now() AS due FROM "${t.schema}".sagas WHERE id = $1`, [second]);
    expect(still.rows[0]!.due).toBe(false);
  });

  it('a transaction that dies takes no slot; a slot whose saga moved on without a reply is reclaimed', async () => {
    await t.db.query(`UPDATE "${t.schema}".gate_slots SET saga_id = NULL, command_id = NULL`);
    await t.db.query(`DELETE FROM "${t.schema}".sagas`);
    const g = gates();
    // "kill -9" mid-transaction: the slot was locked and assigned, the transaction never commits.
    await expect(
      t.db.transaction(async (tx) => {
        const gt = g.begin();
        expect(await gt.admit(tx, 'payment', randomUUID(), { commandId: randomUUID(), tenantId: 't', wasHeld: false })).toBeNull();
        await gt.flush(tx);
        throw new Error('process killed');
      }),
    ).rejects.toThrow('process killed');
    expect((await slots()).every((s) => s.saga_id === null)).toBe(true);
    // Fill the gate, then two sagas leave without a reply (a cancel, a deadline): no signal frees their slots.
    const ids = Array.from({ length: K }, () => randomUUID());
    for (const id of ids) expect((await attempt(g, id)).hold).toBeNull();
    await t.db.query(`UPDATE "${t.schema}".sagas SET status = 'compensated', state = jsonb_set(state, '{cursor}', 'null') WHERE id = $1`, [ids[0]]);
    await t.db.query(`UPDATE "${t.schema}".sagas SET state = jsonb_set(state, '{cursor,commandId}', to_jsonb($2::text)) WHERE id = $1`, [ids[1], randomUUID()]);
    // A fresh process (no recent reclaim) finds the gate full, looks for leaks, and sends.
    const waiter = randomUUID();
    const fresh = gates();
    const r = await attempt(fresh, waiter);
    expect(r.hold).toBeNull();
    const left = await slots();
    expect(left.filter((s) => s.saga_id !== null).map((s) => s.saga_id).sort()).toEqual([ids[2], waiter].sort());
    // The safety net hands the other freed slot to a saga waiting at the gate.
    const held = randomUUID();
    await writeSaga(t.db, held, { held: 'waiting: bulkhead payment full', wakeInMs: 3_600_000 });
    expect(await fresh.pump(t.db)).toBe(1);
    expect((await slots()).find((s) => s.saga_id === held)).toMatchObject({ command_id: null });
  });

  it('a compensation waiting at the gate gets the freed slot before forward steps that waited longer', async () => {
    await t.db.query(`UPDATE "${t.schema}".gate_slots SET saga_id = NULL, command_id = NULL`);
    await t.db.query(`DELETE FROM "${t.schema}".sagas`);
    const g = gates();
    const inFlight = Array.from({ length: K }, () => randomUUID());
    for (const id of inFlight) expect((await attempt(g, id)).hold).toBeNull();
    const forward = [randomUUID(), randomUUID()];
    const undo = randomUUID();
    await writeSaga(t.db, forward[0]!, { held: 'waiting: bulkhead payment full', wakeInMs: 3_600_000 });
    await writeSaga(t.db, forward[1]!, { held: 'waiting: bulkhead payment full', wakeInMs: 3_600_001 });
    await writeSaga(t.db, undo, { held: 'waiting: bulkhead payment full', wakeInMs: 3_600_002, phase: 'compensation' });
    await reply(g, inFlight[0]!);
    const holders = (await slots()).map((s) => s.saga_id);
    expect(holders).toContain(undo);
    expect(holders).not.toContain(forward[0]);
  });

  it('with 20,000 sagas waiting, a hand-off reads the front of the queue from the index (no sort of the waiters)', async () => {
    await t.db.query(`UPDATE "${t.schema}".gate_slots SET saga_id = NULL, command_id = NULL`);
    await t.db.query(`DELETE FROM "${t.schema}".sagas`);
    const cursor = { step: 'pay', phase: 'forward', attempt: 1, seq: 0, waiting: 'held', commandId: null, earlier: [], held: { gate: 'payment', reason: 'waiting: bulkhead payment full' } };
    const state = { done: [], undone: [], kept: {}, seq: 0, correlationId: 'c', failedAt: null, cursor };
    await t.db.query(
      `INSERT INTO "${t.schema}".sagas (id, tenant_id, saga_type, definition_version, status, data, state, version, wake_at)
       SELECT gen_random_uuid(), 't', 'order', 1, 'running', '{}', $1::jsonb, 1, now() + interval '1 hour' + n * interval '1 millisecond'
       FROM generate_series(1, 20000) AS n`,
      [JSON.stringify(state)],
    );
    // Running sagas too, as in a real backlog: the index must keep them out of the way.
    await t.db.query(
      `INSERT INTO "${t.schema}".sagas (id, tenant_id, saga_type, definition_version, status, data, state, version, wake_at)
       SELECT gen_random_uuid(), 't', 'order', 1, 'running', '{}', jsonb_set($1::jsonb, '{cursor,waiting}', '"reply"'), 1, now() + interval '30 seconds'
       FROM generate_series(1, 5000)`,
      [JSON.stringify(state)],
    );
    await t.db.query(`ANALYZE "${t.schema}".sagas`);
    const store = gates().store;
    const plan = await t.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${store.waitersSql('3')}`, ['payment']);
      return JSON.stringify(rows[0]!['QUERY PLAN']);
    });
    expect(plan).toContain('"Index Name":"sagas_held"');
    expect(plan).not.toContain('"Node Type":"Sort"');
    expect(plan).not.toContain('"Node Type":"Incremental Sort"');
    // And the hand-off itself wakes exactly the front of the queue.
    const first = await t.db.query<{ id: string }>(`SELECT id FROM "${t.schema}".sagas WHERE state->'cursor'->>'waiting' = 'held' ORDER BY wake_at LIMIT 1`);
    expect(await gates().pump(t.db)).toBe(K);
    expect((await slots()).map((s) => s.saga_id)).toContain(first.rows[0]!.id);
  });

  it('a woken saga waits out a passing lock on its handed slot instead of missing it; a sleeper on a handed slot is woken', async () => {
    await t.db.query(`UPDATE "${t.schema}".gate_slots SET saga_id = NULL, command_id = NULL`);
    await t.db.query(`DELETE FROM "${t.schema}".sagas`);
    const g = gates();
    const inFlight = Array.from({ length: K }, () => randomUUID());
    for (const id of inFlight) expect((await attempt(g, id)).hold).toBeNull();
    const waiter = randomUUID();
    expect((await attempt(g, waiter)).hold).not.toBeNull();
    await reply(g, inFlight[0]!);
    expect((await slots()).find((s) => s.saga_id === waiter)).toMatchObject({ command_id: null });
    // Another transaction passes over the handed slot's row and keeps its lock for a while (as a
    // lockFree that read the row as free and found it handed on re-check does).
    const locker = await t.db.connect();
    await locker.query('BEGIN');
    await locker.query(`SELECT slot FROM "${t.schema}".gate_slots WHERE gate = 'payment' AND saga_id = $1 FOR UPDATE`, [waiter]);
    const woken = attempt(g, waiter, { wasHeld: true });
    const blocked = () =>
      t.db
        .query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%gate_slots%' AND datname = current_database()`)
        .then((r) => r.rows[0]!.n);
    // Either the attempt blocks on the lock (right) or it settles at once, holding again (the bug).
    const first = await Promise.race([woken.then(() => 'settled' as const), waitFor('the woken saga to wait for the slot lock', blocked, (n) => n > 0).then(() => 'blocked' as const)]);
    await locker.query('COMMIT');
    locker.release();
    expect(first).toBe('blocked');
    const r = await woken;
    expect(r.hold).toBeNull();
    expect((await slots()).find((s) => s.saga_id === waiter)).toMatchObject({ command_id: r.commandId });

    // A saga asleep (wake time an hour out) on a slot handed to it: the safety net wakes it.
    const sleeper = randomUUID();
    await writeSaga(t.db, sleeper, { held: 'waiting: bulkhead payment full', wakeInMs: 3_600_000 });
    await reply(g, inFlight[1]!); // hands the freed slot to the sleeper and wakes it ...
    await t.db.query(`UPDATE "${t.schema}".sagas SET wake_at = now() + interval '1 hour' WHERE id = $1`, [sleeper]); // ... which fell asleep again
    expect(await gates().pump(t.db)).toBeGreaterThanOrEqual(1);
    const due = await t.db.query<{ due: boolean }>(`SELECT wake_at <= now() AS due FROM "${t.schema}".sagas WHERE id = $1`, [sleeper]);
    expect(due.rows[0]!.due).toBe(true);
  });
});
