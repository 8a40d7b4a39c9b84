/**
 * A batch's write is the transaction's last statement and COMMIT rides with it, so the optimistic
 * version check lives inside the statement (migrations/0011): a saga whose version moved since it
 * was read fails the statement with SQLSTATE 40001 and nothing of the batch is kept, although
 * COMMIT was already sent behind it. The same write with the right version commits everything.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OutboxStore } from '../../src/outbox/store.js';
import type { SagaInstance } from '../../src/saga/state.js';
import { SagaStore } from '../../src/saga/store.js';
import type { OutgoingMessage } from '../../src/transport/contract.js';
import { writeBatch } from '../../src/transaction/write.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_write_fence', pool: 2 });
});
afterAll(async () => t?.drop());

const state = { done: [], undone: [], kept: {}, seq: 0, correlationId: 'c', failedAt: null, cursor: null };

function saga(id: string, version: number): SagaInstance {
  return { id, tenantId: 't', type: 'order', definitionVersion: 1, status: 'running', data: { v: version }, state: state as never, reason: null, version };
}

function message(): OutgoingMessage {
  const id = randomUUID();
  return { topic: 'orders', key: id, id, type: 'Charge', body: Buffer.from('{}') };
}

describe('the write fence', () => {
  it('a stale read version fails the last statement with 40001 and keeps nothing; the right one commits all', async () => {
    const sagas = new SagaStore(t.schema);
    const stores = { sagas, outbox: new OutboxStore(t.schema), graceMs: 0 };
    const id = randomUUID();
    await t.db.transaction((tx) => writeBatch(tx, stores, { sagas: [{ instance: saga(id, 1), readVersion: null, wakeDelayMs: null }], steps: [], messages: [], deletes: [] }, { last: true }));
    const stale = message();
    await expect(
      t.db.transaction((tx) =>
        writeBatch(tx, stores, { sagas: [{ instance: saga(id, 3), readVersion: 2, wakeDelayMs: null }], steps: [], messages: [stale], deletes: [] }, { last: true }),
      ),
    ).rejects.toMatchObject({ code: '40001', message: expect.stringContaining('saga version check failed') });
    const outbox = () => t.db.query<{ message_id: string }>(`SELECT message_id FROM "${t.schema}".outbox`);
    expect((await outbox()).rows).toEqual([]);
    expect((await sagas.get(t.db, id))?.version).toBe(1);

    const good = message();
    const written = await t.db.transaction((tx) =>
      writeBatch(tx, stores, { sagas: [{ instance: saga(id, 2), readVersion: 1, wakeDelayMs: null }], steps: [], messages: [good], deletes: [] }, { last: true }),
    );
    expect(written.map((w) => w.message.id)).toEqual([good.id]);
    expect((await outbox()).rows.map((r) => r.message_id)).toEqual([good.id]);
    expect((await sagas.get(t.db, id))?.version).toBe(2);
  });
});
