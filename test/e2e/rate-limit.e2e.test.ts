/**
 * A rate limit holds across processes (RabbitMQ): TWO orchestrator processes share a limit of R
 * payment commands per second (a token bucket in Postgres). 300 orders arrive at once; the payment
 * service, in its own process, logs when it charges each one. Measured there, the charges come at
 * R per second within 10% - not 2R (each process on its own) and not far below (tokens lost) -
 * and every saga still completes, none charged twice.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/db.js';
import type { Transport } from '../../src/transport/contract.js';
import { exampleTables } from '../../examples/order/participants.js';
import { e2eEnv, placeOrders, prepare, statusCounts, tearDownRabbitRun, testTransport, unhandledErrors, waitAllTerminal, WorkerProcess, type E2EEnv } from './harness.js';

let current: { env: E2EEnv; db: Db; transport: Transport; workers: WorkerProcess[] } | undefined;

afterEach(async () => {
  const run = current;
  current = undefined;
  if (run) await tearDownRabbitRun(run);
});

const R = 20;
const N = 300;

describe('rate limit (RabbitMQ, two orchestrators)', () => {
  it(`holds ${R} payment commands per second, measured at the payment service`, async () => {
    const env = e2eEnv('rabbitmq', { ORDER_PAYMENT_RATE: String(R) });
    const db = await prepare(env);
    const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator-1'), new WorkerProcess(env, 'orchestrator', 'orchestrator-2'), new WorkerProcess(env, 'participants', 'participants')];
    await Promise.all(workers.map((w) => w.start()));
    const transport = await testTransport(env);
    current = { env, db, transport, workers };
    await placeOrders(env, transport, N, { failEvery: 0 });
    await waitAllTerminal(db, env, N, 120_000);
    expect(await statusCounts(db, env)).toMatchObject({ completed: N });
    const t = exampleTables(env.exampleSchema);
    const charges = await db.query<{ n: number; orders: number; seconds: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT order_id)::int AS orders, extract(epoch FROM max(at) - min(at))::float8 AS seconds
       FROM ${t.effects} WHERE kind = 'charge'`,
    );
    const { n, orders, seconds } = charges.rows[0]!;
    expect(n).toBe(N);
    expect(orders).toBe(N);
    // The first charge opens the measured span; the bucket's burst (R/4 tokens) comes with it.
    const rate = (n - 1) / seconds;
    process.stdout.write(`[rate-limit e2e] ${n} charges in ${seconds.toFixed(2)} s = ${rate.toFixed(2)}/s (limit ${R}/s, two orchestrators)\n`);
    expect(rate).toBeGreaterThan(R * 0.9);
    expect(rate).toBeLessThan(R * 1.1);
    // Every charge took a token from the one shared bucket.
    const held = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.schema}".rate_buckets WHERE gate = 'payment' AND taken >= $1`, [N]);
    expect(held.rows[0]!.n).toBe(1);
    expect(unhandledErrors(workers)).toEqual([]);
  }, 240_000);
});
