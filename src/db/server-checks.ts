import type { Queryable } from './db.js';

/**
 * Server settings a worker depends on without being able to change them, checked once at start so
 * an operator learns of them from the log rather than from a slow-down weeks later.
 */
export async function serverWarnings(db: Queryable): Promise<string[]> {
  const out: string[] = [];
  const { rows } = await db.query<{ autovacuum: string; track_counts: string }>(
    `SELECT current_setting('autovacuum') AS autovacuum, current_setting('track_counts') AS track_counts`,
  );
  const s = rows[0];
  // Every step rewrites its saga row, every message inserts and deletes outbox and inbox rows: with
  // no vacuum the dead rows pile up in the tables and their indexes, and the lookups that walk the
  // front of an index (due timers, a bulkhead's queue) slow down with every saga that went through.
  if (s && (s.autovacuum !== 'on' || s.track_counts !== 'on')) {
    out.push(
      `autovacuum is ${s.autovacuum === 'on' ? 'on but track_counts is off (so it never starts)' : 'off'} on this Postgres server: ` +
        'the hot tables (sagas, outbox, inbox, gate_slots) keep their dead rows and slow down as sagas go through; turn it on, or VACUUM them on a schedule',
    );
  }
  return out;
}
