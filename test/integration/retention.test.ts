/**
 * Retention (`sagaflow prune`) against a real Postgres: what the windows keep and what they
 * delete, in small batches; a saga locked by another transaction (a replay in progress) is left
 * alone; a dry run deletes nothing; and the command line reads the windows from the environment.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteSchema } from '../../src/db/db.js';
import { DEFAULT_RETENTION, prune, type RetentionPolicy } from '../../src/ops/retention.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

const DAY = 86_400_000;
let t: TestDb;
let s: string;

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_retention' });
  s = quoteSchema(t.schema);
});
afterAll(async () => {
  await t?.drop();
});

/** A saga finished `ageDays` ago (running when status is 'running') with `steps` step rows. */
async function saga(status: string, ageDays: number, steps = 2): Promise<string> {
  const id = randomUUID();
  const finished = status === 'running' || status === 'compensating' ? null : `now() - interval '${ageDays} days'`;
  await t.db.query(
    `INSERT INTO ${s}.sagas (id, tenant_id, saga_type, definition_version, status, data, state, version, created_at, finished_at)
     VALUES ($1, 't', 'order', 1, $2, '{}', '{}', 1, now() - interval '${ageDays + 1} days', ${finished ?? 'NULL'})`,
    [id, status],
  );
  for (let i = 1; i <= steps; i++) {
    await t.db.query(
      `INSERT INTO ${s}.saga_steps (saga_id, seq, step_name, kind, attempt, status) VALUES ($1, $2, 'step', 'forward', 1, 'succeeded')`,
      [id, i],
    );
  }
  return id;
}

async function count(table: string, where = 'true'): Promise<number> {
  return Number((await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.${table} WHERE ${where}`)).rows[0]!.n);
}

async function seed(): Promise<{ keep: string[]; gone: string[] }> {
  await t.db.query(`TRUNCATE ${s}.sagas, ${s}.saga_steps, ${s}.inbox, ${s}.dead_letters, ${s}.audit_log`);
  const gone = [
    ...(await Promise.all(Array.from({ length: 7 }, () => saga('completed', 40)))),
    await saga('compensated', 31),
    await saga('failed', 100),
  ];
  const keep = [
    await saga('completed', 1),
    await saga('failed', 40), // failed sagas have the longer window: an operator may still replay them
    await saga('running', 400),
    await saga('compensating', 400),
  ];
  for (const age of [20, 15, 1]) {
    await t.db.query(`INSERT INTO ${s}.inbox (consumer, message_id, digest, received_at) VALUES ('c', $1, '\\x00', now() - interval '${age} days')`, [randomUUID()]);
  }
  const dl = (status: string, age: number) =>
    t.db.query(
      `INSERT INTO ${s}.dead_letters (message_id, consumer, topic, reason_code, headers, body, status, resolved_at, first_seen_at)
       VALUES ($1, 'c', 't', 'HANDLER_ERROR', '{}', '\\x00', $2, ${status === 'new' ? 'NULL' : `now() - interval '${age} days'`}, now() - interval '${age} days')`,
      [randomUUID(), status],
    );
  await dl('new', 400); // never pruned: nobody has looked at it yet
  await dl('discarded', 31);
  await dl('redriven', 2);
  for (const age of [400, 2]) {
    await t.db.query(
      `INSERT INTO ${s}.audit_log (at, actor, action, target_type, target_id, outcome) VALUES (now() - interval '${age} days', 'a', 'replay', 'saga', 'x', 'accepted')`,
    );
  }
  return { keep, gone };
}

const expected = { sagas: 9, saga_steps: 18, inbox: 2, dead_letters: 1, audit_log: 1 };

describe('prune', () => {
  it('a dry run counts exactly what a real run then deletes, in batches smaller than the work', async () => {
    const { keep, gone } = await seed();
    const plan = await prune(t.db, t.schema, { policy: DEFAULT_RETENTION, dryRun: true });
    expect(plan).toEqual(expected);
    expect(await count('sagas')).toBe(13);

    const done = await prune(t.db, t.schema, { policy: DEFAULT_RETENTION, batchSize: 2 });
    expect(done).toEqual(expected);
    const left = (await t.db.query<{ id: string }>(`SELECT id FROM ${s}.sagas`)).rows.map((r) => r.id).sort();
    expect(left).toEqual([...keep].sort());
    expect(await count('saga_steps', `saga_id = ANY($$${'{'}${gone.join(',')}${'}'}$$::uuid[])`)).toBe(0);
    expect(await count('saga_steps')).toBe(keep.length * 2);
    expect(await count('inbox')).toBe(1);
    expect(await count('dead_letters')).toBe(2);
    expect(await count('dead_letters', `status = 'new'`)).toBe(1);
    expect(await count('audit_log')).toBe(1);

    // A second run finds nothing.
    expect(await prune(t.db, t.schema, { policy: DEFAULT_RETENTION })).toEqual({ sagas: 0, saga_steps: 0, inbox: 0, dead_letters: 0, audit_log: 0 });
  });

  it('leaves a saga alone while another transaction holds its row (a replay under way)', async () => {
    await seed();
    const old = (await t.db.query<{ id: string }>(`SELECT id FROM ${s}.sagas WHERE status = 'compensated'`)).rows[0]!.id;
    const client = await t.db.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT 1 FROM ${s}.sagas WHERE id = $1 FOR UPDATE`, [old]);
      const done = await prune(t.db, t.schema, { policy: DEFAULT_RETENTION, batchSize: 3 });
      expect(done.sagas).toBe(expected.sagas - 1);
      expect(await count('sagas', `id = '${old}'`)).toBe(1);
      expect(await count('saga_steps', `saga_id = '${old}'`)).toBe(2);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect((await prune(t.db, t.schema, { policy: DEFAULT_RETENTION })).sagas).toBe(1);
  });

  it('honours shorter windows', async () => {
    await seed();
    const policy: RetentionPolicy = { ...DEFAULT_RETENTION, finishedSagasMs: 0, failedSagasMs: 10 * DAY, inboxMs: 0 };
    const done = await prune(t.db, t.schema, { policy });
    expect(done.sagas).toBe(11);
    expect(done.inbox).toBe(3);
    expect(await count('sagas', `status IN ('running', 'compensating')`)).toBe(2);
  });
});

describe('sagaflow prune', () => {
  function run(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['bin/sagaflow.js', 'prune', ...args], {
        cwd: new URL('../..', import.meta.url).pathname,
        env: { ...process.env, DATABASE_URL: t.url, SAGAFLOW_SCHEMA: t.schema, LOG_LEVEL: 'warn', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('reads the windows from SAGAFLOW_RETAIN_*, prints a table or JSON, and refuses a bad window or batch', async () => {
    await seed();
    const dry = await run({ SAGAFLOW_RETAIN_FINISHED_SAGAS: '35d' }, '--dry-run', '--json');
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, deleted: { sagas: 8, saga_steps: 16 } });
    expect(await count('sagas')).toBe(13);

    const real = await run({});
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/^deleted:\n/);
    expect(real.stdout).toMatch(/sagas\s+9\n/);

    const bad = await run({ SAGAFLOW_RETAIN_INBOX: 'two weeks' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/SAGAFLOW_RETAIN_INBOX: a duration like 30d/);
    const badBatch = await run({}, '--batch', '0');
    expect(badBatch.code).toBe(2);
    expect(badBatch.stderr).toMatch(/--batch must be an integer/);
  });
});
