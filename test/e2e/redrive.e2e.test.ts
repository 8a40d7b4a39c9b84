/**
 * Redrive of a dead letter after its cause is fixed, on RabbitMQ with a separate worker process,
 * through the CLI: the shipping participant's table goes missing (an operator's mistake), so
 * ShipOrder fails on every delivery and is dead-lettered after its attempts; the table comes back;
 * `sagaflow dead-letters redrive` publishes the same message again (same id), it is processed
 * once, the saga completes, and the dead letter and the audit trail say what happened.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleTables } from '../../examples/order/participants.js';
import type { Db } from '../../src/db/db.js';
import type { Transport } from '../../src/transport/contract.js';
import { waitFor } from '../helpers/wait.js';
import { cleanupRabbit, dropSchemas, e2eEnv, placeOrders, prepare, runCli, statusCounts, testTransport, WorkerProcess, type E2EEnv } from './harness.js';

let env: E2EEnv;
let db: Db;
let transport: Transport;
let worker: WorkerProcess;

beforeAll(async () => {
  // Two deliveries, then the dead letters; the step timeout stays far away (30 s in the example).
  env = e2eEnv('rabbitmq', { SAGAFLOW_MAX_ATTEMPTS: '2', SAGAFLOW_RETRY_DELAYS_MS: '50' });
  db = await prepare(env);
  worker = new WorkerProcess(env, 'all', 'redrive-worker');
  await worker.start();
  transport = await testTransport(env);
});

afterAll(async () => {
  await worker?.stop();
  await transport?.close();
  await cleanupRabbit(env).catch(() => undefined);
  await dropSchemas(db, env);
  await db.close();
});

describe('dead letters: redrive after the cause is fixed', () => {
  it('is processed once and completes its saga; the dead letter is marked and audited', async () => {
    const t = exampleTables(env.exampleSchema);
    await db.query(`ALTER TABLE ${t.shipments} RENAME TO shipments_gone`);
    const [sagaId] = await placeOrders(env, transport, 1, { failEvery: 0 });
    const listed = await waitFor(
      'ShipOrder in the dead letters',
      async () => {
        const r = await runCli(env, ['dead-letters', 'list', '--status', 'new', '--json']);
        return JSON.parse(r.stdout) as { id: string; type: string; reasonCode: string; consumer: string; error: string; messageId: string }[];
      },
      (rows) => rows.some((d) => d.type === 'ShipOrder'),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const dead = listed.find((d) => d.type === 'ShipOrder')!;
    expect(dead).toMatchObject({ reasonCode: 'MAX_ATTEMPTS_EXCEEDED', consumer: 'participant.shipping' });
    expect(dead.error).toMatch(/shipments/);
    expect((await statusCounts(db, env)).running).toBe(1);

    const shown = await runCli(env, ['dead-letters', 'show', dead.id, '--json']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: dead.id, bodyEncoding: 'utf8' });
    const dry = await runCli(env, ['dead-letters', 'redrive', dead.id, '--dry-run', '--json']);
    expect(JSON.parse(dry.stdout)).toMatchObject({ outcome: 'dry-run', messageId: dead.messageId });

    // The cause is fixed; the same message goes out again.
    await db.query(`ALTER TABLE "${env.exampleSchema}".shipments_gone RENAME TO shipments`);
    const redriven = await runCli(env, ['dead-letters', 'redrive', dead.id, '--reason', 'shipments table restored', '--json']);
    expect(redriven.code, redriven.stderr).toBe(0);
    expect(JSON.parse(redriven.stdout)).toMatchObject({ outcome: 'accepted', messageId: dead.messageId });

    await waitFor('the saga to complete', () => statusCounts(db, env), (c) => c.completed === 1, { timeoutMs: 60_000 });
    const effects = await db.query<{ kind: string; n: number }>(`SELECT kind, count(*)::int AS n FROM ${t.effects} GROUP BY kind ORDER BY kind`);
    expect(effects.rows).toEqual([
      { kind: 'charge', n: 1 },
      { kind: 'reserve', n: 1 },
      { kind: 'ship', n: 1 },
    ]);
    const steps = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.schema}".saga_steps WHERE saga_id = $1 AND step_name = 'shipOrder'`, [sagaId]);
    expect(steps.rows[0]!.n).toBe(1); // the saga never had to retry the step: the redrive answered it

    // A second redrive is refused (exit 4), the row says who redrove it and why, the audit agrees.
    const again = await runCli(env, ['dead-letters', 'redrive', dead.id]);
    expect(again.code).toBe(4);
    const after = JSON.parse((await runCli(env, ['dead-letters', 'show', dead.id, '--json'])).stdout) as { status: string; resolutionNote: string; resolvedBy: string };
    expect(after).toMatchObject({ status: 'redriven', resolutionNote: 'shipments table restored' });
    expect(after.resolvedBy).toMatch(/^cli:/);
    const audit = JSON.parse((await runCli(env, ['audit', '--target', dead.id, '--json'])).stdout) as { action: string; outcome: string }[];
    expect(audit.map((a) => `${a.action}:${a.outcome}`).sort()).toEqual(['redrive:accepted', 'redrive:dry-run', 'redrive:refused']);
  }, 180_000);
});
