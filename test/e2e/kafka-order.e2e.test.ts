/**
 * The order saga on Kafka with the orchestrator and the participants in SEPARATE processes, on a
 * broker of this file's own (so it can be killed): 1,000 orders end 900 completed / 100
 * compensated with every effect applied once; a second participants process joining and leaving
 * twice (rebalances) and a broker kill -9 + restart on the same data directory change nothing;
 * committed offsets are never ahead of what the database recorded; a poison command reaches the
 * dead letters after the configured attempts while its partition keeps flowing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { startKafkaBroker, type KafkaBroker } from '../../scripts/kafka/broker.js';
import type { Db } from '../../src/db/db.js';
import type { Transport } from '../../src/transport/contract.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';
import {
  checkInvariants,
  cleanupKafka,
  dropSchemas,
  e2eEnv,
  offsetsBehindInbox,
  placeOrders,
  poisonCommand,
  prepare,
  statusCounts,
  testTransport,
  unhandledErrors,
  waitAllTerminal,
  waitOutboxDrained,
  WorkerProcess,
  type E2EEnv,
} from './harness.js';

const CONSUMERS: [string, string][] = [
  ['orchestrator.order', 'orders'],
  ['participant.stock', 'stock'],
  ['participant.payment', 'payment'],
  ['participant.shipping', 'shipping'],
];

let broker: KafkaBroker;
// SAGAFLOW_TEST_KAFKA=skip (announced loudly by the test setup) skips every Kafka test alike.
const skip = inject('services').kafkaBrokers === '';

beforeAll(async () => {
  if (!skip) broker = await startKafkaBroker({ partitions: 6 });
}, 180_000);

afterAll(async () => {
  await broker?.stop();
});

interface Run {
  env: E2EEnv;
  db: Db;
  transport: Transport;
  workers: WorkerProcess[];
}
let current: Run | undefined;

async function setUp(extra: Record<string, string> = {}, participants = 1): Promise<Run> {
  const env = e2eEnv('kafka', { KAFKA_BROKERS: broker.brokers, SAGAFLOW_KAFKA_PARTITIONS: '6', ...extra });
  const db = await prepare(env);
  const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator')];
  for (let i = 0; i < participants; i++) workers.push(new WorkerProcess(env, 'participants', `participants-${i}`));
  // All at once, as a deployment starts them: each declares the whole topology while the others'
  // consumers are already joining their groups (a race that once stopped a worker at start).
  await Promise.all(workers.map((w) => w.start(90_000)));
  const transport = await testTransport(env);
  current = { env, db, transport, workers };
  return current;
}

afterEach(async () => {
  const run = current;
  current = undefined;
  if (!run) return;
  await Promise.all(run.workers.map((w) => w.stop()));
  await run.transport.close();
  await cleanupKafka(run.env, broker.brokers).catch(() => undefined);
  await dropSchemas(run.db, run.env);
  await run.db.close();
});

async function offsetsOk(run: Run): Promise<number> {
  let committed = 0;
  for (const [consumer, topic] of CONSUMERS) {
    const r = await offsetsBehindInbox(run.env, broker.brokers, run.db, consumer, topic);
    expect(r.problems).toEqual([]);
    committed += r.committed;
  }
  return committed;
}

async function settled(run: Run, n: number, expect_: { completed: number; compensated: number }): Promise<void> {
  await waitAllTerminal(run.db, run.env, n, 300_000);
  await waitOutboxDrained(run.db, run.env);
  expect(await checkInvariants(run.db, run.env, { sagas: n, ...expect_ })).toEqual([]);
  expect(unhandledErrors(run.workers)).toEqual([]);
}

describe.skipIf(skip)('order saga on Kafka, separate processes', () => {
  it('1,000 orders: exactly 900 completed and 100 compensated, every effect once, offsets never ahead of the database', async () => {
    const run = await setUp();
    const started = Date.now();
    await placeOrders(run.env, run.transport, 1000);
    await settled(run, 1000, { completed: 900, compensated: 100 });
    console.log(`[e2e kafka] 1000 orders in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // Every message a group committed past is in its inbox (checked over the whole log).
    expect(await offsetsOk(run)).toBeGreaterThan(0);
  }, 360_000);

  it('rebalances (a second consumer joins and leaves twice) and a broker kill -9 + restart: same counts, nothing lost or doubled', async () => {
    const { random } = seededRandom('kafka fault run');
    const run = await setUp();
    const n = 1000;
    const log: string[] = [];
    const done = async () => {
      const c = await statusCounts(run.db, run.env);
      return c.completed + c.compensated + c.failed;
    };
    const reach = (count: number) => waitFor(`${count} sagas finished`, done, (d) => d >= count, { timeoutMs: 300_000, intervalMs: 50 });
    // Orders go out in waves of 200, and each fault strikes while a wave is still in flight.
    let wave = 0;
    const publishWave = () => placeOrders(run.env, run.transport, 200, { runId: `${run.env.schema}-w${wave++}` });
    for (const k of [0, 1]) {
      await publishWave();
      await reach(k * 400 + 50 + Math.floor(random() * 50));
      const extra = new WorkerProcess(run.env, 'participants', `participants-extra-${k}`);
      await extra.start(90_000);
      log.push(`${extra.name} joined`);
      await publishWave();
      // Mid-run, the offsets a group committed are already in its inbox.
      await offsetsOk(run);
      await reach(k * 400 + 250 + Math.floor(random() * 50));
      expect(await extra.stop()).toBe(0);
      log.push(`${extra.name} left at ${await done()} finished`);
      run.workers.push(extra); // its log is checked for unhandled errors at the end
    }
    await publishWave();
    await reach(850 + Math.floor(random() * 50));
    const t0 = Date.now();
    await broker.kill();
    log.push(`broker killed (kill -9) at ${await done()} of 1000 finished`);
    await broker.restart();
    log.push(`broker restarted on the same data directory in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect(wave).toBe(5);
    await settled(run, n, { completed: 900, compensated: 100 });
    await offsetsOk(run);
    console.log(`[e2e kafka] fault run: ${log.join('; ')}; final ${JSON.stringify(await statusCounts(run.db, run.env))}`);
  }, 600_000);

  it('a poison command is dead-lettered after the configured attempts while its partition keeps flowing', async () => {
    const run = await setUp({ SAGAFLOW_MAX_ATTEMPTS: '3', SAGAFLOW_RETRY_DELAYS_MS: '50' });
    const dead = await poisonCommand(run.env, run.db, run.transport, { before: 20, after: 60 });
    expect(dead).toMatchObject({ reason_code: 'MAX_ATTEMPTS_EXCEEDED', attempts: 3, consumer: 'participant.stock' });
    expect(dead!.error).toMatch(/reservation mismatch/);
    expect(await statusCounts(run.db, run.env)).toMatchObject({ completed: 72, compensated: 8, failed: 0 });
    await offsetsOk(run);
  }, 240_000);
});
