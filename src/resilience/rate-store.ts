import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';

export interface BucketSpec {
  readonly gate: string;
  /** '' for the gate's own bucket. */
  readonly tenant: string;
  readonly perSecond: number;
  readonly burst: number;
}

/**
 * Token buckets in Postgres, one row per gate (and per gate and tenant). A row holds the tokens
 * left at `refilled_at`; taking refills it by the elapsed database time first. One statement
 * locks the row, refills, takes and writes, so processes never see a half-done take, and the lock
 * lasts one statement: takes are never part of a saga transaction (see rate-gates.ts).
 *
 * Why a token bucket in a row: every process shares it and the database clock, whatever the
 * number of processes (a static share of R per process would be wrong whenever one stops or
 * starts); it costs one row per bucket (a sliding log costs a row per command); and it allows a
 * bounded burst after a quiet spell, which a fixed window would double at its edges.
 */
export class RateStore {
  readonly #t: string;
  readonly #now: string;
  constructor(schema: string) {
    const q = quoteSchema(schema);
    this.#t = `${q}.rate_buckets`;
    this.#now = `${q}.sagaflow_now()`;
  }

  /** Takes up to `want` whole tokens; returns how many it got (0..want). Creates the bucket full. */
  async take(db: Queryable, b: BucketSpec, want: number, again = true): Promise<number> {
    const { rows } = await db.query<{ granted: number }>(
      `WITH ins AS (
         INSERT INTO ${this.#t} (gate, tenant, tokens, refilled_at) VALUES ($1, $2, $4::float8, ${this.#now})
         ON CONFLICT DO NOTHING RETURNING 1)
       UPDATE ${this.#t} t SET tokens = a.avail - a.granted, refilled_at = ${this.#now}, taken = t.taken + a.granted
       FROM (SELECT avail, LEAST(floor(avail), $5)::int AS granted FROM (
               SELECT LEAST($4::float8, tokens + $3::float8 * extract(epoch FROM ${this.#now} - refilled_at)) AS avail
               FROM ${this.#t} WHERE gate = $1 AND tenant = $2 FOR UPDATE) x) a
       WHERE t.gate = $1 AND t.tenant = $2
       RETURNING a.granted`,
      [b.gate, b.tenant, b.perSecond, b.burst, want],
    );
    // The first take of a new bucket inserts it (full) and finds no row to update in the same
    // statement's snapshot: ask again.
    if (rows.length === 0) return again ? this.take(db, b, want, false) : 0;
    return rows[0]!.granted;
  }

  async list(db: Queryable): Promise<{ gate: string; tenant: string; tokens: number; taken: number }[]> {
    const { rows } = await db.query<{ gate: string; tenant: string; tokens: number; taken: number }>(
      `SELECT gate, tenant, tokens, taken::float8 AS taken FROM ${this.#t} ORDER BY gate, tenant`,
    );
    return rows;
  }
}
