/** Sizes of the hot tables of one schema: what retention has to keep bounded over a long run. */
import type { Db } from '../src/db/db.js';
import { quoteSchema } from '../src/db/db.js';

/** The tables that grow with every saga (audit_log is the `audit` of the docs). */
export const HOT_TABLES = ['sagas', 'saga_steps', 'saga_inputs', 'inbox', 'outbox', 'dead_letters', 'audit_log'] as const;
export type HotTable = (typeof HOT_TABLES)[number];

export interface TableSize {
  readonly rows: number;
  /** pg_total_relation_size: heap, indexes and TOAST. Deleted rows keep their space until vacuum reuses it. */
  readonly bytes: number;
  /** Dead rows not yet vacuumed (pg_stat_user_tables, updated with a delay): why bytes lag behind rows. */
  readonly dead: number;
}
export type TableSizes = Record<HotTable, TableSize>;

/** Exact row counts (count(*): cheap at bench sizes) and total sizes, read in one snapshot. */
export async function tableSizes(db: Db, schema: string): Promise<TableSizes> {
  const s = quoteSchema(schema);
  const sql = HOT_TABLES.map(
    (t) =>
      `SELECT '${t}' AS t, (SELECT count(*) FROM ${s}.${t})::bigint AS rows, pg_total_relation_size('${s}.${t}')::bigint AS bytes, ` +
      `(SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '${s}.${t}'::regclass)::bigint AS dead`,
  ).join(' UNION ALL ');
  const { rows } = await db.query<{ t: HotTable; rows: string; bytes: string; dead: string | null }>(sql);
  const out = {} as Record<HotTable, TableSize>;
  for (const r of rows) out[r.t] = { rows: Number(r.rows), bytes: Number(r.bytes), dead: Number(r.dead ?? 0) };
  return out;
}

/** One line per table: rows, MiB and dead rows, side by side for each snapshot given. */
export function formatTableSizes(snapshots: readonly { label: string; sizes: TableSizes }[]): string {
  const head = `${'table'.padEnd(14)}${snapshots.map((x) => x.label.padStart(30)).join('')}\n`;
  const lines = HOT_TABLES.map((t) => {
    const z = snapshots.map((x) => x.sizes[t]);
    const cells = z.map((c) => `${c.rows} / ${(c.bytes / 2 ** 20).toFixed(1)} MiB / ${c.dead}`.padStart(30));
    return `${t.padEnd(14)}${cells.join('')}\n`;
  });
  return head + lines.join('');
}

/**
 * VACUUMs the tables a run churns every `everyMs`, as autovacuum would on a production server
 * (this bench's server may have it off): without it the dead row versions of every step pile up in
 * the indexes the workers walk, and a long burst measures the missing vacuum instead of the worker.
 */
export function vacuumLoop(db: Db, schema: string, everyMs: number): { stop(): Promise<{ rounds: number; failed: string[] }> } {
  let rounds = 0;
  const failed: string[] = [];
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const tables = ['sagas', 'outbox', 'inbox', 'gate_slots', 'saga_steps'];
  const timer = setInterval(() => {
    running = running.then(async () => {
      if (stopped) return;
      // A failed VACUUM is reported at the end (the figures would mislead without it), never thrown
      // into a timer where nothing awaits it.
      for (const t of tables) await db.query(`VACUUM ${quoteSchema(schema)}.${t}`).catch((err: unknown) => failed.push(`${t}: ${(err as Error).message}`));
      rounds++;
    });
  }, everyMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      return { rounds, failed };
    },
  };
}
