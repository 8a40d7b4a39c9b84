/**
 * The payment-outage experiment, shared by the e2e test and bench/outage.ts: orders flow through
 * separate orchestrator and participant processes, the payment service goes down (it answers every
 * charge with PaymentUnavailable, an outage reply the saga calls technical) for `outageMs`, then
 * comes back. With the breaker on, the sagas that reach payment wait; without it they use up their
 * retries and compensate (ORDER_ON_OUTAGE=compensate: what an outage does today).
 */
import { createClient } from '../../src/client.js';
import type { Db } from '../../src/db/db.js';
import type { Transport } from '../../src/transport/contract.js';
import { SetPaymentOutage } from '../../examples/order/messages.js';
import { exampleTables } from '../../examples/order/participants.js';
import { waitFor } from '../helpers/wait.js';
import { placeOrders, statusCounts, waitAllTerminal, type Counts, type E2EEnv, type WorkerProcess } from './harness.js';

export interface OutageRun {
  readonly env: E2EEnv;
  readonly db: Db;
  readonly transport: Transport;
  readonly orchestrator: WorkerProcess;
}

export interface OutageFigures {
  readonly breaker: boolean;
  readonly orders: number;
  readonly counts: Counts;
  /** Charges the payment service turned away while down, in all. */
  readonly refusedWhileDown: number;
  /** ... of which after the breaker first opened (commands already queued, and the probes). */
  readonly refusedAfterOpen: number | null;
  /** Probes the breaker let through (half-open claims). */
  readonly probes: number | null;
  readonly opens: number | null;
  /** Most sagas seen waiting at the breaker at once. */
  readonly maxWaiting: number;
  /** Breaker state read right after the orchestrator's kill -9, and again after its restart. */
  readonly acrossKill: readonly string[];
  readonly seconds: number;
}

async function circuit(db: Db, schema: string): Promise<{ state: string; opens: number; probes: number } | undefined> {
  return (await db.query<{ state: string; opens: number; probes: number }>(`SELECT state, opens, probes FROM "${schema}".circuits WHERE name = 'payment'`)).rows[0];
}

async function waiting(db: Db, schema: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".sagas WHERE state->'cursor'->>'waiting' = 'held'`);
  return rows[0]!.n;
}

export async function runOutage(
  run: OutageRun,
  opts: { orders: number; outageMs: number; breaker: boolean; killOrchestrator: boolean; log?: (line: string) => void },
): Promise<OutageFigures> {
  const { env, db, transport } = run;
  const log = opts.log ?? (() => undefined);
  const t = exampleTables(env.exampleSchema);
  const client = createClient({ schema: env.schema, publisher: transport.publisher });
  const finished = async () => {
    const c = await statusCounts(db, env);
    return c.completed + c.compensated + c.failed;
  };
  const started = Date.now();
  // A fifth of the orders before the outage, the rest while the payment service is down.
  const before = Math.floor(opts.orders / 5);
  await placeOrders(env, transport, before, { runId: `${env.schema}-a` });
  await waitFor('the first orders to finish', finished, (n) => n >= Math.floor(before / 2), { timeoutMs: 240_000, intervalMs: 100 });
  await client.send(SetPaymentOutage, { down: true });
  const downAt = Date.now();
  await waitFor(
    'the payment service to be down',
    async () => (await db.query(`SELECT 1 FROM ${t.settings} WHERE key = 'payment_outage' AND value = 'true'::jsonb`)).rowCount,
    (n) => n === 1,
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  // Shipping refuses every tenth order of each wave: 100 of 1,000 compensate however the outage goes.
  await placeOrders(env, transport, opts.orders - before, { runId: `${env.schema}-b` });
  log(`payment down at ${await finished()} finished`);
  let openedAtDb: Date | null = null;
  const acrossKill: string[] = [];
  let maxWaiting = 0;
  if (opts.breaker) {
    await waitFor('the payment breaker to open', () => circuit(db, env.schema), (c) => (c?.opens ?? 0) > 0, { timeoutMs: 60_000, intervalMs: 50 });
    openedAtDb = (await db.query<{ at: Date }>(`SELECT opened_at AS at FROM "${env.schema}".circuits WHERE name = 'payment'`)).rows[0]!.at;
    log(`breaker opened`);
    if (opts.killOrchestrator) {
      await run.orchestrator.kill();
      acrossKill.push(`after kill -9: ${(await circuit(db, env.schema))?.state}, ${await waiting(db, env.schema)} waiting`);
      await run.orchestrator.start();
      acrossKill.push(`after restart: ${(await circuit(db, env.schema))?.state}, ${await waiting(db, env.schema)} waiting`);
      log(acrossKill.join('; '));
    }
  }
  // The outage lasts outageMs of wall time; meanwhile watch how many sagas wait at the breaker.
  await waitFor(
    `the ${opts.outageMs} ms outage to pass`,
    async () => {
      maxWaiting = Math.max(maxWaiting, await waiting(db, env.schema));
      return Date.now() - downAt;
    },
    (ms) => ms >= opts.outageMs,
    { timeoutMs: opts.outageMs + 60_000, intervalMs: 500 },
  );
  await client.send(SetPaymentOutage, { down: false });
  log(`payment back at ${await finished()} finished, ${maxWaiting} waited at most`);
  const counts = await waitAllTerminal(db, env, opts.orders, 300_000);
  const refused = await db.query<{ all: number; after: number }>(
    `SELECT count(*)::int AS all, count(*) FILTER (WHERE at >= $1::timestamptz)::int AS after FROM ${t.outageCalls}`,
    [openedAtDb ?? new Date(8.64e15)],
  );
  const c = opts.breaker ? await circuit(db, env.schema) : undefined;
  return {
    breaker: opts.breaker,
    orders: opts.orders,
    counts,
    refusedWhileDown: refused.rows[0]!.all,
    refusedAfterOpen: opts.breaker ? refused.rows[0]!.after : null,
    probes: c?.probes ?? null,
    opens: c?.opens ?? null,
    maxWaiting,
    acrossKill,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
}
