/**
 * Dead-letter rows on real Postgres: every distinct message keeps its own row (two bodies under one
 * id, one body under two keys), only a true repeat counts up times_seen, and the id and type of an
 * envelope are read leniently even when the envelope is what was wrong.
 */
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { DeadLetterRecorder } from '../../src/dead-letters/recorder.js';
import { silentLogger } from '../../src/log.js';
import { DeadLetterOperations } from '../../src/ops/dead-letter-ops.js';
import { DEAD_LETTER_TOPIC, H, type Delivery } from '../../src/transport/contract.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
let recorder: DeadLetterRecorder;

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_dlkey' });
  recorder = new DeadLetterRecorder(t.schema);
});
afterAll(async () => {
  await t?.drop();
});

function dead(body: string, headers: Record<string, string>, extra: Partial<Delivery> = {}): Delivery {
  return {
    topic: DEAD_LETTER_TOPIC,
    key: headers[H.key],
    id: headers[H.messageId],
    type: headers[H.type],
    body: Buffer.from(body),
    headers: { [H.consumer]: 'participant.payment', [H.originalTopic]: 'payment.commands', [H.attempt]: '1', ...headers },
    attempt: 1,
    redelivered: false,
    ...extra,
  };
}

interface Row {
  id: string;
  message_id: string | null;
  msg_type: string | null;
  msg_key: string | null;
  reason_code: string;
  body: Buffer;
  times_seen: number;
}

async function rows(consumer: string): Promise<Row[]> {
  const { rows: r } = await t.db.query<Row>(
    `SELECT id::text, message_id, msg_type, msg_key, reason_code, body, times_seen FROM "${t.schema}".dead_letters d WHERE consumer = $1 ORDER BY d.id`,
    [consumer],
  );
  return r;
}

describe('dead-letter rows', () => {
  it('keeps both bodies of two different poison messages under one id, each with its own reason', async () => {
    const consumer = `c-${randomUUID()}`;
    const id = randomUUID();
    await recorder.record(t.db, dead('{"first":1}', { [H.messageId]: id, [H.consumer]: consumer, [H.reason]: 'SCHEMA_INVALID' }));
    await recorder.record(t.db, dead('{"second":2}', { [H.messageId]: id, [H.consumer]: consumer, [H.reason]: 'MALFORMED_JSON' }));
    const r = await rows(consumer);
    expect(r.map((x) => [x.message_id, x.body.toString(), x.reason_code, x.times_seen])).toEqual([
      [id, '{"first":1}', 'SCHEMA_INVALID', 1],
      [id, '{"second":2}', 'MALFORMED_JSON', 1],
    ]);
  });

  it('counts a true repeat (same id, key and body) on one row', async () => {
    const consumer = `c-${randomUUID()}`;
    const id = randomUUID();
    const d = dead('{"same":true}', { [H.messageId]: id, [H.key]: 'k1', [H.consumer]: consumer, [H.reason]: 'HANDLER_ERROR' });
    await recorder.record(t.db, d);
    await recorder.record(t.db, d);
    const r = await rows(consumer);
    expect(r).toHaveLength(1);
    expect(r[0]!.times_seen).toBe(2);
  });

  it('keeps equal bodies without an id under different keys apart (Kafka: the second key is not lost)', async () => {
    const consumer = `c-${randomUUID()}`;
    await recorder.record(t.db, dead('not json', { [H.key]: 'saga-a', [H.consumer]: consumer, [H.reason]: 'MALFORMED_JSON' }));
    await recorder.record(t.db, dead('not json', { [H.key]: 'saga-b', [H.consumer]: consumer, [H.reason]: 'MALFORMED_JSON' }));
    await recorder.record(t.db, dead('not json', { [H.key]: 'saga-b', [H.consumer]: consumer, [H.reason]: 'MALFORMED_JSON' }));
    const r = await rows(consumer);
    expect(r.map((x) => [x.message_id, x.msg_key, x.times_seen])).toEqual([
      [null, 'saga-a', 1],
      [null, 'saga-b', 2],
    ]);
  });

  it('reads the id and type of an invalid envelope from a foreign producer (no sagaflow headers)', async () => {
    const consumer = `c-${randomUUID()}`;
    const id = randomUUID().toUpperCase();
    // The envelope is invalid (no payload, bad version) but names its id and type.
    await recorder.record(t.db, dead(JSON.stringify({ id, type: 'payment.Charge', v: 'x' }), { [H.consumer]: consumer, [H.reason]: 'INVALID_ENVELOPE' }));
    // CloudEvents binary mode: the attributes are headers, the body is only the data.
    await recorder.record(t.db, dead('{"amount":"12.00"}', { ce_id: 'evt-42', ce_type: 'com.example.Charged', [H.consumer]: consumer, [H.reason]: 'INVALID_ENVELOPE' }));
    await recorder.record(t.db, dead('{"amount":"13.00"}', { 'cloudEvents:id': 'evt-43', 'cloudEvents:type': 'com.example.Refunded', [H.consumer]: consumer, [H.reason]: 'INVALID_ENVELOPE' }));
    const r = await rows(consumer);
    expect(r.map((x) => [x.message_id, x.msg_type])).toEqual([
      [id.toLowerCase(), 'payment.Charge'],
      ['evt-42', 'com.example.Charged'],
      ['evt-43', 'com.example.Refunded'],
    ]);
  });

  it('shows, redrives and discards rows by row id, whatever their message id', async () => {
    const consumer = `c-${randomUUID()}`;
    const id = randomUUID();
    await recorder.record(t.db, dead('{"a":1}', { [H.messageId]: id, [H.consumer]: consumer, [H.reason]: 'HANDLER_ERROR' }));
    await recorder.record(t.db, dead('{"b":2}', { [H.messageId]: id, [H.consumer]: consumer, [H.reason]: 'HANDLER_ERROR' }));
    await recorder.record(t.db, dead('garbage', { [H.consumer]: consumer, [H.reason]: 'MALFORMED_JSON' }));
    await recorder.record(t.db, dead('{"id":"order-7"}', { [H.consumer]: consumer, [H.reason]: 'INVALID_ENVELOPE' }));
    const [a, b, garbage, foreign] = await rows(consumer);
    const ops = new DeadLetterOperations({ db: t.db, schema: t.schema, logger: silentLogger() });
    expect((await ops.show(a!.id)).body).toBe('{"a":1}');
    expect((await ops.show(b!.id)).body).toBe('{"b":2}');
    expect((await ops.show(garbage!.id)).messageId).toBeNull();
    const actor = { name: 'test' };
    expect((await ops.redrive(a!.id, actor)).messageId).toBe(id);
    // No readable id, or one that is no UUID: the body goes out unchanged under a fresh id.
    expect((await ops.redrive(garbage!.id, actor)).messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await ops.redrive(foreign!.id, actor)).messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await ops.discard(b!.id, actor, { reason: 'duplicate of a' })).outcome).toBe('accepted');
    expect((await ops.list({ consumer })).map((x) => x.status)).toEqual(['redriven', 'redriven', 'discarded', 'redriven']);
  });
});

