/**
 * Conformance: Kafka's command-line client kcat (Debian's package), no part of sagaflow, as a
 * foreign producer and consumer, using nothing but docs/wire-protocol.md (the section "Wire
 * protocol" below is written from it ALONE). kcat produces the order saga's start messages into the
 * `orders` topic as CloudEvents, in structured mode and one in binary mode, one of them twice (same
 * id: one saga) and one line that is no event at all (a dead letter with its reason code, the
 * worker unharmed); a sagaflow worker runs the saga and every participant on the project's Kafka
 * broker (from the test setup); kcat then reads the domain events topic and finds, for every order,
 * one start and the ending the database reports, every event valid against the committed schema.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeOrders } from '../../examples/order/run.js';
import { DEFAULT_EVENTS_TOPIC } from '../../src/config.js';
import type { Db } from '../../src/db/db.js';
import { cleanupKafka, dropSchemas, e2eEnv, kafkaName, prepare, statusCounts, waitAllTerminal, waitOutboxDrained, WorkerProcess, type E2EEnv } from '../e2e/harness.js';
import { schemaValidator } from '../helpers/json-schema.js';
import { runProcess } from '../helpers/run-process.js';
import { waitFor } from '../helpers/wait.js';
import { missingKcat, warnSkipped } from './foreign-clients.js';

// ---- Wire protocol (docs/wire-protocol.md, section numbers in brackets) ------------------------

type Order = ReturnType<typeof makeOrders>[number];

/** [3.2] structured mode: the whole event is the record's value, this is its content type. */
const STRUCTURED = 'application/cloudevents+json; charset=utf-8';

/**
 * [4, "Starting a saga"] a start message with a fresh UUID id and no sagaid (sagaflow derives it
 * from the id), keyed by its id [2]; the correlation id is the order id [3.1].
 */
function startEvent(order: Order, id: string): { key: string; value: string } {
  const event = {
    specversion: '1.0',
    id,
    source: '/conformance/kcat',
    type: 'PlaceOrder',
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    correlationid: order.orderId,
    data: order,
  };
  return { key: id, value: JSON.stringify(event) };
}

/** [3.3] the same start message in Kafka binary mode: attributes as ce_ headers, the value is the data. */
function startBinary(order: Order, id: string): { key: string; value: string; headers: string[] } {
  const headers = ['ce_specversion=1.0', `ce_id=${id}`, 'ce_source=/conformance/kcat', 'ce_type=PlaceOrder', `ce_correlationid=${order.orderId}`, 'content-type=application/json'];
  return { key: id, value: JSON.stringify(order), headers };
}

interface DomainEvent {
  /** [4 "Ids"] compared in lower case. */
  readonly id: string;
  readonly type: string;
  readonly sagaId: string;
  readonly correlationId: string;
  readonly key: string;
  readonly contentType: string | undefined;
  readonly event: unknown;
}

/** [5 "Domain events", 3.2] a record of the events topic (as kcat -J prints it): a structured event keyed by saga id. */
function readEvent(record: { key: string; payload: string; headers?: string[] }): DomainEvent {
  const event = JSON.parse(record.payload) as { id: string; type: string; sagaid: string; correlationid: string };
  const headers = record.headers ?? [];
  const at = headers.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'content-type');
  return { id: event.id.toLowerCase(), type: event.type, sagaId: event.sagaid, correlationId: event.correlationid, key: record.key, contentType: at >= 0 ? headers[at + 1] : undefined, event };
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

  it('20 orders (one produced twice, one in binary mode) run to 18 completed and 2 compensated; a line that is no event is dead-lettered; kcat reads every ending', async () => {
    const orders = makeOrders(20, { runId: env.schema, failEvery: 10 });
    const topic = kafkaName(env, 'orders');
    // Orders 0-18 in structured mode from one kcat run (order 3 twice: the same id, one saga), and
    // a line that is no event; order 19 in binary mode (kcat's -H applies to a whole run).
    const records = orders.slice(0, 19).map((o) => startEvent(o, randomUUID()));
    const lines = [...records, records[3]!].map((r) => `${r.key}\t${r.value}`);
    lines.push(`${randomUUID()}\t{"this is": "not a sagaflow message"`);
    await kcat(['-P', '-t', topic, '-K', '\t', '-H', `content-type=${STRUCTURED}`], `${lines.join('\n')}\n`);
    const binary = startBinary(orders[19]!, randomUUID());
    await kcat(['-P', '-t', topic, '-k', binary.key, ...binary.headers.flatMap((h) => ['-H', h])], binary.value);

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
      .map((l) => readEvent(JSON.parse(l) as { key: string; payload: string; headers?: string[] }));
    // Every event is a CloudEvent as the committed schema describes it, keyed by its saga, structured.
    const validate = schemaValidator('cloudevent.schema.json');
    for (const e of events) {
      expect(validate(e.event), JSON.stringify(e.event)).toEqual([]);
      expect(e.key).toBe(e.sagaId);
      expect(e.contentType).toBe(STRUCTURED);
    }
    // [5] events are published at least once: a copy (same id) is a duplicate, counted once.
    const distinct = [...new Map(events.map((e) => [e.id, e])).values()];
    const ending = new Map<string, string>();
    const started: string[] = [];
    for (const e of distinct) {
      if (e.type === 'SagaStarted') started.push(e.correlationId);
      if (e.type === 'SagaCompleted' || e.type === 'SagaCompensated' || e.type === 'SagaFailed') ending.set(e.correlationId, e.type);
    }
    // One start per order: the record produced twice started one saga.
    expect(started.sort()).toEqual(orders.map((o) => o.orderId).sort());
    for (const o of orders) expect(ending.get(o.orderId), o.orderId).toBe(o.failAt === 'none' ? 'SagaCompleted' : 'SagaCompensated');
    console.log(`[conformance] kcat read ${events.length} domain events (${distinct.length} distinct ids) for ${orders.length} orders`);
  });
});

if (skip) describe('kcat', () => it.skip(`SKIPPED, cannot run here: ${noKcat ?? 'no Kafka in this run (SAGAFLOW_TEST_KAFKA=skip)'}`, () => {}));

/** `kcat -b <brokers> ...args`, fed `input` on stdin; its stdout once it exits 0. */
async function kcat(args: readonly string[], input = ''): Promise<string> {
  const r = await runProcess('kcat', ['-b', brokers, ...args], { input });
  if (r.code !== 0) throw new Error(`kcat ${args.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}
