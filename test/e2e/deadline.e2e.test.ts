/**
 * Saga deadlines on RabbitMQ with TWO orchestrator processes racing for the same timers: 200 orders
 * start with their own deadline (header sagaflow-deadline-ms: 3000) while no participant runs, so
 * nothing answers. Each saga's deadline, on the database clock, ends it exactly once: one abandoned
 * attempt per saga, compensated. When the stock service comes up late and reserves anyway, the
 * late success is compensated too (released once), never applied twice.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient } from '../../src/client.js';
import type { Db } from '../../src/db/db.js';
import { sagaIdFor } from '../../src/saga/engine.js';
import { START_HEADERS } from '../../src/saga/state.js';
import type { Transport } from '../../src/transport/contract.js';
import { PlaceOrder } from '../../examples/order/messages.js';
import { exampleTables } from '../../examples/order/participants.js';
import { makeOrders } from '../../examples/order/run.js';
import { waitFor } from '../helpers/wait.js';
import { e2eEnv, prepare, statusCounts, tearDownRabbitRun, testTransport, unhandledErrors, waitAllTerminal, waitOutboxDrained, WorkerProcess, type E2EEnv } from './harness.js';

let current: { env: E2EEnv; db: Db; transport: Transport; workers: WorkerProcess[] } | undefined;

afterEach(async () => {
  const run = current;
  current = undefined;
  if (run) await tearDownRabbitRun(run);
});

describe('saga deadline (RabbitMQ, two orchestrators)', () => {
  it('an expired deadline compensates each saga exactly once, late successes included', async () => {
    const env = e2eEnv('rabbitmq');
    const db = await prepare(env);
    const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator-1'), new WorkerProcess(env, 'orchestrator', 'orchestrator-2')];
    await Promise.all(workers.map((w) => w.start()));
    const transport = await testTransport(env);
    current = { env, db, transport, workers };
    const n = 200;
    const client = createClient({ schema: env.schema, publisher: transport.publisher });
    const orders = makeOrders(n, { runId: env.schema, failEvery: 0 });
    await transport.publisher.publish(
      orders.map((o) => {
        const messageId = randomUUID();
        return client.build(PlaceOrder, o, { messageId, sagaId: sagaIdFor(messageId), correlationId: o.orderId, headers: { [START_HEADERS.deadlineMs]: '3000' } });
      }),
    );
    const s = `"${env.schema}"`;
    // Nobody answers ReserveStock: every saga ends by its deadline.
    await waitAllTerminal(db, env, n, 120_000);
    expect(await statusCounts(db, env)).toMatchObject({ compensated: n });
    const expired = await db.query<{ n: number; sagas: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT saga_id)::int AS sagas FROM ${s}.saga_steps WHERE status = 'cancelled' AND error = 'deadline exceeded'`,
    );
    expect(expired.rows[0]).toEqual({ n, sagas: n });
    const early = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${s}.sagas WHERE finished_at < deadline_at OR reason <> 'deadline exceeded'`,
    );
    expect(early.rows[0]!.n).toBe(0);
    // The stock service comes up and reserves for every order: each late success is released, once.
    workers.push(new WorkerProcess(env, 'participants', 'participants'));
    await workers[2]!.start();
    const t = exampleTables(env.exampleSchema);
    await waitFor(
      'every late reservation released',
      async () => (await db.query<{ kind: string; n: number }>(`SELECT kind, count(*)::int AS n FROM ${t.effects} GROUP BY 1 ORDER BY 1`)).rows,
      (rows) => JSON.stringify(rows) === JSON.stringify([{ kind: 'release', n }, { kind: 'reserve', n }]),
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    await waitAllTerminal(db, env, n, 60_000);
    await waitOutboxDrained(db, env);
    const twice = await db.query(`SELECT order_id, kind FROM ${t.effects} GROUP BY 1, 2 HAVING count(*) > 1`);
    expect(twice.rows).toEqual([]);
    // Both orchestrators fired deadlines (they share the work; a saga is claimed by one of them).
    const fired = await Promise.all(workers.slice(0, 2).map((w) => w.stop()));
    expect(fired.every((c) => c === 0)).toBe(true);
    const stats = workers.slice(0, 2).map((w) => JSON.parse(w.log().split('\n').find((l) => l.includes('worker-stopped'))!).stats.timersFired as number);
    console.log(`[e2e deadline] ${n} sagas, deadline timers fired per orchestrator: ${stats.join(' + ')}`);
    expect(stats.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(n);
    expect(unhandledErrors(workers)).toEqual([]);
  }, 300_000);
});
