/**
 * Outages pause sagas instead of compensating them (RabbitMQ, separate processes, kept light for a
 * shared two-core machine: one orchestrator, one participants process). 1,000 orders; the payment
 * service is down for 30 s while most are in flight, then back:
 * - with the payment breaker, no saga compensates because of the outage (900 completed / 100
 *   compensated, as without any outage), the payment service gets only a few probes once the
 *   breaker is open, and the breaker's state survives a kill -9 of the orchestrator mid-outage;
 * - without it (SAGAFLOW_CIRCUITS=off), the same run: the sagas that reached payment compensate.
 * Both figures are printed; bench/outage.ts measures them outside the test runner.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/db.js';
import type { Transport } from '../../src/transport/contract.js';
import { exampleTables } from '../../examples/order/participants.js';
import { checkInvariants, e2eEnv, prepare, tearDownRabbitRun, testTransport, unhandledErrors, waitOutboxDrained, WorkerProcess, type E2EEnv } from './harness.js';
import { runOutage, type OutageFigures } from './outage-scenario.js';

interface Run {
  env: E2EEnv;
  db: Db;
  transport: Transport;
  workers: WorkerProcess[];
}
let current: Run | undefined;
const figures: OutageFigures[] = [];

const OUTAGE_MS = Number(process.env.SAGAFLOW_OUTAGE_MS ?? 30_000);

async function setUp(extra: Record<string, string>): Promise<Run> {
  const env = e2eEnv('rabbitmq', { ORDER_CIRCUITS: 'on', ORDER_ON_OUTAGE: 'compensate', ORDER_CIRCUIT_COOLDOWN_MS: '5000', ...extra });
  const db = await prepare(env);
  const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator'), new WorkerProcess(env, 'participants', 'participants')];
  await Promise.all(workers.map((w) => w.start()));
  const transport = await testTransport(env);
  current = { env, db, transport, workers };
  return current;
}

afterEach(async () => {
  const run = current;
  current = undefined;
  if (run) await tearDownRabbitRun(run);
});

function print(f: OutageFigures): void {
  console.log(
    `[e2e outage] breaker ${f.breaker ? 'on ' : 'off'}: ${JSON.stringify(f.counts)}; payment refused ${f.refusedWhileDown} charge(s) while down` +
      (f.breaker ? `, ${f.refusedAfterOpen} after the breaker opened (${f.probes} probe(s), opened ${f.opens} time(s)); up to ${f.maxWaiting} sagas waited; ${f.acrossKill.join('; ')}` : '') +
      `; ${f.seconds} s`,
  );
}

describe('a 30 s payment outage under 1,000 orders (RabbitMQ)', () => {
  it('with the breaker: nothing compensates because of the outage, a handful of probes, the breaker survives kill -9', async () => {
    const run = await setUp({});
    const f = await runOutage(
      { env: run.env, db: run.db, transport: run.transport, orchestrator: run.workers[0]! },
      { orders: 1000, outageMs: OUTAGE_MS, breaker: true, killOrchestrator: true, log: (l) => console.log(`[e2e outage] ${l}`) },
    );
    figures.push(f);
    print(f);
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
    const run = await setUp({ SAGAFLOW_CIRCUITS: 'off' });
    const f = await runOutage(
      { env: run.env, db: run.db, transport: run.transport, orchestrator: run.workers[0]! },
      { orders: 1000, outageMs: OUTAGE_MS, breaker: false, killOrchestrator: false, log: (l) => console.log(`[e2e outage] ${l}`) },
    );
    figures.push(f);
    print(f);
    expect(f.counts.compensated).toBeGreaterThan(100);
    // Still nothing applied twice.
    const t = exampleTables(run.env.exampleSchema);
    const twice = await run.db.query(`SELECT order_id, kind FROM ${t.effects} GROUP BY 1, 2 HAVING count(*) > 1`);
    expect(twice.rows).toEqual([]);
    if (figures.length === 2) console.log(`[e2e outage] compensated with breaker: ${figures[0]!.counts.compensated - 100} because of the outage; without: ${f.counts.compensated - 100}`);
  }, 600_000);
});
