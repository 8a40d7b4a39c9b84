/**
 * The README walkthrough, command for command, on RabbitMQ with a separate worker process:
 * a payment outage makes orders fail, the outage ends, `sagaflow replay --status failed` brings
 * every failed saga to completed or compensated. It also proves that replay resumes at the failed
 * step: the stock participant receives each ReserveStock exactly once (no step that succeeded is
 * re-sent), and every participant effect is applied exactly once.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeOrders } from '../../examples/order/run.js';
import { exampleTables } from '../../examples/order/participants.js';
import type { Db } from '../../src/db/db.js';
import { waitFor } from '../helpers/wait.js';
import { checkInvariants, cleanupRabbit, dropSchemas, e2eEnv, prepare, runCli, statusCounts, WorkerProcess, type E2EEnv } from './harness.js';

const ORDERS = 20;
let env: E2EEnv;
let db: Db;
let worker: WorkerProcess;

beforeAll(async () => {
  env = e2eEnv('rabbitmq');
  db = await prepare(env);
});

afterAll(async () => {
  await worker?.stop();
  await cleanupRabbit(env).catch(() => undefined);
  await dropSchemas(db, env);
  await db.close();
});

async function outageIs(down: boolean): Promise<void> {
  const t = exampleTables(env.exampleSchema);
  await waitFor(
    `payment outage = ${down}`,
    async () => (await db.query<{ value: unknown }>(`SELECT value FROM ${t.settings} WHERE key = 'payment_outage'`)).rows[0]?.value,
    (v) => v === down,
  );
}

describe('README walkthrough: outage -> failed sagas -> replay -> all terminal', () => {
  it('runs the documented commands and ends with every saga completed or compensated', async () => {
    const module = ['--module', 'examples/order'];
    const migrated = await runCli(env, ['migrate', ...module]);
    expect(migrated.code, migrated.stderr).toBe(0);

    worker = new WorkerProcess(env, 'all', 'walkthrough-worker');
    await worker.start();

    const down = await runCli(env, ['publish', 'SetPaymentOutage', ...module, '--data', '{"down":true}']);
    expect(down.code, down.stderr).toBe(0);
    await outageIs(true);

    const file = join(env.logDir, 'orders.ndjson');
    writeFileSync(file, makeOrders(ORDERS, { runId: env.schema }).map((o) => JSON.stringify(o)).join('\n'));
    const placed = await runCli(env, ['publish', 'PlaceOrder', ...module, '--file', file]);
    expect(placed.code, placed.stderr).toBe(0);
    expect(placed.stdout).toContain(`published ${ORDERS} PlaceOrder message(s)`);

    await waitFor('every order to fail during the outage', () => statusCounts(db, env), (c) => c.failed === ORDERS, { timeoutMs: 90_000 });
    const listed = await runCli(env, ['sagas', 'list', '--status', 'failed', '--limit', '100', '--json']);
    expect(listed.code).toBe(0);
    const failed = JSON.parse(listed.stdout) as { reason: string }[];
    expect(failed).toHaveLength(ORDERS);
    expect(failed.every((s) => /chargePayment failed after 3 attempt/.test(s.reason))).toBe(true);

    const up = await runCli(env, ['publish', 'SetPaymentOutage', ...module, '--data', '{"down":false}']);
    expect(up.code, up.stderr).toBe(0);
    await outageIs(false);

    const dry = await runCli(env, ['replay', '--status', 'failed', ...module, '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    const plans = JSON.parse(dry.stdout) as { outcome: string; plan: { commands: { type: string }[] } }[];
    expect(plans).toHaveLength(ORDERS);
    expect(plans.every((p) => p.outcome === 'dry-run' && p.plan.commands.map((c) => c.type).join() === 'ChargePayment')).toBe(true);
    expect((await statusCounts(db, env)).failed).toBe(ORDERS); // the dry run changed nothing

    const replay = await runCli(env, ['replay', '--status', 'failed', ...module]);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toContain(`${ORDERS} failed saga(s): ${ORDERS} replayed`);

    const end = await waitFor(
      'every saga to end after the replay',
      () => statusCounts(db, env),
      (c) => c.completed + c.compensated === ORDERS,
      { timeoutMs: 90_000 },
    );
    expect(end).toMatchObject({ completed: 18, compensated: 2, failed: 0 });

    const stillFailed = await runCli(env, ['sagas', 'list', '--status', 'failed', '--json']);
    expect(JSON.parse(stillFailed.stdout)).toEqual([]);

    // Replay resumed at chargePayment: no ReserveStock was sent twice (the stock participant's
    // inbox holds one ReserveStock per order plus one ReleaseStock per compensated order).
    const s = `"${env.schema}"`;
    const stockInbox = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.inbox WHERE consumer = 'participant.stock'`);
    expect(stockInbox.rows[0]!.n).toBe(ORDERS + 2);
    const reserveRows = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${s}.saga_steps WHERE step_name = 'reserveStock' AND kind = 'forward'`,
    );
    expect(reserveRows.rows[0]!.n).toBe(ORDERS);
    expect(await checkInvariants(db, env, { sagas: ORDERS, completed: 18, compensated: 2 })).toEqual([]);

    const audit = await runCli(env, ['audit', '--limit', '100', '--json']);
    const rows = JSON.parse(audit.stdout) as { action: string; outcome: string; actor: string }[];
    expect(rows.filter((r) => r.action === 'replay' && r.outcome === 'accepted')).toHaveLength(ORDERS);
    expect(rows.filter((r) => r.outcome === 'dry-run')).toHaveLength(ORDERS);
    expect(rows.every((r) => r.actor.startsWith('cli:'))).toBe(true);
  }, 240_000);
});
