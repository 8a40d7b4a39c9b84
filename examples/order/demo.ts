/**
 * `npm run demo -- --orders N [--transport memory|rabbitmq|kafka]`: migrates, runs the order saga
 * end to end with its three participants in this process, and ends with one JSON summary line.
 * Every 10th order fails at shipping, so 90% complete and 10% are compensated.
 */
import { parseArgs } from 'node:util';
import { createDb, createLogger, createTransport, createWorker, loadConfig, migrate, SagaStore, workerOptionsFrom } from '../../src/index.js';
import { devDatabase, stopOnSignals } from '../../src/local/embedded-postgres.js';
import { TERMINAL_STATUSES } from '../../src/saga/state.js';
import orderModule from './index.js';
import { makeOrders, publishOrders } from './run.js';

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        orders: { type: 'string', default: '100' },
        transport: { type: 'string' },
        'fail-every': { type: 'string', default: '10' },
        'timeout-s': { type: 'string', default: '300' },
        quiet: { type: 'boolean', default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\nusage: npm run demo -- --orders N [--transport memory|rabbitmq|kafka]\n`);
    return 2;
  }
  const n = Number(args.orders);
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000) {
    process.stderr.write(`demo: --orders must be a positive integer, got ${args.orders}\n`);
    return 2;
  }
  // No DATABASE_URL: a real embedded PostgreSQL (kept under ~/.cache/sagaflow), stopped at exit.
  const database = await devDatabase(process.env);
  process.stderr.write(`demo: ${database.describe}\n`);
  if (database.embedded) stopOnSignals(database.embedded);
  const config = loadConfig(process.env, {
    DATABASE_URL: database.url,
    ...(args.transport ? { SAGAFLOW_TRANSPORT: args.transport as 'memory' } : {}),
  });
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });
  const db = createDb({ connectionString: config.databaseUrl, max: config.dbPool, logger, applicationName: 'sagaflow-demo' });
  const mod = orderModule({ env: process.env });
  const transport = await createTransport(config, logger, { clientId: 'sagaflow-demo' });
  const worker = createWorker({
    db,
    transport,
    module: mod,
    logger,
    options: workerOptionsFrom(config),
  });
  const sagas = new SagaStore(config.schema);
  try {
    await migrate(db, config.schema, { logger });
    await mod.migrate?.(db);
    await worker.start();
    const started = Date.now();
    const ids = new Set<string>();
    let terminal = 0;
    worker.events.on('transition', (t) => {
      if (TERMINAL_STATUSES.has(t.status) && ids.delete(t.sagaId)) terminal++;
    });
    const orders = makeOrders(n, { failEvery: Number(args['fail-every']) });
    const sagaIds = await publishOrders(transport.publisher, orders, { schema: config.schema });
    for (const id of sagaIds) ids.add(id);
    const deadline = started + Number(args['timeout-s']) * 1000;
    // Progress from worker events; the final figures come from the database, the source of truth.
    while (terminal < n && Date.now() < deadline) {
      if (!args.quiet) process.stderr.write(`\rdemo: ${terminal}/${n} sagas finished (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      await new Promise((r) => setTimeout(r, 250));
    }
    if (!args.quiet) process.stderr.write("\n");
    if (process.env.DEMO_STATS) process.stderr.write(JSON.stringify(worker.stats()) + "\n");
    const counts = await sagas.countByStatus(db, sagaIds);
    const seconds = Number(((Date.now() - started) / 1000).toFixed(2));
    process.stdout.write(
      `${JSON.stringify({ orders: n, completed: counts.completed, compensated: counts.compensated, failed: counts.failed, seconds })}\n`,
    );
    return counts.completed + counts.compensated + counts.failed === n ? 0 : 1;
  } finally {
    await worker.stop();
    await transport.close();
    await db.close();
    await database.embedded?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
