import { randomBytes } from 'node:crypto';
import { createDb } from '../../db/db.js';
import { migrate } from '../../db/migrate.js';
import { errorMessage } from '../../errors.js';
import { buildAdminServer } from '../../http/server.js';
import { devDatabase, type EmbeddedPostgres } from '../../local/embedded-postgres.js';
import { moduleRegistry } from '../../module.js';
import { transitionSettings } from '../../transaction/transitions.js';
import { createTransport } from '../../transport/create.js';
import { createWorker, workerOptionsFrom } from '../../worker/worker.js';
import type { CliContext } from '../context.js';
import { loadModule } from '../module-loader.js';
import { parsePort } from './serve.js';

/**
 * `sagaflow dev --module <file>`: everything in one process for local development. A database
 * (DATABASE_URL, else an embedded PostgreSQL under ~/.cache/sagaflow), the configured transport
 * (memory unless --transport or SAGAFLOW_TRANSPORT say otherwise), migrations, the module's sagas
 * and participants, and the admin API on localhost with a one-time admin token, printed together
 * with what was started where. Messages are published through the admin API (POST /v1/messages),
 * which reaches this process's memory transport through the outbox relay. Ctrl-C (or SIGTERM)
 * stops the API, drains the worker, closes the transport and the pool, then the embedded database.
 *
 * Only for development: the production commands (worker, migrate, serve) never start a database.
 */
export async function devCommand(ctx: CliContext, opts: { module: string; host?: string; port?: string }): Promise<void> {
  const { logger } = ctx;
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const port = opts.port === undefined ? ctx.config.adminPort : parsePort(opts.port);
  const host = opts.host ?? '127.0.0.1';
  const mod = await loadModule(opts.module, process.env);
  const database = await devDatabase(process.env);
  const embedded: EmbeddedPostgres | undefined = database.embedded;
  const config = { ...ctx.config, databaseUrl: database.url ?? ctx.config.databaseUrl };
  // Stop the embedded server whatever happens during start-up: no server outlives a failed start.
  const cleanup: (() => Promise<void>)[] = [async () => embedded?.stop()];
  const unwind = async () => {
    for (const step of cleanup.splice(0).reverse()) await step().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'dev: shutdown step failed'));
  };
  let stopping: Promise<void> | undefined;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: stopping the embedded database and exiting without draining');
      void (embedded?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
      return;
    }
    out(`dev: ${signal}: stopping`);
    stopping = unwind();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  try {
    const db = createDb({ connectionString: config.databaseUrl, max: config.dbPool, logger, applicationName: 'sagaflow-dev', urlSetting: 'DATABASE_URL' });
    cleanup.push(() => db.close());
    await migrate(db, config.schema, { logger });
    await mod.migrate?.(db);
    const transport = await createTransport(config, logger, { clientId: 'sagaflow-dev' });
    cleanup.push(() => transport.close());
    const worker = createWorker({ db, transport, module: mod, logger, options: workerOptionsFrom(config) });
    await worker.start();
    cleanup.push(() => worker.stop());
    const token = randomBytes(24).toString('base64url');
    const app = buildAdminServer({
      db,
      schema: config.schema,
      sagas: mod.sagas ?? [],
      messages: moduleRegistry(mod).all(),
      tokens: [...config.adminTokens, { name: 'dev', token, role: 'admin' }],
      logger,
      transitions: transitionSettings(config),
    });
    cleanup.push(() => app.close());
    const url = await app.listen({ host, port });
    const sagas = (mod.sagas ?? []).map((s) => s.name);
    const participants = (mod.participants ?? []).map((p) => p.name);
    out(`dev: database   ${database.describe}`);
    out(`dev: schema     ${config.schema}, migrations applied`);
    out(`dev: transport  ${config.transport}`);
    out(`dev: running    sagas [${sagas.join(', ')}], participants [${participants.join(', ')}]`);
    out(`dev: admin API  ${url}  (token for this run only: ${token})`);
    out(`dev: publish    curl -H 'authorization: Bearer ${token}' -H 'content-type: application/json' ${url}/v1/messages -d '{"type":"...","payload":{...}}'`);
    out(`dev: Ctrl-C stops everything`);
    out(
      JSON.stringify({
        event: 'dev-ready',
        url,
        token,
        pid: process.pid,
        transport: config.transport,
        schema: config.schema,
        sagas,
        participants,
        database: embedded ? { embedded: true, port: embedded.port, dataDir: embedded.dataDir, pid: embedded.pid, cold: embedded.cold, startMs: embedded.startMs } : { embedded: false },
      }),
    );
  } catch (err) {
    await unwind();
    throw err;
  }
  await new Promise<void>((resolve) => {
    const wait = () => (stopping ? void stopping.then(resolve) : setTimeout(wait, 50));
    wait();
  });
  out(`dev: stopped${embedded ? ` (embedded PostgreSQL on port ${embedded.port} stopped)` : ''}`);
}
