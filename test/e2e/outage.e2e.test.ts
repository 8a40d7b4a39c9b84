/**
 * Outages pause sagas instead of compensating them (RabbitMQ, then Kafka; separate processes, kept light for a
 * shared two-core machine: one orchestrator, one participants process). 1,000 orders; the payment
 * service is down for 30 s while most are in flight, then back:
 * - with the payment breaker, no saga compensates because of the outage (900 completed / 100
 *   compensated, as without any outage), the payment service gets only a few probes once the
 *   breaker is open, and the breaker's state survives a kill -9 of the orchestrator mid-outage;
 * - without it (SAGAFLOW_CIRCUITS=off), the same run: the sagas that reached payment compensate.
 * Both figures are printed; bench/outage.ts measures them outside the test runner.
 */
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { startKafkaBroker, type KafkaBroker } from '../../scripts/kafka/broker.js';
import type { Db } from '../../src/db/db.js';
import type { Transport } from '../../src/transport/contract.js';
import { exampleTables } from '../../examples/order/participants.js';
import { checkInvariants, dropSchemas, e2eEnv, prepare, tearDownRabbitRun, testTransport, unhandledErrors, waitOutboxDrained, WorkerProcess, type BrokerKind, type E2EEnv } from './harness.js';
import { runOutage, type OutageFigures } from './outage-scenario.js';

interface Run {
  env: E2EEnv;
  db: Db;
  transport: Transport;
  workers: WorkerProcess[];
}
let current: Run | undefined;
const figures: (OutageFigures & { broker: BrokerKind })[] = [];

const OUTAGE_MS = Number(process.env.SAGAFLOW_OUTAGE_MS ?? 30_000);

// SAGAFLOW_TEST_KAFKA=skip (announced loudly by the test setup) skips the Kafka run.
const skipKafka = inject('services').kafkaBrokers === '';
let kafka: KafkaBroker | undefined;

async function setUp(broker: BrokerKind, extra: Record<string, string>): Promise<Run> {
  const common = { ORDER_CIRCUITS: 'on', ORDER_ON_OUTAGE: 'compensate', ORDER_CIRCUIT_COOLDOWN_MS: '5000', ...extra };
  if (broker === 'kafka') kafka ??= await startKafkaBroker({ partitions: 6 });
  const env = e2eEnv(broker, broker === 'kafka' ? { KAFKA_BROKERS: kafka!.brokers, SAGAFLOW_KAFKA_PARTITIONS: '6', ...common } : common);
  const db = await prepare(env);
  const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator'), new WorkerProcess(env, 'participants', 'participants')];
  await Promise.all(workers.map((w) => w.start(90_000)));
  const transport = await testTransport(env);
  current = { env, db, transport, workers };
  return current;
}

afterEach(async () => {
  const run = current;
  current = undefined;
  if (!run) return;
  if (run.env.transport === 'rabbitmq') {
    await tearDownRabbitRun(run);
    return;
  }
  await Promise.all(run.workers.map((w) => w.stop()));
  await run.transport.close();
  await dropSchemas(run.db, run.env);
  await run.db.close();
});

afterAll(async () => {
  await kafka?.stop();
});

function print(f: OutageFigures & { broker: BrokerKind }): void {
  console.log(
    `[e2e outage] ${f.broker} breaker ${f.breaker ? 'on ' : 'off'}: ${JSON.stringify(f.counts)}; payment refused ${f.refusedWhileDown} charge(s) while down` +
      (f.breaker ? `, ${f.refusedAfterOpen} after the breaker opened (${f.probes} probe(s), opened ${f.opens} time(s)); up to ${f.maxWaiting} sagas waited; ${f.acrossKill.join('; ')}` : '') +
      `; ${f.seconds} s`,
  );
}

for (const broker of ['rabbitmq', 'kafka'] as const) {
describe.skipIf(broker === 'kafka' && skipKafka)(`a 30 s payment outage under 1,000 orders (${broker})`, () => {
  it('with the breaker: nothing compensates because of the outage, a handful of probes, the breaker survives kill -9', async () => {
    const run = await setUp(broker, {});
    const f = await runOutage(
      { env: run.env, db: run.db, transport: run.transport, orchestrator: run.workers[0]! },
      { orders: 1000, outageMs: OUTAGE_MS, breaker: true, killOrchestrator: true, log: (l) => console.log(`[e2e outage] ${l}`) },
    );
    figures.push({ ...f, broker });
    print({ ...f, broker });
    await waitOutboxDrained(run.db, run.env);
    expect(await checkInvariants(run.db, run.env, { sagas: 1000, completed: 900, compensated: 100 })).toEqual([]);
    // Open across the kill and the restart: the state is the row, not the process.
    expect(f.acrossKill.every((s) => !s.includes(': closed'))).toBe(true);
    expect(f.probes!).toBeGreaterThanOrEqual(1);
    expect(f.probes!).toBeLessThanOrEqual(Math.ceil(OUTAGE_MS / 5000) + 3);
    expect(f.maxWaiting).toBeGreaterThan(0);
    expect(unhandledErrors(run.workers)).toEqual([]);
  }, 600_000);

  it('without the breaker (SAGAFLOW_CIRCUITS=off): the sagas that reached payment compensate', async () => {
    const run = await setUp(broker, { SAGAFLOW_CIRCUITS: 'off' });
    const f = await runOutage(
      { env: run.env, db: run.db, transport: run.transport, orchestrator: run.workers[0]! },
      { orders: 1000, outageMs: OUTAGE_MS, breaker: false, killOrchestrator: false, log: (l) => console.log(`[e2e outage] ${l}`) },
    );
    figures.push({ ...f, broker });
    print({ ...f, broker });
    expect(f.counts.compensated).toBeGreaterThan(100);
    // Still nothing applied twice.
    const t = exampleTables(run.env.exampleSchema);
    const twice = await run.db.query(`SELECT order_id, kind FROM ${t.effects} GROUP BY 1, 2 HAVING count(*) > 1`);
    expect(twice.rows).toEqual([]);
    const on = figures.find((x) => x.breaker && x.broker === broker);
    if (on) console.log(`[e2e outage] ${broker}: compensated because of the outage with breaker: ${on.counts.compensated - 100}; without: ${f.counts.compensated - 100}`);
  }, 600_000);
});
}
