import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { createDb, type Db } from '../../src/db/db.js';
import { migrate } from '../../src/db/migrate.js';

/**
 * A fresh, migrated schema for one test file (or one test), dropped afterwards unless the test
 * failed and SAGAFLOW_KEEP_SCHEMA=1 (then it is kept for inspection and its name printed).
 */
export interface TestDb {
  readonly db: Db;
  readonly schema: string;
  readonly url: string;
  drop(): Promise<void>;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

export function databaseUrl(): string {
  return inject('services').databaseUrl;
}

export async function createTestDb(opts: { migrate?: boolean; prefix?: string; pool?: number } = {}): Promise<TestDb> {
  const url = databaseUrl();
  const schema = uniqueName(opts.prefix ?? 'sf_test');
  const db = createDb({ connectionString: url, max: opts.pool ?? 6, applicationName: `sagaflow-test-${schema}` });
  if (opts.migrate ?? true) await migrate(db, schema);
  return {
    db,
    schema,
    url,
    async drop() {
      try {
        if (process.env.SAGAFLOW_KEEP_SCHEMA === '1') {
          console.log(`[sagaflow tests] kept schema ${schema}`);
        } else {
          await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        }
      } finally {
        await db.close();
      }
    },
  };
}

/** A plain client for assertions that must not share the pool under test. */
export async function adminClient(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: databaseUrl() });
  await c.connect();
  return c;
}
