import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../helpers/db.js';

/**
 * db.transaction() sends BEGIN without waiting for its answer (the connection pipelines it with
 * the first statement) and lets a transaction issue several statements at once. These tests prove
 * the statements still run inside the transaction: a throw after the first write leaves nothing.
 */
let t: TestDb;
let table: string;

beforeAll(async () => {
  t = await createTestDb({ migrate: false, prefix: 'sf_dbtx', pool: 2 });
  await t.db.query(`CREATE SCHEMA "${t.schema}"`);
  table = `"${t.schema}".items`;
  await t.db.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
});
afterAll(async () => t?.drop());

async function ids(): Promise<number[]> {
  const { rows } = await t.db.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`);
  return rows.map((r) => r.id);
}

describe('db.transaction with a pipelined BEGIN', () => {
  it('rolls back the first statement when the work throws after it', async () => {
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} VALUES (1)`);
        throw new Error('work failed');
      }),
    ).rejects.toThrow('work failed');
    expect(await ids()).toEqual([]);
  });

  it('rolls back everything when a statement fails, and the pool connection stays usable', async () => {
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} VALUES (2)`);
        await tx.query(`INSERT INTO ${table} VALUES (2)`); // duplicate key
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await ids()).toEqual([]);
    // Both pooled connections, one after the other, still work in transactions.
    for (const id of [3, 4]) await t.db.transaction((tx) => tx.query(`INSERT INTO ${table} VALUES ($1)`, [id]));
    expect(await ids()).toEqual([3, 4]);
  });

  it('runs statements issued together in issue order, in the one transaction', async () => {
    const [a, b] = await t.db.transaction(async (tx) =>
      Promise.all([
        tx.query(`INSERT INTO ${table} VALUES (5) RETURNING txid_current() AS x`),
        tx.query<{ x: string; n: number }>(`SELECT txid_current() AS x, count(*)::int AS n FROM ${table} WHERE id = 5`),
      ]),
    );
    expect(b.rows[0]!.x).toBe((a.rows[0] as { x: string }).x);
    expect(b.rows[0]!.n).toBe(1);
  });

  it('a failing statement issued together with another fails the transaction, not only itself', async () => {
    await expect(
      t.db.transaction(async (tx) => Promise.all([tx.query(`INSERT INTO ${table} VALUES (6)`), tx.query(`INSERT INTO ${table} VALUES (5)`)])),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await ids()).toEqual([3, 4, 5]);
  });
});
