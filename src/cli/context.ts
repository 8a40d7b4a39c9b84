import { createDb, type Db } from '../db/db.js';
import { loadConfig, type Config } from '../config.js';
import { createLogger, type Logger } from '../log.js';

/** What every command builds first: config from env (plus flags), a logger, lazily a database. */
export interface CliContext {
  readonly config: Config;
  readonly logger: Logger;
  db(): Db;
  close(): Promise<void>;
}

export function createContext(overrides: { schema?: string; transport?: string } = {}, appName = 'sagaflow-cli'): CliContext {
  const config = loadConfig(process.env, {
    ...(overrides.schema ? { SAGAFLOW_SCHEMA: overrides.schema } : {}),
    ...(overrides.transport ? { SAGAFLOW_TRANSPORT: overrides.transport as Config['transport'] } : {}),
  });
  const logger = createLogger({ level: config.logLevel });
  let db: Db | undefined;
  return {
    config,
    logger,
    db: () => (db ??= createDb({ connectionString: config.databaseUrl, max: config.dbPool, logger, applicationName: appName, urlSetting: 'DATABASE_URL' })),
    async close() {
      await db?.close();
      logger.flush();
    },
  };
}
