/**
 * An idle worker stays idle: once nothing has happened for its idle window, it sends no query to
 * Postgres at all (with the idle poll off), while a saga still runs to completion when work comes
 * (NOTIFY and its own writes wake it, not a timer): see "An idle worker costs nothing" in
 * docs/performance.md.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import orderModuleFactory from '../../examples/order/index.js';
import { migrateExample } from '../../examples/order/participants.js';
import { makeOrders } from '../../examples/order/run.js';
import { orderSaga } from '../../examples/order/saga.js';
import { createClient } from '../../src/client.js';
import type { Db } from '../../src/db/db.js';
import { MemoryTransport } from '../../src/transport/memory.js';
import { createWorker } from '../../src/worker/worker.js';
import { createTestDb, uniqueName, type TestDb } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

let t: TestDb;
const exampleSchema = uniqueName('sf_idle_ex');

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_idle' });
  await migrateExample(t.db, exampleSchema);
});

afterAll(async () => {
  await t.db.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await t.drop();
});

/** The worker's database port, counting every statement it sends. */
function counting(db: Db): { db: Db; count: () => number } {
  let n = 0;
  const wrapped: Db = {
    pool: db.pool,
    close: () => db.close(),
    connectListener: () => db.connectListener(),
    connect: () => db.connect(),
    query: (text, values) => {
      n++;
      return db.query(text, values);
    },
    transaction: (fn, opts) =>
      db.transaction(
        (tx) =>
          fn({
            query: (text, values) => {
              n++;
              return tx.query(text, values);
            },
            queryAndCommit: (text, values) => {
              n++;
              return tx.queryAndCommit(text, values);
            },
          }),
        opts,
      ),
  };
  return { db: wrapped, count: () => n };
}

describe('an idle worker', () => {
  it('sends no query once idle, and still completes a saga started through the outbox (NOTIFY)', async () => {
    const c = counting(t.db);
    const transport = new MemoryTransport();
    const mod = orderModuleFactory({ env: { ORDER_EXAMPLE_SCHEMA: exampleSchema } });
    const polls = { fallbackPollMs: 50, idlePollMs: 0, idleAfterMs: 300 };
    const worker = createWorker({ db: c.db, transport, module: mod, options: { schema: t.schema, relay: polls, timers: polls } });
    await worker.start();
    try {
      // Busy at first: the safety-net polls run at their active rate...
      await waitFor('a few active-rate polls', () => c.count(), (n) => n >= 4, { timeoutMs: 5_000 });
      // ...then the worker falls idle and the count stops moving. Proving that NOTHING happens
      // needs a window of time: this is the one test that watches the clock on purpose.
      const idleSince = await waitFor(
        'the query count to settle',
        async () => {
          const before = c.count();
          await new Promise((r) => setTimeout(r, 400));
          return { before, after: c.count() };
        },
        (x) => x.before === x.after,
        { timeoutMs: 10_000 },
      );
      const settled = idleSince.after;
      const windowEnd = Date.now() + 1_000;
      await waitFor('one idle second', () => Date.now(), (now) => now >= windowEnd, { timeoutMs: 2_000, intervalMs: 100 });
      expect(c.count()).toBe(settled);

      // Work arrives through the outbox in another transaction: NOTIFY wakes the relay.
      const client = createClient({ schema: t.schema, db: t.db });
      const { sagaId } = await client.startSaga(orderSaga, makeOrders(1, { runId: 'idle' })[0]!);
      const status = await waitFor(
        'the saga to complete',
        async () => (await t.db.query<{ status: string }>(`SELECT status FROM "${t.schema}".sagas WHERE id = $1`, [sagaId])).rows[0]?.status,
        (s) => s === 'completed',
        { timeoutMs: 20_000 },
      );
      expect(status).toBe('completed');
    } finally {
      await worker.stop();
      await transport.close();
    }
  }, 60_000);
});
