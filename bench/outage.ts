/**
 * `npx tsx bench/outage.ts [--orders 1000] [--outage-ms 30000] [--cool-down-ms 5000] [--json]`
 *
 * The payment-outage experiment outside the test runner, for a quieter machine: the same scenario
 * as test/e2e/outage.e2e.test.ts (RabbitMQ, one orchestrator and one participants process), run
 * twice - with the payment breaker, then without (SAGAFLOW_CIRCUITS=off) - and the two figures
 * printed side by side. It measures; it never fails on a figure. Services from DATABASE_URL and
 * AMQP_URL (defaults: the local ones).
 */
import { parseArgs } from 'node:util';
import { cleanupRabbit, dropSchemas, e2eEnv, prepare, testTransport, WorkerProcess } from '../test/e2e/harness.js';
import { runOutage, type OutageFigures } from '../test/e2e/outage-scenario.js';

const { values: a } = parseArgs({
  options: {
    orders: { type: 'string', default: '1000' },
    'outage-ms': { type: 'string', default: '30000' },
    'cool-down-ms': { type: 'string', default: '5000' },
    json: { type: 'boolean', default: false },
  },
});
const services = {
  databaseUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  amqpUrl: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  kafkaBrokers: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
};

async function once(breaker: boolean): Promise<OutageFigures> {
  const env = e2eEnv(
    'rabbitmq',
    { ORDER_CIRCUITS: 'on', ORDER_ON_OUTAGE: 'compensate', ORDER_CIRCUIT_COOLDOWN_MS: a['cool-down-ms']!, SAGAFLOW_CIRCUITS: breaker ? 'on' : 'off' },
    services,
  );
  const db = await prepare(env);
  const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator'), new WorkerProcess(env, 'participants', 'participants')];
  try {
    await Promise.all(workers.map((w) => w.start()));
    const transport = await testTransport(env);
    try {
      return await runOutage(
        { env, db, transport, orchestrator: workers[0]! },
        { orders: Number(a.orders), outageMs: Number(a['outage-ms']), breaker, killOrchestrator: false, log: (l) => console.error(`  [${breaker ? 'breaker' : 'no breaker'}] ${l}`) },
      );
    } finally {
      await transport.close();
    }
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await cleanupRabbit(env).catch(() => undefined);
    await dropSchemas(db, env);
    await db.close();
  }
}

const on = await once(true);
const off = await once(false);
const expectedCompensated = Math.floor(Number(a.orders) / 10);
const row = (label: string, f: (x: OutageFigures) => unknown) => `${label.padEnd(44)} ${String(f(on)).padStart(12)} ${String(f(off)).padStart(12)}`;
console.log(
  [
    `payment outage of ${a['outage-ms']} ms under ${a.orders} orders (RabbitMQ)`,
    `${''.padEnd(44)} ${'breaker on'.padStart(12)} ${'breaker off'.padStart(12)}`,
    row('completed', (x) => x.counts.completed),
    row('compensated', (x) => x.counts.compensated),
    row('  of which because of the outage', (x) => x.counts.compensated - expectedCompensated),
    row('charges the payment service refused', (x) => x.refusedWhileDown),
    row('  of which after the breaker opened', (x) => x.refusedAfterOpen ?? '-'),
    row('probes through the half-open breaker', (x) => x.probes ?? '-'),
    row('most sagas waiting at once', (x) => x.maxWaiting),
    row('run time, s', (x) => x.seconds),
  ].join('\n'),
);
if (a.json) console.log(JSON.stringify({ on, off }));
