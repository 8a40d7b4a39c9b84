/**
 * The order saga on RabbitMQ with the orchestrator and the participants in SEPARATE processes:
 * 1,000 orders end 900 completed / 100 compensated with every participant effect applied once;
 * forced duplicates (every message published twice) change nothing; broker-side connection kills
 * and a SIGKILLed worker mid-run lose nothing and apply nothing twice; a poison command is
 * dead-lettered after the configured deliveries while the other orders keep flowing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/db.js';
import type { Transport } from '../../src/transport/contract.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';
import {
  checkInvariants,
  closeRabbitConnections,
  e2eEnv,
  placeOrders,
  poisonCommand,
  prepare,
  rabbitQueueDepths,
  statusCounts,
  tearDownRabbitRun,
  testTransport,
  unhandledErrors,
  waitAllTerminal,
  waitOutboxDrained,
  WorkerProcess,
  type E2EEnv,
} from './harness.js';

interface Run {
  env: E2EEnv;
  db: Db;
  transport: Transport;
  workers: WorkerProcess[];
}
let current: Run | undefined;

async function setUp(extra: Record<string, string> = {}, participants = 2): Promise<Run> {
  const env = e2eEnv('rabbitmq', extra);
  const db = await prepare(env);
  const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator')];
  for (let i = 0; i < participants; i++) workers.push(new WorkerProcess(env, 'participants', `participants-${i}`));
  await Promise.all(workers.map((w) => w.start()));
  const transport = await testTransport(env);
  current = { env, db, transport, workers };
  return current;
}

afterEach(async () => {
  const run = current;
  current = undefined;
  if (!run) return;
  const codes = await tearDownRabbitRun(run);
  // A graceful stop drains and exits 0 (the SIGTERM path, docs/fault-matrix.md W6).
  expect(codes.every((c) => c === 0 || c === null)).toBe(true);
});

async function settled(run: Run, n: number, expect_: { completed: number; compensated: number }): Promise<void> {
  await waitAllTerminal(run.db, run.env, n);
  await waitOutboxDrained(run.db, run.env);
  expect(await checkInvariants(run.db, run.env, { sagas: n, ...expect_ })).toEqual([]);
  const depths = await waitFor('every queue to be empty', () => rabbitQueueDepths(run.env), (d) => Object.values(d).every((m) => m === 0), {
    timeoutMs: 30_000,
  });
  expect(depths).toBeDefined();
  expect(unhandledErrors(run.workers)).toEqual([]);
}

describe('order saga on RabbitMQ, separate processes', () => {
  it('1,000 orders: exactly 900 completed and 100 compensated, every effect applied once', async () => {
    const run = await setUp();
    const started = Date.now();
    await placeOrders(run.env, run.transport, 1000);
    await settled(run, 1000, { completed: 900, compensated: 100 });
    console.log(`[e2e rabbitmq] 1000 orders in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 300_000);

  it('forced duplicates: every message published twice, still one effect each', async () => {
    const run = await setUp({ SAGAFLOW_FAULT_DUPLICATE_PUBLISH: '1' });
    await placeOrders(run.env, run.transport, 200, { duplicate: true });
    await settled(run, 200, { completed: 180, compensated: 20 });
    // Every consumer saw each message twice; the inboxes took the second copies.
    const inbox = await run.db.query<{ consumer: string; n: number }>(`SELECT consumer, count(*)::int AS n FROM "${run.env.schema}".inbox GROUP BY 1`);
    expect(Object.fromEntries(inbox.rows.map((r) => [r.consumer, r.n]))).toMatchObject({ 'orchestrator.order': 200 + 180 * 3 + 20 * 5, 'participant.stock': 220 });
  }, 300_000);

  it('faults mid-run: broker closes connections twice, a worker is SIGKILLed and restarted -> same counts, nothing lost or doubled', async () => {
    const { random } = seededRandom('rabbitmq fault run');
    const run = await setUp();
    const n = 1000;
    const log: string[] = [];
    const done = async () => {
      const c = await statusCounts(run.db, run.env);
      return c.completed + c.compensated + c.failed;
    };
    const reach = (count: number) => waitFor(`${count} sagas finished`, done, (d) => d >= count, { timeoutMs: 240_000, intervalMs: 50 });
    // Orders go out in waves of 250, and each fault strikes while a wave is still in flight.
    let wave = 0;
    const publishWave = () => placeOrders(run.env, run.transport, 250, { runId: `${run.env.schema}-w${wave++}` });
    for (let k = 0; k < 2; k++) {
      await publishWave();
      await reach(k * 250 + 60 + Math.floor(random() * 100));
      log.push(`closed ${await closeRabbitConnections(run.env)} connections at ${await done()} finished`);
    }
    await publishWave();
    await reach(560 + Math.floor(random() * 100));
    const victim = run.workers[random() < 0.5 ? 0 : 1]!;
    await victim.kill();
    log.push(`SIGKILLed ${victim.name} at ${await done()} finished`);
    await victim.start();
    log.push(`restarted ${victim.name}`);
    await publishWave();
    expect(wave).toBe(4);
    await settled(run, n, { completed: 900, compensated: 100 });
    console.log(`[e2e rabbitmq] fault run: ${log.join('; ')}; final ${JSON.stringify(await statusCounts(run.db, run.env))}`);
  }, 300_000);

  it('a poison command (handler always throws) is dead-lettered after the configured deliveries while orders keep flowing', async () => {
    const run = await setUp({ SAGAFLOW_MAX_ATTEMPTS: '3', SAGAFLOW_RETRY_DELAYS_MS: '50' }, 1);
    const dead = await poisonCommand(run.env, run.db, run.transport, { before: 20, after: 20 });
    expect(dead).toMatchObject({ reason_code: 'MAX_ATTEMPTS_EXCEEDED', attempts: 3, consumer: 'participant.stock' });
    expect(dead!.error).toMatch(/reservation mismatch/);
    expect(await statusCounts(run.db, run.env)).toMatchObject({ completed: 36, compensated: 4, failed: 0 });
  }, 180_000);
});
