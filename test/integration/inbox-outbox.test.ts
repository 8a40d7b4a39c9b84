/**
 * The inbox and the transactional outbox against a real Postgres over real connections:
 * (a) two CONCURRENT transactions claiming one message id for one consumer: the second blocks on
 *     the first, exactly one wins and the other sees a duplicate (or a conflict for another body);
 * (b) the relay publishes rows committed out of id order (docs/fault-matrix.md P7: no `id > last` watermark);
 * (c) two relays over 2,000 due rows: all published once, outbox empty; a relay killed between
 *     the broker confirm and its COMMIT causes exactly that batch to be published again, nothing lost;
 * (d) LISTEN/NOTIFY: a relay that never polls publishes a row written by `client.send(.., { tx })`
 *     right after the caller's COMMIT, and nothing for a caller that rolled back;
 * (e) publish failures: retryable ones are rescheduled (attempts+1, last_error) and published once
 *     the broker recovers; non-retryable ones are parked and left alone;
 * (f) the fast path (OutboxDispatcher): confirmed rows are deleted later, piggy-backed on the next
 *     batch or by the idle flush; rows whose fast-path publish failed are published by the relay,
 *     and only after the grace period.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createClient } from '../../src/client.js';
import { createDb, type Db, type Queryable } from '../../src/db/db.js';
import { InboxStore } from '../../src/inbox/store.js';
import { silentLogger } from '../../src/log.js';
import { digest16 as bodyDigest } from '../../src/ids.js';
import { defineMessage } from '../../src/messages/message.js';
import { OutboxDispatcher } from '../../src/outbox/dispatcher.js';
import { OutboxRelay } from '../../src/outbox/relay.js';
import { OutboxStore } from '../../src/outbox/store.js';
import { SagaStore } from '../../src/saga/store.js';
import { PublishError, type OutgoingMessage } from '../../src/transport/contract.js';
import { writeBatch } from '../../src/transaction/write.js';
import { runTransactional, type Work } from '../../src/transaction/run.js';
import { APPLIED } from '../../src/transaction/outcome.js';
import { createTestDb, databaseUrl, type TestDb } from '../helpers/db.js';
import { RecordingPublisher } from '../helpers/recording-publisher.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';

let t: TestDb;
let db: Db;
let store: OutboxStore;
const logger = silentLogger();
const { random } = seededRandom('inbox-outbox');
const toStop: (() => Promise<void>)[] = [];

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_io', pool: 10 });
  db = t.db;
  store = new OutboxStore(t.schema);
});

// Every relay, dispatcher, extra pool and checked-out client of a test is stopped after it, so
// no relay of one test (woken by NOTIFY) publishes the rows of the next.
afterEach(async () => {
  for (const s of toStop.splice(0).reverse()) await s();
});

afterAll(async () => {
  await t?.drop();
});

function msg(n = 0): OutgoingMessage {
  const id = randomUUID();
  return { topic: 'io.test', key: `k${n}`, id, type: 'IO.Test', body: Buffer.from(JSON.stringify({ id, n })) };
}

function relay(publisher: RecordingPublisher, opts: ConstructorParameters<typeof OutboxRelay>[1] = {}, relayDb: Db = db): OutboxRelay {
  const r = new OutboxRelay({ db: relayDb, store, publisher, logger }, { fallbackPollMs: 0, ...opts });
  toStop.push(() => r.stop());
  return r;
}

async function outboxRows(ids?: readonly string[]): Promise<{ message_id: string; attempts: number; last_error: string | null; parked: boolean }[]> {
  const { rows } = await db.query<{ message_id: string; attempts: number; last_error: string | null; parked: boolean }>(
    `SELECT message_id, attempts, last_error, parked_at IS NOT NULL AS parked FROM ${store.table}
     ${ids ? 'WHERE message_id = ANY($1::uuid[])' : ''} ORDER BY id`,
    ids ? [ids] : [],
  );
  return rows;
}

async function clearOutbox(): Promise<void> {
  await db.query(`DELETE FROM ${store.table}`);
}

async function checkout(): Promise<pg.PoolClient> {
  const c = await db.pool.connect();
  toStop.push(async () => c.release());
  return c;
}

async function backendPid(c: Queryable): Promise<number> {
  const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}

/** Resolves once backend `pid` waits on a lock (a row or index entry held by another transaction). */
async function blockedOnLock(pid: number): Promise<void> {
  await waitFor(
    `backend ${pid} to wait on a lock`,
    async () => (await db.query<{ w: string | null }>('SELECT wait_event_type AS w FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.w,
    (w) => w === 'Lock',
    { timeoutMs: 10_000 },
  );
}

describe('(a) inbox claims under concurrent transactions', () => {
  const inbox = () => new InboxStore(t.schema);

  it('the second claim of the same id blocks until the first commits, then sees a duplicate', async () => {
    const [c1, c2] = [await checkout(), await checkout()];
    const pid2 = await backendPid(c2);
    const id = randomUUID();
    const digest = bodyDigest(Buffer.from('same body'));
    await c1.query('BEGIN');
    await c2.query('BEGIN');
    const first = await inbox().claim(c1, 'consumer.a', [{ messageId: id, digest }]);
    expect([...first.claimed]).toEqual([id]);

    let secondSettled = false;
    const second = inbox()
      .claim(c2, 'consumer.a', [{ messageId: id, digest }])
      .finally(() => {
        secondSettled = true;
      });
    await blockedOnLock(pid2);
    expect(secondSettled).toBe(false);
    await c1.query('COMMIT');
    const r2 = await second;
    await c2.query('COMMIT');

    expect(r2.claimed.size).toBe(0);
    expect([...r2.duplicates]).toEqual([id]);
    expect(r2.conflicts.size).toBe(0);
    const { rows } = await db.query(`SELECT 1 FROM "${t.schema}".inbox WHERE consumer = 'consumer.a' AND message_id = $1`, [id]);
    expect(rows).toHaveLength(1);
  });

  it('when the first claimer rolls back, the blocked second claim wins', async () => {
    const [c1, c2] = [await checkout(), await checkout()];
    const pid2 = await backendPid(c2);
    const id = randomUUID();
    const digest = bodyDigest(Buffer.from('body'));
    await c1.query('BEGIN');
    await c2.query('BEGIN');
    expect((await inbox().claim(c1, 'consumer.b', [{ messageId: id, digest }])).claimed.has(id)).toBe(true);
    const second = inbox().claim(c2, 'consumer.b', [{ messageId: id, digest }]);
    await blockedOnLock(pid2);
    await c1.query('ROLLBACK');
    const r2 = await second;
    await c2.query('COMMIT');
    expect([...r2.claimed]).toEqual([id]);
    expect(r2.duplicates.size + r2.conflicts.size).toBe(0);
  });

  it('the same id with a different body is a conflict, concurrently and sequentially; other consumers are independent', async () => {
    const [c1, c2] = [await checkout(), await checkout()];
    const pid2 = await backendPid(c2);
    const id = randomUUID();
    await c1.query('BEGIN');
    await c2.query('BEGIN');
    await inbox().claim(c1, 'consumer.c', [{ messageId: id, digest: bodyDigest(Buffer.from('original')) }]);
    const second = inbox().claim(c2, 'consumer.c', [{ messageId: id, digest: bodyDigest(Buffer.from('forged')) }]);
    await blockedOnLock(pid2);
    await c1.query('COMMIT');
    const r2 = await second;
    await c2.query('COMMIT');
    expect(r2.claimed.size).toBe(0);
    expect([...r2.conflicts]).toEqual([id]);
    expect(r2.duplicates.size).toBe(0);

    // Sequentially, in one batch with a fresh id: one conflict, one claim, and the same id is new for another consumer.
    const fresh = randomUUID();
    const r3 = await db.transaction((tx) =>
      inbox().claim(tx, 'consumer.c', [
        { messageId: fresh, digest: bodyDigest(Buffer.from('x')) },
        { messageId: id, digest: bodyDigest(Buffer.from('forged again')) },
      ]),
    );
    expect([...r3.claimed]).toEqual([fresh]);
    expect([...r3.conflicts]).toEqual([id]);
    const r4 = await db.transaction((tx) => inbox().claim(tx, 'consumer.other', [{ messageId: id, digest: bodyDigest(Buffer.from('forged')) }]));
    expect([...r4.claimed]).toEqual([id]);
  });
});

describe('(b) the relay and rows committed out of id order', () => {
  it('publishes a row with a lower id that commits after a higher one was already relayed', async () => {
    await clearOutbox();
    const publisher = new RecordingPublisher();
    const r = relay(publisher);
    const [t1, t2] = [await checkout(), await checkout()];
    const m1 = msg(1);
    const m2 = msg(2);
    await t1.query('BEGIN');
    await store.enqueue(t1, [m1]); // takes the lower id and stays open
    await t2.query('BEGIN');
    await store.enqueue(t2, [m2]);
    const id1 = Number((await t1.query<{ id: string }>(`SELECT id FROM ${store.table} WHERE message_id = $1`, [m1.id])).rows[0]!.id);
    const id2 = Number((await t2.query<{ id: string }>(`SELECT id FROM ${store.table} WHERE message_id = $1`, [m2.id])).rows[0]!.id);
    expect(id1).toBeLessThan(id2);
    await t2.query('COMMIT');

    await r.runOnce();
    expect(publisher.confirmed.map((m) => m.id)).toEqual([m2.id]);

    await t1.query('COMMIT');
    await r.runOnce();
    expect(publisher.confirmed.map((m) => m.id)).toEqual([m2.id, m1.id]);
    expect(await outboxRows()).toEqual([]);
  });
});

describe('(c) two relays at once over 2,000 due rows', () => {
  const N = 2000;

  async function enqueueMany(n: number): Promise<OutgoingMessage[]> {
    const messages = Array.from({ length: n }, (_, i) => msg(i));
    await db.transaction((tx) => store.enqueue(tx, messages));
    return messages;
  }

  function relayDb(name: string): Db {
    const d = createDb({ connectionString: databaseUrl(), max: 3, applicationName: name });
    toStop.push(() => d.close());
    return d;
  }

  it('publishes every row exactly once and empties the outbox', async () => {
    await clearOutbox();
    const messages = await enqueueMany(N);
    const [pa, pb] = [new RecordingPublisher(), new RecordingPublisher()];
    const ra = relay(pa, { batchSize: 100 }, relayDb(`sf-relay-a-${t.schema}`));
    const rb = relay(pb, { batchSize: 100 }, relayDb(`sf-relay-b-${t.schema}`));
    const started = Date.now();
    await Promise.all([ra.runOnce(), rb.runOnce()]);
    // A relay that found every due row locked by the other looks again shortly; wait for the end state.
    await waitFor('the outbox to drain', () => store.counts(db), (c) => c.pending === 0 && c.parked === 0);

    const counts = new Map<string, number>();
    for (const m of [...pa.confirmed, ...pb.confirmed]) counts.set(m.id, (counts.get(m.id) ?? 0) + 1);
    const lost = messages.filter((m) => !counts.has(m.id)).length;
    const duplicates = [...counts.values()].reduce((s, c) => s + c - 1, 0);
    console.log(
      `[relay race] ${N} rows in ${Date.now() - started} ms: relay A ${pa.confirmed.length}, relay B ${pb.confirmed.length}, lost ${lost}, duplicates ${duplicates}`,
    );
    expect(lost).toBe(0);
    expect(duplicates).toBe(0);
    expect(counts.size).toBe(N);
    // Both relays did part of the work: they really ran at the same time over the same rows.
    expect(pa.confirmed.length).toBeGreaterThan(0);
    expect(pb.confirmed.length).toBeGreaterThan(0);
  });

  it('a relay killed after the broker confirmed and before its COMMIT: that batch is published again, nothing lost', async () => {
    await clearOutbox();
    const messages = await enqueueMany(N);
    const nameA = `sf-relay-crash-${t.schema}`;
    const [pa, pb] = [new RecordingPublisher(), new RecordingPublisher()];
    let crashedBatch = 0;
    // One of relay A's batches (chosen by the seed) reaches the broker, then A's database session
    // dies before it can delete the rows.
    const crashCall = 1 + Math.floor(random() * 3);
    pa.before = async (call) => {
      if (call.n !== crashCall) return;
      crashedBatch = call.messages.length;
      pa.confirmed.push(...call.messages);
      await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [nameA]);
    };
    pa.failWith = (call) => (call.n === crashCall ? new Error('relay A crashed after the confirm') : undefined);
    const ra = relay(pa, { batchSize: 100, retryDelayMs: 10 }, relayDb(nameA));
    const rb = relay(pb, { batchSize: 100, retryDelayMs: 10 }, relayDb(`sf-relay-ok-${t.schema}`));
    await Promise.all([ra.runOnce(), rb.runOnce()]);
    await waitFor('the outbox to drain', () => store.counts(db), (c) => c.pending === 0 && c.parked === 0);

    const counts = new Map<string, number>();
    for (const m of [...pa.confirmed, ...pb.confirmed]) counts.set(m.id, (counts.get(m.id) ?? 0) + 1);
    const lost = messages.filter((m) => !counts.has(m.id)).length;
    const duplicates = [...counts.values()].reduce((s, c) => s + c - 1, 0);
    console.log(`[relay crash] crashed batch ${crashedBatch} rows: lost ${lost}, duplicates ${duplicates} (each re-published once; consumers' inboxes absorb them)`);
    expect(crashedBatch).toBe(100);
    expect(lost).toBe(0);
    expect(duplicates).toBe(crashedBatch);
    expect(Math.max(...counts.values())).toBe(2);
  });
});

describe('(d) LISTEN/NOTIFY wakes a relay that never polls', () => {
  const Ping = defineMessage({ type: 'IO.Ping', topic: 'io.ping', schema: z.object({ n: z.number().int() }) });

  it('publishes what the caller wrote after its COMMIT, and nothing for a caller that rolled back', async () => {
    await clearOutbox();
    const publisher = new RecordingPublisher();
    const r = relay(publisher, { fallbackPollMs: 0 });
    await r.start();
    await r.runOnce(); // the start-up catch-up round is over; from here only a NOTIFY can wake it
    const client = createClient({ schema: t.schema, db });

    let committedId = '';
    await db.transaction(async (tx) => {
      committedId = (await client.send(Ping, { n: 1 }, { tx })).messageId;
      // Before COMMIT the row is invisible to the relay: a full relay round publishes nothing.
      await r.runOnce();
      expect(publisher.calls).toHaveLength(0);
    });
    await waitFor('the committed message to be published', () => publisher.confirmedIds().has(committedId), Boolean, { timeoutMs: 10_000 });

    let rolledBackId = '';
    await expect(
      db.transaction(async (tx) => {
        rolledBackId = (await client.send(Ping, { n: 2 }, { tx })).messageId;
        throw new Error('the caller changed its mind');
      }),
    ).rejects.toThrow('the caller changed its mind');
    // A later commit wakes the relay again; by the time it is published, the relay has looked at
    // everything there is, and the rolled-back message is not among it.
    const later = await db.transaction(async (tx) => (await client.send(Ping, { n: 3 }, { tx })).messageId);
    await waitFor('the later message to be published', () => publisher.confirmedIds().has(later), Boolean, { timeoutMs: 10_000 });
    expect(publisher.confirmedIds().has(rolledBackId)).toBe(false);
    expect(publisher.confirmed.map((m) => m.id)).toEqual([committedId, later]);
    // The confirm comes before the relay's delete commits.
    await waitFor('the outbox to be empty', () => outboxRows(), (rows) => rows.length === 0);
  });
});

describe('(d) LISTEN/NOTIFY with a schema name at the 63-character limit', () => {
  const Ping = defineMessage({ type: 'IO.Ping', topic: 'io.ping', schema: z.object({ n: z.number().int() }) });

  it('the caller can still commit, and the relay is still woken', async () => {
    // Schema names may be up to 63 characters; the NOTIFY channel derived from one must stay a valid identifier.
    const long = await createTestDb({ prefix: `sf_io_long_${'x'.repeat(41)}` });
    toStop.push(() => long.drop());
    expect(long.schema).toHaveLength(63);
    const longStore = new OutboxStore(long.schema);
    const publisher = new RecordingPublisher();
    const r = new OutboxRelay({ db: long.db, store: longStore, publisher, logger }, { fallbackPollMs: 0 });
    toStop.push(() => r.stop());
    await r.start();
    await r.runOnce();
    const client = createClient({ schema: long.schema, db: long.db });
    const id = await long.db.transaction(async (tx) => (await client.send(Ping, { n: 1 }, { tx })).messageId);
    await waitFor('the message to be published', () => publisher.confirmedIds().has(id), Boolean, { timeoutMs: 10_000 });
  });
});

describe('(e) publish failures', () => {
  it('retryable: rows are rescheduled with attempts+1 and last_error, and published once the broker recovers', async () => {
    await clearOutbox();
    const messages = Array.from({ length: 6 }, (_, i) => msg(i));
    await db.transaction((tx) => store.enqueue(tx, messages));
    const half = messages.filter((_, i) => i % 2 === 1).map((m) => m.id);
    const seen: { call: number; rows: { message_id: string; attempts: number; last_error: string | null }[] }[] = [];
    const publisher = new RecordingPublisher({
      failWith: (call) => {
        if (call.n === 1) return new PublishError('broker down #1', { code: 'CHANNEL_CLOSED', retryable: true, failedIds: call.messages.map((m) => m.id) });
        if (call.n === 2) return new PublishError('partial #2', { code: 'PUBLISH_TIMEOUT', retryable: true, failedIds: half });
        return undefined;
      },
    });
    // What the rows look like in the database when the relay tries them (a separate connection).
    publisher.before = async (call) => {
      seen.push({ call: call.n, rows: (await outboxRows(call.messages.map((m) => m.id))).map(({ parked: _p, ...r }) => r) });
    };
    const r = relay(publisher, { retryDelayMs: 20 });
    await r.runOnce();
    await waitFor('the outbox to drain', () => store.counts(db), (c) => c.pending === 0);

    expect(seen.map((s) => s.call)).toEqual([1, 2, 3]);
    expect(seen[0]!.rows.every((row) => row.attempts === 0 && row.last_error === null)).toBe(true);
    expect(seen[1]!.rows).toHaveLength(6);
    expect(seen[1]!.rows.every((row) => row.attempts === 1 && row.last_error === 'broker down #1')).toBe(true);
    expect(seen[2]!.rows.map((row) => row.message_id).sort()).toEqual([...half].sort());
    expect(seen[2]!.rows.every((row) => row.attempts === 2 && row.last_error === 'partial #2')).toBe(true);
    // Each message confirmed exactly once in the end.
    expect([...publisher.counts().values()]).toEqual([1, 1, 1, 1, 1, 1]);
    expect(publisher.confirmedIds()).toEqual(new Set(messages.map((m) => m.id)));
  });

  it('a batch failing in part: only the permanently failed rows are parked, the retryable ones are retried and published', async () => {
    await clearOutbox();
    const [big, flaky, fine] = [msg(1), msg(2), msg(3)];
    await db.transaction((tx) => store.enqueue(tx, [big, flaky, fine]));
    const publisher = new RecordingPublisher({
      failWith: (call) => {
        const failures = [
          ...(call.messages.some((m) => m.id === big.id) ? [{ id: big.id, code: 'MESSAGE_TOO_LARGE' as const, retryable: false, message: 'too large' }] : []),
          ...(call.n === 1 ? [{ id: flaky.id, code: 'PUBLISH_TIMEOUT' as const, retryable: true, message: 'no confirm' }] : []),
        ];
        return failures.length > 0 ? PublishError.of(failures, call.messages.length) : undefined;
      },
    });
    const r = relay(publisher, { retryDelayMs: 10 });
    await r.runOnce();
    await waitFor('the retryable row to be published', () => publisher.confirmedIds(), (ids) => ids.has(flaky.id), { timeoutMs: 10_000 });
    expect(publisher.confirmedIds()).toEqual(new Set([flaky.id, fine.id]));
    // The relay deletes a published row in its own transaction after the confirm: wait for it.
    await waitFor('the published rows to be deleted', outboxRows, (rows) => rows.length === 1, { timeoutMs: 10_000 });
    expect(await outboxRows()).toEqual([{ message_id: big.id, attempts: 1, last_error: 'too large', parked: true }]);
    expect(await store.counts(db)).toEqual({ pending: 0, parked: 1 });
  });

  it('non-retryable (MESSAGE_TOO_LARGE): rows are parked and the relay no longer picks them; other rows keep flowing', async () => {
    await clearOutbox();
    const big = msg(1);
    const ok = msg(2);
    await db.transaction((tx) => store.enqueue(tx, [big, ok]));
    const publisher = new RecordingPublisher({
      failWith: (call) =>
        call.messages.some((m) => m.id === big.id)
          ? new PublishError('message too large for the broker', { code: 'MESSAGE_TOO_LARGE', retryable: false, failedIds: [big.id] })
          : undefined,
    });
    const r = relay(publisher, { retryDelayMs: 10 });
    await r.runOnce();
    expect(publisher.confirmedIds()).toEqual(new Set([ok.id]));
    expect(await outboxRows()).toEqual([{ message_id: big.id, attempts: 1, last_error: 'message too large for the broker', parked: true }]);
    expect(await store.counts(db)).toEqual({ pending: 0, parked: 1 });
    expect(await store.nextDueInMs(db)).toBeNull();

    const calls = publisher.calls.length;
    const next = msg(3);
    await db.transaction((tx) => store.enqueue(tx, [next]));
    await r.runOnce();
    const later = publisher.calls.slice(calls).flatMap((c) => c.messages.map((m) => m.id));
    expect(later).toEqual([next.id]);
    expect(await outboxRows()).toEqual([{ message_id: big.id, attempts: 1, last_error: 'message too large for the broker', parked: true }]);
  });
});

describe('(f) the fast path: OutboxDispatcher', () => {
  const work =
    (graceMs: number): Work<OutgoingMessage> =>
    async (tx, items, deletes) => ({
      outcomes: items.map(() => APPLIED),
      written: await writeBatch(tx, { sagas: new SagaStore(t.schema), outbox: store, graceMs }, { sagas: [], steps: [], messages: items, deletes }),
    });

  async function present(ids: readonly string[]): Promise<number> {
    return (await outboxRows(ids)).length;
  }

  it('deletes confirmed rows later: piggy-backed on the next batch transaction, or by the idle flush', async () => {
    await clearOutbox();
    const publisher = new RecordingPublisher();
    const lazy = new OutboxDispatcher({ publisher, store, db, logger, onLeftBehind: () => {}, deleteFlushMs: 600_000 });
    toStop.push(() => lazy.drain());
    const first = [msg(1), msg(2)];
    await runTransactional({ db, dispatcher: lazy, logger }, first, work(60_000));
    await waitFor('the fast-path confirms', () => lazy.inFlight === 0 && first.every((m) => publisher.confirmedIds().has(m.id)), Boolean);
    // Confirmed, but the rows are still there: deleting them costs no extra round trip...
    expect(await present(first.map((m) => m.id))).toBe(2);
    // ...because the next batch's transaction deletes them in its own statement.
    const second = [msg(3)];
    await runTransactional({ db, dispatcher: lazy, logger }, second, work(60_000));
    expect(await present(first.map((m) => m.id))).toBe(0);
    expect(await present(second.map((m) => m.id))).toBe(1);

    // With nothing else to carry them, the idle flush deletes them.
    const eager = new OutboxDispatcher({ publisher, store, db, logger, onLeftBehind: () => {}, deleteFlushMs: 20 });
    toStop.push(() => eager.drain());
    const third = [msg(4), msg(5)];
    await runTransactional({ db, dispatcher: eager, logger }, third, work(60_000));
    await waitFor('the idle flush to delete the confirmed rows', () => present(third.map((m) => m.id)), (n) => n === 0);
    await lazy.drain(); // graceful shutdown flushes the last pending deletes
    expect(await outboxRows()).toEqual([]);
  });

  it('when the fast-path publish fails, rows stay and the relay publishes them once the grace period is over', async () => {
    await clearOutbox();
    const graceMs = 2000;
    const broken = new RecordingPublisher({
      failWith: (call) => new PublishError('connection lost', { code: 'CHANNEL_CLOSED', retryable: true, failedIds: call.messages.map((m) => m.id) }),
    });
    const healthy = new RecordingPublisher();
    const r = relay(healthy, { fallbackPollMs: 0 });
    await r.start();
    await r.runOnce();
    let leftBehind = 0;
    // Wired as the worker wires it: a failed fast path wakes the relay when the rows fall due.
    const dispatcher = new OutboxDispatcher({
      publisher: broken,
      store,
      db,
      logger,
      onLeftBehind: (n) => {
        leftBehind += n;
        r.wake(graceMs + 50);
      },
    });
    toStop.push(() => dispatcher.drain());
    const messages = [msg(1), msg(2), msg(3)];
    const before = Date.now();
    await runTransactional({ db, dispatcher, logger }, messages, work(graceMs));
    await waitFor('the fast path to give up', () => leftBehind, (n) => n === 3);
    expect(dispatcher.takeDeletes()).toEqual([]);
    expect(await present(messages.map((m) => m.id))).toBe(3);
    // Within the grace period the relay leaves them alone.
    await r.runOnce();
    expect(healthy.calls).toHaveLength(0);

    await waitFor('the relay to publish the rows left behind', () => messages.every((m) => healthy.confirmedIds().has(m.id)), Boolean, {
      timeoutMs: 15_000,
    });
    expect(Date.now() - before).toBeGreaterThanOrEqual(graceMs - 5);
    await waitFor('the outbox to drain', () => store.counts(db), (c) => c.pending === 0);
    expect(healthy.confirmed).toHaveLength(3);
  });
});
