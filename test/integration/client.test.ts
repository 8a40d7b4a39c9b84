/**
 * `createClient({ db }).startSaga(orderSaga, payload, { tx })` inside the caller's own transaction
 * (the transactional outbox seen from the application):
 * - the caller's row and the saga start commit together, and the saga then runs to `completed`
 *   through a relay that only NOTIFY can wake (no polling);
 * - a rollback leaves neither the caller's row nor any trace of the saga;
 * - the saga id is returned before anything runs, and it is the id the saga gets in `sagas`;
 * - an invalid payload is refused with SCHEMA_INVALID before anything is written or published.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateExample, orderParticipants, orderSaga } from '../../examples/order/index.js';
import { makeOrders } from '../../examples/order/run.js';
import { createClient } from '../../src/client.js';
import type { Db, Queryable } from '../../src/db/db.js';
import { SagaflowError } from '../../src/errors.js';
import { sagaIdFor } from '../../src/saga/engine.js';
import { MemoryTransport } from '../../src/transport/memory.js';
import { createWorker, type Worker } from '../../src/worker/worker.js';
import { createTestDb, uniqueName, type TestDb } from '../helpers/db.js';
import { RecordingPublisher } from '../helpers/recording-publisher.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';

const SKUS = 200;
let t: TestDb;
let db: Db;
let exampleSchema: string;
let callerTable: string;
let worker: Worker;
let transport: MemoryTransport;
const { random } = seededRandom('client');

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_cl' });
  db = t.db;
  exampleSchema = uniqueName('sf_cl_ex');
  await migrateExample(db, exampleSchema, SKUS);
  callerTable = `"${exampleSchema}".customer_orders`;
  await db.query(`CREATE TABLE ${callerTable} (order_id text PRIMARY KEY, saga_id uuid NOT NULL)`);
  transport = new MemoryTransport();
  worker = createWorker({
    db,
    transport,
    module: { sagas: [orderSaga], participants: orderParticipants(exampleSchema) },
    // No fallback polls: a row written by the client is published only because its COMMIT notified the relay.
    options: { schema: t.schema, random, relay: { fallbackPollMs: 0 }, timers: { fallbackPollMs: 0 } },
  });
  await worker.start();
});

afterAll(async () => {
  await worker?.stop();
  await transport?.close();
  await db?.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await t?.drop();
});

function order() {
  return makeOrders(1, { failEvery: 0, skus: SKUS })[0]!;
}

async function count(q: Queryable, sql: string, values: unknown[]): Promise<number> {
  const { rows } = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, values);
  return rows[0]!.n;
}

/** What the rest of the world sees of one start: the saga, its outbox row and the caller's row. */
async function visible(q: Queryable, o: { orderId: string }, ids: { sagaId: string; messageId: string }) {
  return {
    sagas: await count(q, `"${t.schema}".sagas WHERE id = $1`, [ids.sagaId]),
    outbox: await count(q, `"${t.schema}".outbox WHERE message_id = $1`, [ids.messageId]),
    callers: await count(q, `${callerTable} WHERE order_id = $1`, [o.orderId]),
  };
}

async function sagaOf(id: string) {
  const { rows } = await db.query<{ id: string; status: string; data: { orderId: string } }>(`SELECT id, status, data FROM "${t.schema}".sagas WHERE id = $1`, [id]);
  return rows[0];
}

async function waitCompleted(id: string) {
  return waitFor(`saga ${id} to complete`, () => sagaOf(id), (s) => s?.status === 'completed', { timeoutMs: 15_000 });
}

