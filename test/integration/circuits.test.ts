/**
 * Circuit breakers against a real Postgres, several connections standing in for several
 * orchestrator processes:
 * - of many transactions claiming the probe of a cooled-down breaker at once, exactly one gets it;
 * - technical failures open the breaker across "processes" (a second gate instance, its own cache,
 *   holds with the visible reason); business outcomes never open it; the probe's success closes it
 *   and releases the held sagas at the configured rate (wake times spread, only moved earlier);
 * - operators open and close by hand, audited; `sagaflow circuits list` and `sagas list` show it.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitOperations } from '../../src/ops/circuit-ops.js';
import { silentLogger } from '../../src/log.js';
import { CircuitGates } from '../../src/resilience/circuit-gates.js';
import { CircuitStore } from '../../src/resilience/circuit-store.js';
import { breakerPolicy } from '../../src/resilience/policy.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { mulberry32 } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';

let t: TestDb;
beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_circuits', pool: 12 });
});
afterAll(async () => t?.drop());

const policies = new Map([['payment', breakerPolicy('payment', { failureThreshold: 3, coolDownMs: 200, releasePerSecond: 10 })]]);
const gates = (onRelease = () => {}) => new CircuitGates({ schema: t.schema, policies, logger: silentLogger(), random: mulberry32(1), onRelease, refreshMs: 0 });

async function heldSaga(reason = 'waiting: circuit payment open'): Promise<string> {
  const id = randomUUID();
  const state = { done: [], undone: [], kept: {}, seq: 0, correlationId: id, failedAt: null, cursor: { step: 'pay', phase: 'forward', attempt: 1, seq: 0, waiting: 'held', commandId: null, earlier: [], held: { gate: 'payment', reason } } };
  await t.db.query(
    `INSERT INTO "${t.schema}".sagas (id, tenant_id, saga_type, definition_version, status, data, state, version, wake_at)
     VALUES ($1, 't', 'order', 1, 'running', '{}', $2, 1, now() + interval '1 hour')`,
    [id, JSON.stringify(state)],
  );
  return id;
}

describe('circuit breakers in Postgres', () => {
  it('exactly one of many concurrent transactions claims the probe', async () => {
    const store = new CircuitStore(t.schema);
    await t.db.query(`INSERT INTO "${t.schema}".circuits (name, state, retry_at) VALUES ('race', 'open', now() - interval '1 second')`);
    const claims = await Promise.all(
      Array.from({ length: 10 }, () => t.db.transaction((tx) => store.claimProbe(tx, 'race', randomUUID(), 30_000))),
    );
    expect(claims.filter(Boolean)).toHaveLength(1);
    const row = (await t.db.query<{ state: string; probes: number }>(`SELECT state, probes FROM "${t.schema}".circuits WHERE name = 'race'`)).rows[0];
    expect(row).toEqual({ state: 'half_open', probes: 1 });
  });

  it('technical failures open it for every process; business outcomes never; the probe success closes it and releases the held sagas at a rate', async () => {
    const a = gates();
    let released = 0;
    const b = gates(() => released++);
    // Many successes and refusals: nothing is written, nothing opens.
    await t.db.transaction(async (tx) => {
      const g = a.begin();
      for (let i = 0; i < 50; i++) g.record('payment', randomUUID(), 'ok');
      await g.flush(tx);
    });
    expect((await t.db.query(`SELECT 1 FROM "${t.schema}".circuits WHERE name = 'payment'`)).rowCount).toBe(0);
    // Three timeouts / outage replies, in two transactions of "process" a.
    for (const n of [2, 1]) {
      await t.db.transaction(async (tx) => {
        const g = a.begin();
        for (let i = 0; i < n; i++) g.record('payment', randomUUID(), 'technical');
        await g.flush(tx);
      });
    }
    // "Process" b, which never saw a failure, now holds with the reason.
    const hold = await t.db.transaction((tx) => b.begin().admit(tx, 'payment', randomUUID()));
    expect(hold).toMatchObject({ reason: 'waiting: circuit payment open' });
    expect(hold!.delayMs).toBeGreaterThan(0);
    const waiting = await Promise.all([heldSaga(), heldSaga(), heldSaga()]);
    // After the cool-down, the first to ask is the probe; the next one holds.
    await waitFor(
      'the cool-down to end (database clock)',
      async () => (await t.db.query<{ over: boolean }>(`SELECT retry_at <= now() AS over FROM "${t.schema}".circuits WHERE name = 'payment'`)).rows[0]!.over,
      (over) => over,
      { timeoutMs: 10_000 },
    );
    const probe = randomUUID();
    expect(await t.db.transaction((tx) => b.begin().admit(tx, 'payment', probe))).toBeNull();
    expect(await t.db.transaction((tx) => a.begin().admit(tx, 'payment', randomUUID()))).toMatchObject({ reason: expect.stringContaining('half-open') });
    // Another saga's failure does not move a half-open breaker; the probe's success closes it.
    await t.db.transaction(async (tx) => {
      const g = b.begin();
      g.record('payment', randomUUID(), 'technical');
      g.record('payment', probe, 'ok');
      await g.flush(tx);
      g.committed();
    });
    expect(released).toBe(1);
    const rows = await t.db.query<{ state: string; opens: number }>(`SELECT state, opens FROM "${t.schema}".circuits WHERE name = 'payment'`);
    expect(rows.rows[0]).toEqual({ state: 'closed', opens: 1 });
    const wakes = await t.db.query<{ gap: number; ahead: number }>(
      `SELECT extract(epoch FROM wake_at - min(wake_at) OVER ())::float8 AS gap, extract(epoch FROM wake_at - now())::float8 AS ahead
       FROM "${t.schema}".sagas WHERE id = ANY($1::uuid[]) ORDER BY wake_at`,
      [waiting],
    );
    // 10 per second: 0.1 s apart (one statement, one now()), and soon - not the hour they were parked for.
    expect(wakes.rows.map((r) => Math.round(r.gap * 1000))).toEqual([0, 100, 200]);
    expect(wakes.rows.every((r) => r.ahead < 60)).toBe(true);
    expect(await t.db.transaction((tx) => a.begin().admit(tx, 'payment', randomUUID()))).toBeNull();
  });

  it('operators open and close by hand, audited; the CLI lists it with its waiting sagas', async () => {
    const ops = new CircuitOperations({ db: t.db, schema: t.schema, logger: silentLogger() });
    const opened = await ops.open('shipping', { name: 'alice' }, 'carrier maintenance');
    expect(opened).toMatchObject({ name: 'shipping', from: null, to: 'open' });
    const hold = await t.db.transaction((tx) =>
      new CircuitGates({ schema: t.schema, policies: new Map([['shipping', breakerPolicy('shipping', {})]]), logger: silentLogger(), random: mulberry32(2), onRelease: () => {}, refreshMs: 0 })
        .begin()
        .admit(tx, 'shipping', randomUUID()),
    );
    expect(hold!.reason).toBe('waiting: circuit shipping held open by an operator');
    await heldSaga('waiting: circuit shipping held open by an operator');
    const list = await cli(['circuits', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/shipping\s+open \(by hand\)/);
    const sagas = await cli(['sagas', 'list', '--status', 'running']);
    expect(sagas.stdout).toContain('waiting: circuit shipping held open by an operator');
    expect(sagas.stdout).toContain('circuits not closed or with sagas waiting');
    const refused = await cli(['circuits', 'close', 'shipping']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--reason is required/);
    const closed = await cli(['circuits', 'close', 'shipping', '--reason', 'carrier back', '--actor', 'bob', '--json']);
    expect(closed.code).toBe(0);
    expect(JSON.parse(closed.stdout)).toMatchObject({ name: 'shipping', from: 'open', to: 'closed' });
    expect((await cli(['circuits', 'close', 'nope', '--reason', 'x'])).code).toBe(3);
    const audit = await t.db.query<{ actor: string; action: string; target_id: string; reason: string }>(
      `SELECT actor, action, target_id, reason FROM "${t.schema}".audit_log WHERE target_type = 'circuit' ORDER BY id`,
    );
    expect(audit.rows).toEqual([
      { actor: 'alice', action: 'circuit-open', target_id: 'shipping', reason: 'carrier maintenance' },
      { actor: 'bob', action: 'circuit-close', target_id: 'shipping', reason: 'carrier back' },
    ]);
  });
});

function cli(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [new URL('../../bin/sagaflow.js', import.meta.url).pathname, ...args], {
      env: { ...process.env, DATABASE_URL: t.url, SAGAFLOW_SCHEMA: t.schema, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
