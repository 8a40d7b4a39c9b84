import { UsageError } from '../../errors.js';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { buildAdminServer } from '../../http/server.js';
import { Metrics } from '../../observability/metrics.js';
import { transitionSettings } from '../../transaction/transitions.js';
import type { CliContext } from '../context.js';
import { moduleRegistry } from '../../module.js';
import { loadModule } from '../module-loader.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * `sagaflow serve`: the admin HTTP API on SAGAFLOW_ADMIN_HOST:SAGAFLOW_ADMIN_PORT (flags override),
 * authenticated with SAGAFLOW_ADMIN_TOKENS. It listens whether or not the database answers yet:
 * /healthz says it is alive, /readyz answers 503 with the reason (and the API routes 503) until the
 * database answers with a current schema, so an orchestrator can start everything in any order.
 * Prints one JSON line when it listens, and on SIGTERM/SIGINT stops accepting connections, lets
 * requests in flight finish, and exits 0.
 */
export async function serveCommand(ctx: CliContext, opts: { module: string; host?: string; port?: string }): Promise<void> {
  const { config, logger } = ctx;
  const port = opts.port === undefined ? config.adminPort : parsePort(opts.port);
  const host = opts.host ?? config.adminHost;
  const mod = await loadModule(opts.module, process.env);
  const db = ctx.db();
  // The admin service's /metrics: the database-backed gauges (outbox backlog, timer lag) and its
  // own pool and process; the message-path counters are the workers' (each serves its own).
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Metrics(registry, { db, schema: config.schema });
  const app = buildAdminServer({
    metrics: registry,
    db,
    schema: config.schema,
    sagas: mod.sagas ?? [],
    messages: moduleRegistry(mod).all(),
    tokens: config.adminTokens,
    logger,
    transitions: transitionSettings(config),
  });
  if (!LOOPBACK.has(host)) {
    logger.warn({ host }, 'admin API listens beyond loopback over plain HTTP: put a TLS-terminating proxy in front of it');
  }

  let closing: Promise<void> | undefined;
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  const stop = (signal: string) => {
    if (closing) {
      logger.warn({ signal }, 'second signal: exiting without waiting for requests in flight');
      process.exit(130);
    }
    logger.info({ signal }, 'admin API closing');
    closing = app.close().then(closed, (err: unknown) => {
      logger.error({ err: (err as Error).message }, 'admin API did not close cleanly');
      closed();
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  const url = await app.listen({ host, port });
  process.stdout.write(`${JSON.stringify({ event: 'admin-listening', url, pid: process.pid, tokens: config.adminTokens.length })}\n`);
  await done;
}

export function parsePort(s: string): number {
  const n = Number(s);
  if (!/^\d{1,5}$/.test(s) || n > 65535) throw new UsageError(`--port must be an integer from 0 to 65535, got ${s}`);
  return n;
}
