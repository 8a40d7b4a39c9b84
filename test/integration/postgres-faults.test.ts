/**
 * docs/fault-matrix.md P1: Postgres connections die under a running order saga on RabbitMQ.
 * (a) every backend of the workers' pools is terminated (pg_terminate_backend) several times at
 *     seeded moments, on the machine's Postgres;
 * (b) a PostgreSQL the test owns (the embedded one) is stopped for ~10 s and started again on the
 *     same data directory and port, then killed with SIGKILL (crash recovery) and started again.
 * Either way: every saga ends 9:1 completed:compensated, no effect applied twice, the outbox
 * drained, no unhandled error, both worker processes still running and reconnected by themselves.
 * The database layer pipelines BEGIN with a transaction's first statement, so these faults also
 * catch a statement that would run outside its transaction after a broken BEGIN (it would show
 * up as a doubled effect or a saga stuck half-way).
 */
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createDb, type Db } from '../../src/db/db.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/local/embedded-postgres.js';
import type { Transport } from '../../src/transport/contract.js';
import {
  checkInvariants,
  cleanupRabbit,
  e2eEnv,
  placeOrders,
  prepare,
  statusCounts,
  testTransport,
  unhandledErrors,
  waitAllTerminal,
  waitOutboxDrained,
  WorkerProcess,
  type E2EEnv,
} from '../e2e/harness.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';

const ORDERS = 400;

interface Run {
  env: E2EEnv;
  /** The test's own pool (another application_name: never terminated, replaced after a restart). */
  db: Db;
  transport: Transport;
  workers: WorkerProcess[];
  /** application_name of every worker connection: what the faults select on. */
  appName: string;
  embedded?: EmbeddedPostgres;
  dirs: string[];
}
let current: Run | undefined;

afterEach(async () => {
  const run = current;
  current = undefined;
  if (!run) return;
  await Promise.all(run.workers.map((w) => w.stop()));
  await run.transport.close();
  await cleanupRabbit(run.env).catch(() => undefined);
  if (run.embedded) {
    await run.db.close().catch(() => undefined);
    await run.embedded.stop();
  } else {
    await run.db.query(`DROP SCHEMA IF EXISTS "${run.env.schema}" CASCADE`);
    await run.db.query(`DROP SCHEMA IF EXISTS "${run.env.exampleSchema}" CASCADE`);
    await run.db.close();
  }
  for (const d of run.dirs) rmSync(d, { recursive: true, force: true });
});

function withAppName(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set('application_name', name);
  return u.toString();
}

async function setUp(databaseUrl: string, extra: { embedded?: EmbeddedPostgres; dirs?: string[] } = {}): Promise<Run> {
  const services = { ...inject('services'), databaseUrl };
  // Short pool timeouts so a worker notices a dead server quickly; retries fast so the run is short.
  const env = e2eEnv('rabbitmq', { SAGAFLOW_DB_POOL: '4' }, services);
  const appName = `${env.schema}_w`;
  // The URL's application_name overrides the one the worker sets: every worker connection (pool
  // and listener) carries it, and only those are terminated, never another test's.
  env.vars.DATABASE_URL = withAppName(databaseUrl, appName);
  const db = await prepare(env);
  const workers = [new WorkerProcess(env, 'orchestrator', 'orchestrator'), new WorkerProcess(env, 'participants', 'participants')];
  current = { env, db, transport: undefined as unknown as Transport, workers, appName, dirs: extra.dirs ?? [], ...(extra.embedded ? { embedded: extra.embedded } : {}) };
  await Promise.all(workers.map((w) => w.start()));
  current.transport = await testTransport(env);
  return current;
}

async function finished(run: Run): Promise<number> {
  const c = await statusCounts(run.db, run.env);
  return c.completed + c.compensated + c.failed;
}

function reach(run: Run, count: number): Promise<number> {
  return waitFor(`${count} sagas finished`, () => finished(run), (d) => d >= count, { timeoutMs: 240_000, intervalMs: 100 });
}

function alive(run: Run): string[] {
  return run.workers.filter((w) => w.child?.exitCode !== null || w.child?.signalCode !== null).map((w) => `${w.name} exited (${w.child?.exitCode ?? w.child?.signalCode})`);
}

/**
 * The orders go out in one wave per fault; fault i strikes once its wave has `points[i]` (seeded)
 * sagas finished, while the rest of that wave is still in flight.
 */
async function runFaults(run: Run, points: readonly number[], fault: (i: number, waveEnd: number) => Promise<string>): Promise<string[]> {
  const wave = ORDERS / points.length;
  const log: string[] = [];
  for (let i = 0; i < points.length; i++) {
    await placeOrders(run.env, run.transport, wave, { runId: `${run.env.schema}-w${i}` });
    await reach(run, i * wave + points[i]!);
    const before = await finished(run);
    log.push(`${await fault(i, (i + 1) * wave)} at ${before} finished`);
  }
  return log;
}

/** `n` points drawn from [from, to). */
function seededPoints(random: () => number, n: number, from: number, to: number): number[] {
  return Array.from({ length: n }, () => from + Math.floor(random() * (to - from)));
}

