import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../helpers/db.js';

/**
 * db.transaction() sends BEGIN without waiting for its answer (the connection pipelines it with
 * the first statement) and lets a transaction issue several statements at once. These tests prove
 * the statements still run inside the transaction: a throw after the first write leaves nothing.
 * `tx.queryAndCommit` sends the last statement and COMMIT together: a failing last statement keeps
 * nothing of the transaction, and nothing can be issued after it.
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

  it('queryAndCommit: the last statement and COMMIT in one round trip; its failure keeps nothing of the transaction', async () => {
    await t.db.query(`DELETE FROM ${table}`);
    const r = await t.db.transaction(async (tx) => {
      await tx.query(`INSERT INTO ${table} VALUES (10)`);
      return tx.queryAndCommit<{ n: number }>(`INSERT INTO ${table} VALUES (11) RETURNING id AS n`);
    });
    expect(r.rows[0]!.n).toBe(11);
    expect(await ids()).toEqual([10, 11]);
    // The last statement fails: the COMMIT behind it finds the transaction aborted and rolls back.
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} VALUES (12)`);
        return tx.queryAndCommit(`INSERT INTO ${table} VALUES (10)`); // duplicate key
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await ids()).toEqual([10, 11]);
    // Its error caught by the work, which goes on as if all were well: the caller still learns of the rollback.
    await expect(
      t.db.transaction(async (tx) => {
        await tx.query(`INSERT INTO ${table} VALUES (13)`);
        await tx.queryAndCommit(`INSERT INTO ${table} VALUES (10)`).catch(() => undefined);
        return 'done';
      }),
    ).rejects.toThrow(/rolled back at COMMIT/);
    expect(await ids()).toEqual([10, 11]);
    // Nothing may run after the commit was sent.
    await expect(
      t.db.transaction(async (tx) => {
        await tx.queryAndCommit(`INSERT INTO ${table} VALUES (14)`);
        await tx.query(`INSERT INTO ${table} VALUES (15)`);
      }),
    ).rejects.toThrow(/after the transaction's commit/);
    expect(await ids()).toEqual([10, 11, 14]);
    // The pooled connections are clean afterwards.
    for (const id of [16, 17]) await t.db.transaction((tx) => tx.queryAndCommit(`INSERT INTO ${table} VALUES ($1)`, [id]));
    expect(await ids()).toEqual([10, 11, 14, 16, 17]);
  });
});