describe('migration 0006 (dead-letter key)', () => {
  it('migrates existing rows: digest filled, sha256: ids become NULL, the new key holds', async () => {
    const old = await createTestDb({ prefix: 'sf_dlmig', migrate: false });
    try {
      const all = loadMigrations();
      const before = all.findIndex((m) => m.name === 'dead_letter_key');
      expect(before).toBeGreaterThan(0);
      await migrate(old.db, old.schema, { migrations: all.slice(0, before), logger: silentLogger() });
      const s = `"${old.schema}".dead_letters`;
      const id = randomUUID();
      const hash = `sha256:${createHash('sha256').update('raw').digest('hex')}`;
      await old.db.query(
        `INSERT INTO ${s} (message_id, consumer, topic, reason_code, headers, body) VALUES ($1, 'c', 't', 'HANDLER_ERROR', '{}', '\\x7b7d'), ($2, 'c', 't', 'MALFORMED_JSON', '{}', 'raw')`,
        [id, hash],
      );
      await migrate(old.db, old.schema, { migrations: all, logger: silentLogger() });
      const { rows: r } = await old.db.query<{ message_id: string | null; ok: boolean }>(
        `SELECT message_id, body_sha256 = sha256(body) AS ok FROM ${s} ORDER BY id`,
      );
      expect(r).toEqual([
        { message_id: id, ok: true },
        { message_id: null, ok: true },
      ]);
      // The new key: a second body under the same id is a row of its own.
      await new DeadLetterRecorder(old.schema).record(old.db, dead('{"other":1}', { [H.messageId]: id, [H.consumer]: 'c', [H.reason]: 'HANDLER_ERROR' }));
      expect(Number((await old.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}`)).rows[0]!.n)).toBe(3);
    } finally {
      await old.drop();
    }
  });
});