describe('startSaga inside the caller transaction', () => {
  it('the caller row and the saga start commit together; the saga then completes through the NOTIFY-woken relay', async () => {
    const client = createClient({ db, schema: t.schema });
    const o = order();
    const relayedBefore = worker.relay.published;
    let ids = { sagaId: '', messageId: '' };
    await db.transaction(async (tx) => {
      ids = await client.startSaga(orderSaga, o, { tx });
      // The id is known at once, derived from the start message id, before anything ran.
      expect(ids.sagaId).toBe(sagaIdFor(ids.messageId));
      await tx.query(`INSERT INTO ${callerTable} (order_id, saga_id) VALUES ($1, $2)`, [o.orderId, ids.sagaId]);
      // Inside: the start message and the caller's row, together. Outside (another connection): nothing yet.
      expect(await visible(tx, o, ids)).toEqual({ sagas: 0, outbox: 1, callers: 1 });
      expect(await visible(db, o, ids)).toEqual({ sagas: 0, outbox: 0, callers: 0 });
    });

    const saga = await waitCompleted(ids.sagaId);
    expect(saga!.id).toBe(ids.sagaId);
    expect(saga!.data.orderId).toBe(o.orderId);
    const caller = await db.query<{ saga_id: string }>(`SELECT saga_id FROM ${callerTable} WHERE order_id = $1`, [o.orderId]);
    expect(caller.rows).toEqual([{ saga_id: ids.sagaId }]);
    // The worker's relay published the start message (nothing polls; the COMMIT's NOTIFY woke it).
    expect(worker.relay.published).toBe(relayedBefore + 1);
    await waitFor('the outbox row to be deleted', () => visible(db, o, ids), (v) => v.outbox === 0);
  });

  it('a rollback leaves neither the caller row nor the saga', async () => {
    const client = createClient({ db, schema: t.schema });
    const o = order();
    const relayedBefore = worker.relay.published;
    let ids = { sagaId: '', messageId: '' };
    await expect(
      db.transaction(async (tx) => {
        ids = await client.startSaga(orderSaga, o, { tx });
        await tx.query(`INSERT INTO ${callerTable} (order_id, saga_id) VALUES ($1, $2)`, [o.orderId, ids.sagaId]);
        throw new Error('payment form abandoned');
      }),
    ).rejects.toThrow('payment form abandoned');
    expect(ids.sagaId).not.toBe('');

    // A later start commits and completes: by then the relay has published everything there was.
    const later = order();
    const laterIds = await db.transaction((tx) => client.startSaga(orderSaga, later, { tx }));
    await waitCompleted(laterIds.sagaId);
    expect(await visible(db, o, ids)).toEqual({ sagas: 0, outbox: 0, callers: 0 });
    expect(worker.relay.published).toBe(relayedBefore + 1);
    const anyTrace = await db.query(`SELECT id FROM "${t.schema}".sagas WHERE data->>'orderId' = $1`, [o.orderId]);
    expect(anyTrace.rows).toEqual([]);
  });

  it('a saga id chosen by the caller is the one the saga gets', async () => {
    const client = createClient({ db, schema: t.schema });
    const o = order();
    const sagaId = '0b1e8f4e-3c52-4c77-9a37-6d0f1f2a9b10';
    const ids = await db.transaction((tx) => client.startSaga(orderSaga, o, { tx, sagaId }));
    expect(ids.sagaId).toBe(sagaId);
    const saga = await waitCompleted(sagaId);
    expect(saga!.data.orderId).toBe(o.orderId);
  });

  it('an invalid payload is refused with SCHEMA_INVALID before anything is written or published', async () => {
    const publisher = new RecordingPublisher();
    const o = order();
    const invalid = [
      { ...o, amountCents: -5 },
      { ...o, items: [] },
      { ...o, orderId: '' },
      { customerId: 'c' },
    ];
    await db.transaction(async (tx) => {
      const before = await count(tx, `"${t.schema}".outbox`, []);
      for (const payload of invalid) {
        const err = await createClient({ db, schema: t.schema })
          .startSaga(orderSaga, payload as never, { tx })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(err).toBeInstanceOf(SagaflowError);
        expect((err as SagaflowError).code).toBe('SCHEMA_INVALID');
      }
      // Nothing was written, and the caller's transaction is still healthy (no SQL error happened in it).
      expect(await count(tx, `"${t.schema}".outbox`, [])).toBe(before);
      // One snapshot for both counts: a relay of an earlier test may be deleting sent rows meanwhile.
    }, { isolation: 'repeatable read' });
    // Without a transaction: neither the database path nor the direct publish path sends anything.
    for (const payload of invalid) {
      await expect(createClient({ db, schema: t.schema }).startSaga(orderSaga, payload as never)).rejects.toMatchObject({ code: 'SCHEMA_INVALID' });
      await expect(createClient({ publisher, schema: t.schema }).startSaga(orderSaga, payload as never)).rejects.toMatchObject({ code: 'SCHEMA_INVALID' });
    }
    expect(publisher.calls).toHaveLength(0);
    expect(await count(db, `"${t.schema}".sagas WHERE data->>'orderId' = $1`, [o.orderId])).toBe(0);
  });
});
