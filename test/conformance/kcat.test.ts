/**
 * Conformance: Kafka's own command-line client, kcat (Debian's package), as a foreign producer and
 * consumer, using nothing but docs/wire-protocol.md (the envelope below is built from it ALONE).
 * kcat produces the order saga's start commands into the `orders` topic, one of them twice (same
 * id: one saga) and one line that is not an envelope at all (a dead letter with its reason code,
 * the worker unharmed); a sagaflow worker runs the saga and every participant on the project's
 * Kafka broker (from the test setup); kcat then reads the domain events topic and finds, for every
 * order, the saga's start and the ending the database reports.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeOrders } from '../../examples/order/run.js';
import { DEFAULT_EVENTS_TOPIC } from '../../src/config.js';
import type { Db } from '../../src/db/db.js';
import { cleanupKafka, dropSchemas, e2eEnv, kafkaName, prepare, statusCounts, waitAllTerminal, waitOutboxDrained, WorkerProcess, type E2EEnv } from '../e2e/harness.js';
import { waitFor } from '../helpers/wait.js';
import { missingKcat, warnSkipped } from './foreign-clients.js';

// ---- Wire protocol (docs/wire-protocol.md) ---------------------------------------------------

type Order = ReturnType<typeof makeOrders>[number];

/** A start command as a foreign producer writes it: the Kafka record's key, value and headers. */
function startCommand(order: Order, id: string): { key: string; value: string } {
  const value = {
    id,
    type: 'PlaceOrder',
    schemaVersion: 1,
    tenantId: 'default',
    correlationId: order.orderId,
    occurredAt: new Date().toISOString(),
    payload: order,
  };
  return { key: order.orderId, value: JSON.stringify(value) };
}

/** Headers every record of one kcat run carries (kcat -H applies to all of them). */
const PRODUCE_HEADERS: readonly string[] = ['content-type=application/json'];

interface DomainEvent {
  readonly type: string;
  readonly sagaId: string;
  readonly correlationId: string;
}

/** A record of the events topic as kcat -J prints it -> the event. */
function readEvent(record: { payload: string; headers?: string[] }): DomainEvent {
  const env = JSON.parse(record.payload) as { type: string; sagaId: string; correlationId: string };
  return { type: env.type, sagaId: env.sagaId, correlationId: env.correlationId };
}

// ---- The test ---------------------------------------------------------------------------------

const brokers = inject('services').kafkaBrokers;
const noKcat = missingKcat();
if (noKcat) warnSkipped('the kcat conformance test', noKcat);
// SAGAFLOW_TEST_KAFKA=skip (announced loudly by the test setup) skips every Kafka test alike.
const skip = brokers === '' || noKcat !== undefined;

describe.skipIf(skip)('kcat produces start commands into Kafka and reads the domain events', () => {
  let env: E2EEnv;
  let db: Db;
  let worker: WorkerProcess;

  beforeAll(async () => {
    env = e2eEnv('kafka', { KAFKA_BROKERS: brokers });
    db = await prepare(env);
    worker = new WorkerProcess(env, 'all', 'worker');
    await worker.start(90_000); // declares the topics kcat writes to and reads
  }, 180_000);

  afterAll(async () => {
    const code = await worker?.stop();
    if (env) await cleanupKafka(env, brokers).catch(() => undefined);
    if (db) {
      await dropSchemas(db, env);
      await db.close();
    }
    expect(code === 0 || code === null).toBe(true);
  });

  it('20 orders (one produced twice) run to 18 completed and 2 compensated; a line that is no envelope is dead-lettered; kcat reads every ending', async () => {
    const orders = makeOrders(20, { runId: env.schema, failEvery: 10 });
    const records = orders.map((o) => startCommand(o, randomUUID()));
    const lines = [...records, records[3]!].map((r) => `${r.key}\t${r.value}`);
    lines.push(`not-an-envelope\t{"this is": "not a sagaflow message"`);
    await kcat(['-P', '-t', kafkaName(env, 'orders'), '-K', '\t', ...PRODUCE_HEADERS.flatMap((h) => ['-H', h])], `${lines.join('\n')}\n`);

    await waitAllTerminal(db, env, orders.length, 120_000);
    await waitOutboxDrained(db, env);
    const counts = await statusCounts(db, env);
    expect(counts).toMatchObject({ completed: 18, compensated: 2, failed: 0, running: 0, compensating: 0 });
    const dead = await waitFor(
      'the bad line to be dead-lettered',
      async () => (await db.query<{ reason_code: string; consumer: string }>(`SELECT reason_code, consumer FROM "${env.schema}".dead_letters`)).rows,
      (rows) => rows.length > 0,
      { timeoutMs: 60_000 },
    );
    expect(dead).toEqual([{ reason_code: 'MALFORMED_JSON', consumer: 'orchestrator.order' }]);

    // Every event so far, read by kcat to the end of each partition.
    const out = await kcat(['-C', '-t', kafkaName(env, DEFAULT_EVENTS_TOPIC), '-o', 'beginning', '-e', '-J', '-q']);
    const events = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => readEvent(JSON.parse(l) as { payload: string; headers?: string[] }));
    const ending = new Map<string, string>();
    const started: string[] = [];
    for (const e of events) {
      if (e.type === 'SagaStarted') started.push(e.correlationId);
      if (e.type === 'SagaCompleted' || e.type === 'SagaCompensated' || e.type === 'SagaFailed') ending.set(e.correlationId, e.type);
    }
    // One start per order: the record produced twice started one saga.
    expect(started.sort()).toEqual(orders.map((o) => o.orderId).sort());
    for (const o of orders) expect(ending.get(o.orderId), o.orderId).toBe(o.failAt === 'none' ? 'SagaCompleted' : 'SagaCompensated');
    console.log(`[conformance] kcat read ${events.length} domain events for ${orders.length} orders`);
  });
});

if (skip) describe('kcat', () => it.skip(`SKIPPED, cannot run here: ${noKcat ?? 'no Kafka in this run (SAGAFLOW_TEST_KAFKA=skip)'}`, () => {}));

/** `kcat -b <brokers> ...args`, fed `input` on stdin; its stdout once it exits 0. */
function kcat(args: readonly string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('kcat', ['-b', brokers, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`kcat ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
    });
    child.stdin.end(input);
  });
}
