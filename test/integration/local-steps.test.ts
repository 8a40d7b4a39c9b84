/**
 * Local steps run inside the worker's transaction: their writes commit with the step, a throwing
 * attempt's writes are rolled back (savepoint) and the attempt is retried after its back-off, and
 * a local compensation runs when a later step fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createClient } from '../../src/client.js';
import { defineMessage } from '../../src/messages/message.js';
import { defineSaga } from '../../src/saga/definition.js';
import { MemoryTransport } from '../../src/transport/memory.js';
import { defineParticipant, reply } from '../../src/participant/definition.js';
import { createWorker, type Worker } from '../../src/worker/worker.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

let t: TestDb;
let worker: Worker;
let transport: MemoryTransport;
const attempts = new Map<string, number>();

const Start = defineMessage({ type: 'Local.Start', topic: 'local.saga', schema: z.object({ key: z.string(), failRemote: z.boolean() }) });
const Remote = defineMessage({ type: 'Local.Remote', topic: 'local.remote', schema: z.object({ key: z.string(), fail: z.boolean() }) });
const RemoteOk = defineMessage({ type: 'Local.RemoteOk', schema: z.object({}) });
const RemoteNo = defineMessage({ type: 'Local.RemoteNo', schema: z.object({}) });

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_local' });
  const ledger = `"${t.schema}".ledger`;
  await t.db.query(`CREATE TABLE ${ledger} (key text NOT NULL, entry text NOT NULL)`);
  const saga = defineSaga({ name: 'local', start: Start, data: (s) => s })
    .localStep('book', {
      retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20 },
      run: async ({ data, tx, attempt }) => {
        attempts.set(data.key, attempt);
        await tx.query(`INSERT INTO ${ledger} (key, entry) VALUES ($1, $2)`, [data.key, `booked-attempt-${attempt}`]);
        // The first attempt fails after its write: the write must not survive.
        if (attempt === 1) throw new Error('flaky booking');
        return { bookingNo: `B-${data.key}` };
      },
      compensate: {
        run: async ({ data, tx, kept }) => {
          await tx.query(`INSERT INTO ${ledger} (key, entry) VALUES ($1, $2)`, [data.key, `unbooked-${(kept as { bookingNo: string }).bookingNo}`]);
        },
      },
    })
    .step('remote', { command: Remote, payload: (d) => ({ key: d.key, fail: d.failRemote }), success: [RemoteOk], failure: [RemoteNo] })
    .build();
  const participant = defineParticipant('remote')
    .on(Remote, ({ payload }) => (payload.fail ? reply(RemoteNo, {}) : reply(RemoteOk, {})), [RemoteOk, RemoteNo])
    .build();
  transport = new MemoryTransport();
  worker = createWorker({ db: t.db, transport, module: { sagas: [saga], participants: [participant] }, options: { schema: t.schema } });
  await worker.start();
});

afterAll(async () => {
  await worker.stop();
  await transport.close();
  await t.drop();
});

async function run(key: string, failRemote: boolean): Promise<{ status: string; entries: string[] }> {
  const client = createClient({ schema: t.schema, publisher: transport.publisher });
  await client.send(Start, { key, failRemote });
  const status = await waitFor(
    `saga ${key} to end`,
    async () => (await t.db.query<{ status: string }>(`SELECT status FROM "${t.schema}".sagas WHERE data->>'key' = $1`, [key])).rows[0]?.status,
    (s) => s === 'completed' || s === 'compensated' || s === 'failed',
  );
  const entries = (await t.db.query<{ entry: string }>(`SELECT entry FROM "${t.schema}".ledger WHERE key = $1 ORDER BY entry`, [key])).rows.map((r) => r.entry);
  return { status: status!, entries };
}

describe('local steps', () => {
  it('commit their writes with the step; a failed attempt is rolled back and retried', async () => {
    const r = await run('k1', false);
    expect(r.status).toBe('completed');
    expect(attempts.get('k1')).toBe(2);
    expect(r.entries).toEqual(['booked-attempt-2']);
  });

  it('are compensated locally when a later step fails', async () => {
    const r = await run('k2', true);
    expect(r.status).toBe('compensated');
    expect(r.entries).toEqual(['booked-attempt-2', 'unbooked-B-k2']);
  });
});