async function settled(run: Run): Promise<void> {
  await waitAllTerminal(run.db, run.env, ORDERS, 240_000);
  await waitOutboxDrained(run.db, run.env, 120_000);
  expect(await checkInvariants(run.db, run.env, { sagas: ORDERS, completed: ORDERS * 0.9, compensated: ORDERS * 0.1 })).toEqual([]);
  expect(alive(run)).toEqual([]);
  expect(unhandledErrors(run.workers)).toEqual([]);
}

/**
 * Terminates every backend of the workers' pools, but only at a moment when one of them is inside
 * a statement or a transaction (so the fault lands on work in flight, not only on idle clients);
 * returns the states of the terminated backends, empty when none was busy (busyOnly: false kills idle ones too).
 */
async function terminateWorkerBackends(run: Run, opts: { busyOnly?: boolean } = {}): Promise<string[]> {
  const { rows } = await run.db.query<{ state: string }>(
    `WITH w AS (SELECT pid, state FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid())
     SELECT state FROM w
     WHERE ($2 OR EXISTS (SELECT 1 FROM w WHERE state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')))
       AND pg_terminate_backend(pid)`,
    [run.appName, !(opts.busyOnly ?? true)],
  );
  return rows.map((r) => r.state);
}

describe('Postgres faults under a running order saga (P1)', () => {
  it('every worker backend terminated eight times mid-run, when one is busy: all sagas end 9:1, nothing doubled, workers reconnect', async () => {
    const { random } = seededRandom('postgres-faults terminate');
    const run = await setUp(inject('services').databaseUrl);
    const started = Date.now();
    let busy = 0;
    const log = await runFaults(run, seededPoints(random, 8, 3, 15), async (i, waveEnd) => {
      // As soon as a worker backend is busy, every worker backend is terminated; on a fast machine
      // the wave may end first, and then they are terminated idle.
      const probe = async () => ({ states: await terminateWorkerBackends(run), done: await finished(run) });
      const hit = await waitFor('a busy worker backend to terminate', probe, (p) => p.states.length > 0 || p.done >= waveEnd, { timeoutMs: 60_000, intervalMs: 10 });
      const states = hit.states.length > 0 ? hit.states : await terminateWorkerBackends(run, { busyOnly: false });
      busy += states.filter((s) => s !== 'idle').length;
      return `#${i}: terminated ${states.length} backends (${states.filter((s) => s !== 'idle').length} busy)`;
    });
    await settled(run);
    expect(busy).toBeGreaterThan(0); // the faults hit work in flight, not only idle clients
    console.log(`[postgres-faults] terminate: ${log.join('; ')}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 420_000);

  it('own PostgreSQL stopped for ~10 s, then SIGKILLed, restarted on the same data and port: all sagas end 9:1, workers reconnect', async () => {
    const { random } = seededRandom('postgres-faults restart');
    const base = mkdtempSync(join(tmpdir(), 'sf-pgfaults-'));
    chmodSync(base, 0o755); // as root, the server runs as the postgres user, which must enter it
    // durable (the default, said here because it matters): with synchronous_commit=off a server crash
    // loses the last commits, acked messages included (3 of 3 runs lost ship effects that way).
    let embedded = await startEmbeddedPostgres({ baseDir: base, durable: true });
    const run = await setUp(embedded.url, { embedded, dirs: [base] });
    const port = embedded.port;
    const restart = async (): Promise<void> => {
      // After a SIGKILL, its backends may still hold the shared memory for a moment: the start fails
      // with "exited at start" until they are gone, so it is tried until it succeeds.
      const next = await waitFor(
        'the embedded PostgreSQL to start again',
        () => startEmbeddedPostgres({ baseDir: base, port, durable: true }).catch((err: unknown) => err as Error),
        (r) => !(r instanceof Error),
        { timeoutMs: 90_000, intervalMs: 200 },
      );
      embedded = next as EmbeddedPostgres;
      run.embedded = embedded;
      expect(embedded.port).toBe(port);
      run.db = createDb({ connectionString: embedded.url, max: 4, applicationName: `${run.env.schema}-checker` });
    };
    const started = Date.now();
    const log = await runFaults(run, seededPoints(random, 2, 20, 100), async (k) => {
      if (k === 0) {
        await run.db.close();
        await embedded.stop();
        // The outage lasts ~10 s: polled, so a worker dying meanwhile fails the test at once.
        const until = Date.now() + 10_000;
        await waitFor('a 10 s outage with both workers alive', () => ({ dead: alive(run), now: Date.now() }), (s) => s.dead.length > 0 || s.now >= until, {
          timeoutMs: 30_000,
          intervalMs: 250,
        });
        expect(alive(run)).toEqual([]);
        await restart();
        return 'stopped ~10 s and restarted';
      }
      if (k === 1) {
        await run.db.close();
        process.kill(embedded.pid, 'SIGKILL');
        await embedded.stop(); // resolves once the killed process is reaped
        await restart();
        return 'postmaster SIGKILLed and restarted';
      }
      throw new Error(`no fault #${k}`);
    });
    await settled(run);
    console.log(`[postgres-faults] restart: ${log.join('; ')}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 420_000);
});
