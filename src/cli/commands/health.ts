import { assertSchemaCurrent } from '../../db/migrate.js';
import { createDb } from '../../db/db.js';
import { errorMessage } from '../../errors.js';
import { brokerUnreachable, createTransport } from '../../transport/create.js';
import type { CliContext } from '../context.js';

/**
 * A cheap liveness/readiness probe for containers: the config parses, Postgres answers within
 * its deadline, the schema is migrated to what this code knows, and (with --broker) the broker
 * accepts a connection. Exit 0 when healthy; 1 with one line on stderr otherwise.
 */
export async function healthCommand(ctx: CliContext, opts: { broker?: boolean }): Promise<void> {
  const { config } = ctx;
  const db = createDb({
    connectionString: config.databaseUrl,
    max: 1,
    connectionTimeoutMs: 3_000,
    statementTimeoutMs: 2_000,
    queryTimeoutMs: 3_000,
    applicationName: 'sagaflow-health',
    urlSetting: 'DATABASE_URL',
  });
  try {
    await db.query('SELECT 1');
    await assertSchemaCurrent(db, config.schema);
    if (opts.broker) {
      const transport = await Promise.race([
        createTransport(config, ctx.logger, { clientId: 'sagaflow-health' }),
        new Promise<never>((_, reject) => setTimeout(() => reject(brokerUnreachable(config, new Error('no answer within 5 s'))), 5_000).unref()),
      ]);
      await transport.close();
    }
  } catch (err) {
    throw new Error(`unhealthy: ${errorMessage(err)}`);
  } finally {
    await db.close();
  }
}
