import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import type { SagaStatus } from '../saga/state.js';
import type { SagaSummary } from '../saga/store.js';

/**
 * Read-only figures for the operator dashboard: what is stuck, what is failing, what is waiting.
 * Every query is bounded (grouped counts, one row, or a fixed number of time buckets), so the
 * overview stays cheap on a table of millions of sagas apart from the grouped count itself.
 */
export interface TypeStatusCount {
  readonly type: string;
  readonly status: SagaStatus;
  readonly n: number;
}

export interface OutcomeBucket {
  readonly at: Date;
  readonly completed: number;
  readonly compensated: number;
  readonly failed: number;
}

export interface OverviewFigures {
  readonly counts: readonly TypeStatusCount[];
  readonly series: readonly OutcomeBucket[];
  readonly deadLetters: readonly { readonly reasonCode: string; readonly consumer: string; readonly n: number }[];
  readonly oldestRunning: { readonly id: string; readonly type: string; readonly status: SagaStatus; readonly createdAt: Date } | null;
  readonly outbox: { readonly pending: number; readonly parked: number; readonly oldestAt: Date | null };
}

export const WINDOWS = { '1h': { ms: 3_600_000, bucket: 'minute', buckets: 60 }, '24h': { ms: 86_400_000, bucket: 'hour', buckets: 24 }, '7d': { ms: 7 * 86_400_000, bucket: 'day', buckets: 7 } } as const;
export type Window = keyof typeof WINDOWS;

export class OverviewQueries {
  readonly #s: string;
  constructor(schema: string) {
    this.#s = quoteSchema(schema);
  }

  async figures(db: Queryable, window: Window): Promise<OverviewFigures> {
    const w = WINDOWS[window];
    const [counts, series, dead, oldest, outbox] = await Promise.all([
      db.query<TypeStatusCount>(`SELECT saga_type AS "type", status, count(*)::int AS n FROM ${this.#s}.sagas GROUP BY 1, 2 ORDER BY 1, 2`),
      // Terminal sagas by the bucket they finished in; empty buckets are kept so the chart's x axis is even.
      db.query<OutcomeBucket>(
        `WITH b AS (
           SELECT generate_series(date_trunc($1, now()) - ($2::int - 1) * ('1 ' || $1)::interval, date_trunc($1, now()), ('1 ' || $1)::interval) AS at)
         SELECT b.at,
                count(*) FILTER (WHERE s.status = 'completed')::int AS completed,
                count(*) FILTER (WHERE s.status = 'compensated')::int AS compensated,
                count(*) FILTER (WHERE s.status = 'failed')::int AS failed
         FROM b LEFT JOIN ${this.#s}.sagas s
           ON s.finished_at >= b.at AND s.finished_at < b.at + ('1 ' || $1)::interval AND s.status IN ('completed', 'compensated', 'failed')
         GROUP BY b.at ORDER BY b.at`,
        [w.bucket, w.buckets],
      ),
      this.deadLettersWaiting(db),
      db.query<{ id: string; type: string; status: SagaStatus; createdAt: Date }>(
        `SELECT id, saga_type AS "type", status, created_at AS "createdAt" FROM ${this.#s}.sagas
         WHERE status IN ('running', 'compensating') ORDER BY created_at LIMIT 1`,
      ),
      db.query<{ pending: number; parked: number; oldestAt: Date | null }>(
        `SELECT count(*) FILTER (WHERE parked_at IS NULL)::int AS pending, count(*) FILTER (WHERE parked_at IS NOT NULL)::int AS parked,
                min(created_at) AS "oldestAt" FROM ${this.#s}.outbox`,
      ),
    ]);
    return { counts: counts.rows, series: series.rows, deadLetters: dead, oldestRunning: oldest.rows[0] ?? null, outbox: outbox.rows[0]! };
  }

  async deadLettersWaiting(db: Queryable): Promise<OverviewFigures['deadLetters']> {
    const { rows } = await db.query<{ reasonCode: string; consumer: string; n: number }>(
      `SELECT reason_code AS "reasonCode", consumer, count(*)::int AS n FROM ${this.#s}.dead_letters WHERE status = 'new' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2`,
    );
    return rows;
  }

  /**
   * Sagas whose id or correlation id is `term`. The correlation id lives in the engine state (no
   * index): an operator's lookup scans, which is acceptable for a search box, not for a hot path.
   */
  async search(db: Queryable, term: string, limit = 50): Promise<SagaSummary[]> {
    const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(term);
    const { rows } = await db.query<SagaSummary>(
      `SELECT id, saga_type AS "type", status, reason, version, tenant_id AS "tenantId",
              created_at AS "createdAt", updated_at AS "updatedAt", finished_at AS "finishedAt", wake_at AS "wakeAt"
       FROM ${this.#s}.sagas WHERE ${isUuid ? 'id = $3::uuid OR ' : ''}state->>'correlationId' = $1
       ORDER BY created_at DESC, id DESC LIMIT $2`,
      isUuid ? [term, limit, term.toLowerCase()] : [term, limit],
    );
    return rows;
  }
}
