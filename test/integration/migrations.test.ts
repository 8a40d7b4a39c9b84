/**
 * The migration runner against a real Postgres (docs/architecture.md, "Where things are kept"):
 * - `migrate()` applies 0001 exactly once and a second run applies nothing;
 * - four `migrate()` calls racing on a fresh schema (four pools, as four processes would) all
 *   succeed and the schema is migrated exactly once (the advisory lock serialises them);
 * - a schema that carries a migration this code does not know is refused with SCHEMA_TOO_NEW, by
 *   `migrate()` and by `assertSchemaCurrent()`, which also refuses a schema never migrated;
 * - a migration whose text changed after it was applied (checksum mismatch) is refused.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db/db.js';
import { assertSchemaCurrent, loadMigrations, migrate } from '../../src/db/migrate.js';
import { SagaflowError } from '../../src/errors.js';
import { createTestDb, databaseUrl, uniqueName, type TestDb } from '../helpers/db.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function freshSchema(): Promise<TestDb> {
  const t = await createTestDb({ migrate: false, prefix: 'sf_mig' });
  cleanups.push(() => t.drop());
  return t;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SagaflowError);
    return (err as SagaflowError).code;
  }
  throw new Error('expected a rejection, the call succeeded');
}

async function tables(db: Db, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
    [schema],
  );
  return rows.map((r) => r.table_name);
}

async function migrationRows(db: Db, schema: string): Promise<{ version: number; name: string; checksum: string }[]> {
  const { rows } = await db.query<{ version: number; name: string; checksum: string }>(
    `SELECT version, name, checksum FROM "${schema}".schema_migrations ORDER BY version`,
  );
  return rows;
}

describe('migrate()', () => {
  const known = loadMigrations();
  const newest = known.at(-1)!.version;

  it('applies 0001 once on a fresh schema; a second run applies nothing', async () => {
    const { db, schema } = await freshSchema();
    expect(known[0]).toMatchObject({ version: 1, name: 'core' });

    const first = await migrate(db, schema);
    expect(first.applied).toEqual(known.map((m) => m.version));
    expect(first.current).toBe(newest);
    // 0001's tables (later migrations may add more; each is applied once, checked below).
    expect(await tables(db, schema)).toEqual(expect.arrayContaining(['dead_letters', 'inbox', 'outbox', 'saga_steps', 'sagas', 'schema_migrations']));
    const rows = await migrationRows(db, schema);
    expect(rows).toEqual(known.map((m) => ({ version: m.version, name: m.name, checksum: m.checksum })));

    const second = await migrate(db, schema);
    expect(second).toEqual({ applied: [], current: newest });
    expect(await migrationRows(db, schema)).toEqual(rows);
    await expect(assertSchemaCurrent(db, schema)).resolves.toBeUndefined();
  });

  it('four concurrent migrate() calls on a fresh schema all succeed and migrate it exactly once', async () => {
    const { db, schema } = await freshSchema();
    // Four pools, as four worker processes starting together would have.
    const pools = Array.from({ length: 4 }, (_, i) => createDb({ connectionString: databaseUrl(), max: 2, applicationName: `sf-mig-race-${i}` }));
    cleanups.push(async () => {
      await Promise.all(pools.map((p) => p.close()));
    });
    const results = await Promise.all(pools.map((p) => migrate(p, schema)));

    // Exactly one caller applied each migration; the others found it done.
    const applied = results.flatMap((r) => r.applied).sort((a, b) => a - b);
    expect(applied).toEqual(known.map((m) => m.version));
    expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
    for (const r of results) expect(r.current).toBe(newest);
    expect(await migrationRows(db, schema)).toHaveLength(known.length);
    expect(await tables(db, schema)).toContain('sagas');
    await expect(assertSchemaCurrent(db, schema)).resolves.toBeUndefined();
  });

  it('refuses a schema that has a migration newer than this code (SCHEMA_TOO_NEW)', async () => {
    const { db, schema } = await freshSchema();
    await migrate(db, schema);
    await db.query(`INSERT INTO "${schema}".schema_migrations (version, name, checksum) VALUES ($1, 'from_the_future', 'x')`, [newest + 1]);

    expect(await codeOf(migrate(db, schema))).toBe('SCHEMA_TOO_NEW');
    expect(await codeOf(assertSchemaCurrent(db, schema))).toBe('SCHEMA_TOO_NEW');
    // Nothing was touched by the refused run.
    expect((await migrationRows(db, schema)).map((r) => r.version)).toEqual([...known.map((m) => m.version), newest + 1]);
  });

  it('assertSchemaCurrent refuses a schema that was never migrated, or does not exist', async () => {
    const { db, schema } = await freshSchema();
    expect(await codeOf(assertSchemaCurrent(db, schema))).toBe('MIGRATION_FAILED');
    // A schema that exists but has an empty schema_migrations table is just as unmigrated.
    await db.query(`CREATE SCHEMA "${schema}"`);
    await db.query(`CREATE TABLE "${schema}".schema_migrations (version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL)`);
    expect(await codeOf(assertSchemaCurrent(db, schema))).toBe('MIGRATION_FAILED');
    expect(await codeOf(assertSchemaCurrent(db, uniqueName('sf_absent')))).toBe('MIGRATION_FAILED');
  });

  it('refuses a migration whose text changed after it was applied (checksum mismatch)', async () => {
    const { db, schema } = await freshSchema();
    await migrate(db, schema);
    // The file changed on disk: same version and name, other text.
    const edited = known.map((m, i) => (i === 0 ? { ...m, sql: `${m.sql}\n-- edited`, checksum: 'f'.repeat(64) } : m));
    const err = await migrate(db, schema, { migrations: edited }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SagaflowError);
    expect((err as SagaflowError).code).toBe('MIGRATION_FAILED');
    expect((err as Error).message).toMatch(/migration 1_core was changed after it was applied/);

    // The same refusal when the stored checksum is the one that differs.
    await db.query(`UPDATE "${schema}".schema_migrations SET checksum = 'tampered' WHERE version = 1`);
    expect(await codeOf(migrate(db, schema))).toBe('MIGRATION_FAILED');
  });
});

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
