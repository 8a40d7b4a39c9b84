import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { Db } from '../db/db.js';
import { assertSchemaCurrent, loadMigrations } from '../db/migrate.js';
import { SagaflowError, errorMessage, isSystemicDbError } from '../errors.js';
import type { Logger } from '../log.js';
import { watchBroker } from './broker-state.js';

/**
 * The worker's operations endpoint (SAGAFLOW_HEALTH_PORT; 0 = off):
 *   GET /healthz  liveness: 200 while the event loop turns; 503 when its ticker ran late by more than
 *                 `stuckMs` (a loop blocked that long is not doing its work; a loop blocked for good
 *                 cannot answer at all, and the probe's own timeout says so)
 *   GET /readyz   readiness: 200 when the database answers, its schema is the one this code expects,
 *                 the broker is connected and every consumer consumes; else 503 with the reason
 *   GET /metrics  Prometheus text format of the worker's registry
 * Plain node:http, no framework: it must keep answering while the worker is busy, and it is three
 * read-only routes. The answers say what is wrong but never an address or a credential.
 */

export interface ProbeResult {
  readonly ok: boolean;
  readonly reason: string | null;
}

export interface Liveness {
  probe(): ProbeResult & { readonly eventLoopLagMs: number };
  stop(): void;
}

/** Ticks every `tickMs`; the lag is how late the latest tick is (or was). */
export function watchEventLoop(opts: { tickMs?: number; stuckMs?: number } = {}): Liveness {
  const tickMs = opts.tickMs ?? 500;
  const stuckMs = opts.stuckMs ?? 10_000;
  let last = Date.now();
  let lastLag = 0;
  const timer = setInterval(() => {
    const now = Date.now();
    lastLag = Math.max(0, now - last - tickMs);
    last = now;
  }, tickMs);
  timer.unref();
  return {
    probe() {
      // The tick that has not run yet counts too: a starved timer phase shows here before it runs.
      const lag = Math.max(lastLag, Date.now() - last - tickMs, 0);
      return lag > stuckMs ? { ok: false, reason: `event loop stalled for ${lag} ms`, eventLoopLagMs: lag } : { ok: true, reason: null, eventLoopLagMs: lag };
    },
    stop: () => clearInterval(timer),
  };
}

export interface WorkerReadiness {
  probe(): Promise<ProbeResult>;
  dispose(): void;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** What may be said to anyone about the database: its schema state, or that it is unavailable. */
function dbReason(err: unknown): string {
  if (err instanceof SagaflowError && (err.code === 'MIGRATION_FAILED' || err.code === 'SCHEMA_TOO_NEW')) return err.message;
  if ((err instanceof SagaflowError && err.code === 'SYSTEMIC') || isSystemicDbError(err) || /did not answer/.test(errorMessage(err))) return 'the database is unavailable';
  return 'the database check failed (the worker log says why)';
}

/**
 * Readiness of a worker: checked when probed (at most once per `cacheMs`, concurrent probes share
 * one check), so a lost database or broker shows at the next probe and recovery likewise, with no
 * state to get stuck in.
 */
export function workerReadiness(deps: {
  db: Db;
  schema: string;
  transport: object;
  started: () => boolean;
  logger: Logger;
  dbTimeoutMs?: number;
  cacheMs?: number;
}): WorkerReadiness {
  const broker = watchBroker(deps.transport);
  // Read from disk once: a probe every few seconds need not list the migrations folder each time.
  const migrations = loadMigrations();
  let cached: { at: number; result: ProbeResult } | undefined;
  let inflight: Promise<ProbeResult> | undefined;
  let logged: string | null = null;
  const check = async (): Promise<ProbeResult> => {
    if (!deps.started()) return { ok: false, reason: 'worker starting' };
    const brokerProblem = broker.problem();
    if (brokerProblem) return { ok: false, reason: brokerProblem };
    try {
      await withTimeout(assertSchemaCurrent(deps.db, deps.schema, migrations), deps.dbTimeoutMs ?? 2000, 'the database');
    } catch (err) {
      if (logged !== errorMessage(err)) deps.logger.warn({ err: errorMessage(err) }, 'worker not ready: database check failed');
      logged = errorMessage(err);
      return { ok: false, reason: dbReason(err) };
    }
    logged = null;
    return { ok: true, reason: null };
  };
  return {
    probe() {
      if (cached && Date.now() - cached.at < (deps.cacheMs ?? 500)) return Promise.resolve(cached.result);
      inflight ??= check()
        .then((result) => {
          cached = { at: Date.now(), result };
          return result;
        })
        .finally(() => (inflight = undefined));
      return inflight;
    },
    dispose: () => broker.dispose(),
  };
}

export interface OpsServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string, type = 'application/json'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
}

/** Serves /healthz, /readyz and /metrics on host:port (port 0 = any free port, for tests). */
export async function startOpsServer(opts: {
  host: string;
  port: number;
  registry?: Registry;
  liveness: Liveness;
  readiness?: WorkerReadiness;
  logger: Logger;
}): Promise<OpsServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, JSON.stringify({ error: 'method not allowed' }));
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      const p = opts.liveness.probe();
      return send(res, p.ok ? 200 : 503, JSON.stringify({ ok: p.ok, reason: p.reason, eventLoopLagMs: p.eventLoopLagMs }));
    }
    if (path === '/readyz') {
      const p = opts.readiness ? await opts.readiness.probe() : { ok: true, reason: null };
      return send(res, p.ok ? 200 : 503, JSON.stringify({ ready: p.ok, reason: p.reason }));
    }
    if (path === '/metrics' && opts.registry) {
      return send(res, 200, await opts.registry.metrics(), opts.registry.contentType);
    }
    return send(res, 404, JSON.stringify({ error: 'not found' }));
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      opts.logger.warn({ err: errorMessage(err), url: req.url }, 'ops endpoint failed');
      if (!res.headersSent) send(res, 500, JSON.stringify({ error: 'internal error' }));
      else res.end();
    });
  });
  // Probes must never keep a draining worker alive.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;
  opts.logger.info({ url }, 'ops endpoint listening (/healthz, /readyz, /metrics)');
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
