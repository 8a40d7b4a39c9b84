/**
 * What the bench's Postgres backends wait on, sampled while a phase runs: lock contention between
 * worker processes (several orchestrators on the same sagas) shows as `Lock:*` waits and as lock
 * requests not granted. Only backends whose current or last query names the bench's schema are
 * counted: the database is shared with other runs.
 */
import type { Db } from '../src/db/db.js';

export interface WaitSummary {
  readonly samples: number;
  /** Mean number of the bench's backends running a query (state 'active') per sample. */
  readonly activeMean: number;
  /** Mean number of those that were waiting on a lock (wait_event_type 'Lock'). */
  readonly lockWaitingMean: number;
  /** Lock requests not granted, summed over the samples, by lock type (transactionid, tuple, relation...). */
  readonly notGranted: Record<string, number>;
  /** Active backends seen per wait event (`type:event`, or `cpu` for none), summed over the samples. */
  readonly events: Record<string, number>;
  /** The statements seen waiting on a lock (first words, schema names cut), summed over the samples. */
  readonly lockedStatements: Record<string, number>;
}

export class WaitSampler {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #samples = 0;
  #active = 0;
  #lockWaiting = 0;
  readonly #notGranted: Record<string, number> = {};
  readonly #events: Record<string, number> = {};
  readonly #locked: Record<string, number> = {};

  constructor(
    private readonly db: Db,
    private readonly schema: string,
    private readonly everyMs = 250,
  ) {}

  start(): void {
    this.#timer = setInterval(() => {
      // One sample at a time: a slow database must not pile the sampler's own queries up.
      this.#running ??= this.#sample().finally(() => (this.#running = undefined));
    }, this.everyMs);
  }

  async stop(): Promise<WaitSummary> {
    clearInterval(this.#timer);
    await this.#running;
    const n = Math.max(1, this.#samples);
    return {
      samples: this.#samples,
      activeMean: round(this.#active / n),
      lockWaitingMean: round(this.#lockWaiting / n),
      notGranted: this.#notGranted,
      events: this.#events,
      lockedStatements: this.#locked,
    };
  }

  async #sample(): Promise<void> {
    // Matches the core schema and the example's (`<schema>_ex`) alike.
    const like = `%${this.schema}%`;
    const [act, locks, locked] = await Promise.all([
      this.db.query<{ ev: string; n: number }>(
        `SELECT coalesce(wait_event_type || ':' || wait_event, 'cpu') AS ev, count(*)::int AS n
           FROM pg_stat_activity
          WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE $1
          GROUP BY 1`,
        [like],
      ),
      this.db.query<{ locktype: string; n: number }>(
        `SELECT l.locktype, count(*)::int AS n
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE NOT l.granted AND a.query LIKE $1
          GROUP BY 1`,
        [like],
      ),
      this.db.query<{ q: string; n: number }>(
        `SELECT left(regexp_replace(regexp_replace(query, '"[a-z0-9_]+"\\.', '', 'g'), '\\s+', ' ', 'g'), 70) AS q, count(*)::int AS n
           FROM pg_stat_activity
          WHERE state = 'active' AND wait_event_type = 'Lock' AND query LIKE $1
          GROUP BY 1`,
        [like],
      ),
    ]).catch(() => [{ rows: [] }, { rows: [] }, { rows: [] }] as const);
    this.#samples++;
    for (const r of act.rows) {
      this.#active += r.n;
      if (r.ev.startsWith('Lock:')) this.#lockWaiting += r.n;
      this.#events[r.ev] = (this.#events[r.ev] ?? 0) + r.n;
    }
    for (const r of locked.rows) this.#locked[r.q] = (this.#locked[r.q] ?? 0) + r.n;
    for (const r of locks.rows) this.#notGranted[r.locktype] = (this.#notGranted[r.locktype] ?? 0) + r.n;
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
