/**
 * Records the order saga's golden histories (completed, compensated, timed out, replayed) with a
 * real worker on Postgres, in a throwaway schema, and writes them next to this file as
 * `sagaflow history export` would:
 *
 *   npx tsx examples/order/histories/record.ts        (DATABASE_URL as for the worker)
 *
 * Re-record only when a change of the saga is meant to change its path, and then as a new
 * definition version: the files stand for sagas that may still be in flight somewhere.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient, createDb, createLogger, createWorker, loadConfig, MemoryTransport, migrate, SagaStore, type Db, type Worker } from '../../../src/index.js';
import { historyOf } from '../../../src/ops/history.js';
import { OutboxStore } from '../../../src/outbox/store.js';
import { SagaOperations } from '../../../src/ops/saga-ops.js';
import { TERMINAL_STATUSES } from '../../../src/saga/state.js';
import { transitionSettings } from '../../../src/transaction/transitions.js';
import { makeOrders } from '../run.js';
import { exampleTables, migrateExample, orderParticipants, orderSaga } from '../index.js';

const here = dirname(fileURLToPath(import.meta.url));
const config = loadConfig(process.env);
const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });
const suffix = randomBytes(3).toString('hex');
const schema = `sf_golden_${suffix}`;
const exSchema = `sf_golden_ex_${suffix}`;

async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, poke?: () => Promise<void>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await poke?.();
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  const db: Db = createDb({ connectionString: config.databaseUrl, max: 4, logger });
  const store = new SagaStore(schema);
  const status = async (id: string) => (await store.get(db, id))?.status;
  const workers: Worker[] = [];
  const start = async (participants: boolean) => {
    const w = createWorker({
      db,
      transport: new MemoryTransport(),
      module: { sagas: [orderSaga], participants: participants ? orderParticipants(exSchema) : [] },
      logger,
      options: { schema, retry: { maxAttempts: 3, delaysMs: [20] }, random: () => 0.5 },
    });
    workers.push(w);
    await w.start();
    return w;
  };
  try {
    await migrate(db, schema, { logger });
    await migrateExample(db, exSchema, 50);
    const client = createClient({ schema, db });
    const orders = makeOrders(4, { failEvery: 0, skus: 50 });
    const write = async (name: string, id: string) => {
      writeFileSync(join(here, `${name}.json`), `${JSON.stringify(await historyOf(db, store, id), null, 2)}\n`);
      process.stdout.write(`${name}: saga ${id} ${await status(id)}\n`);
    };
    const ended = (id: string) => until(`saga ${id} to end`, () => status(id), (s) => s !== undefined && TERMINAL_STATUSES.has(s));

    // Timed out: nobody answers ReserveStock; its timeouts (30 s) are brought forward by the database clock.
    const quiet = await start(false);
    const timedOut = await client.startSaga(orderSaga, { ...orders[0]!, failAt: 'none' });
    await until('the unanswered saga to give up', () => status(timedOut.sagaId), (s) => s === 'compensated', async () => {
      await db.query(`UPDATE "${schema}".sagas SET wake_at = now() WHERE id = $1 AND wake_at IS NOT NULL`, [timedOut.sagaId]);
      await db.query(`SELECT pg_notify($1, 'operator')`, [new OutboxStore(schema).channel]);
    });
    await quiet.stop();
    // Its unanswered commands are still in the outbox: answered now, they would reopen it as late successes.
    await db.query(`DELETE FROM "${schema}".outbox`);

    await start(true);
    const completed = await client.startSaga(orderSaga, { ...orders[1]!, failAt: 'none' });
    const compensated = await client.startSaga(orderSaga, { ...orders[2]!, failAt: 'payment' });
    await ended(completed.sagaId);
    await ended(compensated.sagaId);

    // Replayed: a payment outage stops the saga as failed; once it is over an operator replays it.
    const t = exampleTables(exSchema);
    const outage = (down: boolean) =>
      db.query(`INSERT INTO ${t.settings} (key, value) VALUES ('payment_outage', $1::jsonb) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [JSON.stringify(down)]);
    await outage(true);
    const replayed = await client.startSaga(orderSaga, { ...orders[3]!, failAt: 'none' });
    await until('the outage to fail the saga', () => status(replayed.sagaId), (s) => s === 'failed');
    await outage(false);
    await new SagaOperations({ db, schema, sagas: [orderSaga], transitions: transitionSettings(), logger }).replay(replayed.sagaId, { name: 'golden-recorder' });
    await until('the replayed saga to complete', () => status(replayed.sagaId), (s) => s === 'completed');

    await write('completed', completed.sagaId);
    await write('compensated', compensated.sagaId);
    await write('timed-out', timedOut.sagaId);
    await write('replayed', replayed.sagaId);
  } finally {
    for (const w of workers) await w.stop().catch(() => undefined);
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.query(`DROP SCHEMA IF EXISTS "${exSchema}" CASCADE`);
    await db.close();
  }
}

await main();
