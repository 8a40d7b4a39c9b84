import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SagaflowError } from '../errors.js';
import type { Logger } from '../log.js';
import { quoteSchema, type Db } from './db.js';

/**
 * Numbered plain-SQL migrations, each applied in its own transaction under an advisory lock, so
 * two workers starting together are safe. A database that already carries a migration this code
 * does not know is refused: running old code on a newer schema is how data gets corrupted.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

const FILE = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && existsSync(join(dir, 'migrations'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the sagaflow package root (package.json next to migrations/)');
    dir = parent;
  }
}

export function loadMigrations(dir = join(packageRoot(), 'migrations')): Migration[] {
  const migrations = readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .map((file) => {
      const m = FILE.exec(file);
      if (!m) throw new SagaflowError('MIGRATION_FAILED', `migration file name ${file} is not NNNN_name.sql`);
      const sql = readFileSync(join(dir, file), 'utf8');
      return { version: Number(m[1]), name: m[2]!, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new SagaflowError('MIGRATION_FAILED', `migrations must be numbered 1..n without gaps; found ${m.version} at ${i + 1}`);
  });
  return migrations;
}

export interface MigrateResult {
  readonly applied: number[];
  readonly current: number;
}

export async function migrate(db: Db, schema: string, opts: { logger?: Logger; migrations?: Migration[] } = {}): Promise<MigrateResult> {
  const q = quoteSchema(schema);
  const migrations = opts.migrations ?? loadMigrations();
  const client = await db.connect();
  let broken: Error | undefined;
  try {
    // A session lock, not a transaction lock: it must cover several transactions.
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [`sagaflow.migrate.${schema}`]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${q}.schema_migrations (
           version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ version: number; checksum: string; name: string }>(
        `SELECT version, checksum, name FROM ${q}.schema_migrations ORDER BY version`,
      );
      const known = new Map(migrations.map((m) => [m.version, m]));
      const newest = migrations.at(-1)?.version ?? 0;
      for (const row of rows) {
        const m = known.get(row.version);
        if (!m) {
          throw new SagaflowError(
            'SCHEMA_TOO_NEW',
            `schema ${schema} has migration ${row.version} (${row.name}) but this sagaflow knows only up to ${newest}; upgrade sagaflow`,
          );
        }
        if (m.checksum !== row.checksum) {
          throw new SagaflowError('MIGRATION_FAILED', `migration ${row.version}_${row.name} was changed after it was applied`);
        }
      }
      const done = new Set(rows.map((r) => r.version));
      const applied: number[] = [];
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        try {
          await client.query('BEGIN');
          await client.query(`SET LOCAL search_path TO ${q}, public`);
          await client.query(m.sql);
          await client.query(`INSERT INTO ${q}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, [m.version, m.name, m.checksum]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw new SagaflowError('MIGRATION_FAILED', `migration ${m.version}_${m.name} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(m.version);
        opts.logger?.info({ schema, version: m.version, migration: m.name }, 'migration applied');
      }
      return { applied, current: newest };
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`sagaflow.migrate.${schema}`]).catch((err: Error) => {
        broken = err;
      });
    }
  } finally {
    client.release(broken);
  }
}

/** Refuses to start a worker on a schema that is missing migrations or is newer than this code. */
export async function assertSchemaCurrent(db: Db, schema: string, migrations = loadMigrations()): Promise<void> {
  const q = quoteSchema(schema);
  const newest = migrations.at(-1)?.version ?? 0;
  let current = 0;
  try {
    const { rows } = await db.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${q}.schema_migrations`);
    current = rows[0]?.v ?? 0;
  } catch (err) {
    if ((err as { code?: string }).code === '42P01' || (err as { code?: string }).code === '3F000') current = 0;
    else throw err;
  }
  if (current > newest) {
    throw new SagaflowError('SCHEMA_TOO_NEW', `schema ${schema} is at migration ${current}, newer than this sagaflow (${newest}); upgrade sagaflow`);
  }
  if (current < newest) {
    throw new SagaflowError('MIGRATION_FAILED', `schema ${schema} is at migration ${current} of ${newest}; run \`sagaflow migrate\` first`);
  }
}
