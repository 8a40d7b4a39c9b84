import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import { HELD_ORDER, heldAt } from './held-queue.js';
import type { BreakerChange, BreakerRow, CircuitState } from './breaker.js';
import type { BreakerPolicy } from './policy.js';

/** What a process caches of a breaker: its state and its due times relative to the database clock. */
export interface CircuitSnapshot {
  readonly name: string;
  readonly state: CircuitState;
  readonly forced: 'open' | null;
  /** Milliseconds from the read until the cool-down ends (negative: over), database clock. */
  readonly retryInMs: number | null;
  readonly probeInMs: number | null;
}

export interface CircuitInfo extends CircuitSnapshot {
  readonly failures: number;
  readonly calls: number;
  readonly opens: number;
  readonly probes: number;
  readonly openedAt: Date | null;
  readonly retryAt: Date | null;
  readonly updatedAt: Date;
  /** Sagas waiting at this gate (held attempts). */
  readonly waiting: number;
}

/**
 * The breaker rows. Every time comparison is made in SQL with sagaflow_now() (now() in production): the database clock is the one
 * every orchestrator process shares, and the one a test's virtual clock replaces.
 */
export class CircuitStore {
  readonly #t: string;
  readonly #sagas: string;
  /** The timer clock (now(), or a test kit's virtual time): breaker times are compared with the sagas' wake times. */
  readonly #now: string;
  constructor(schema: string) {
    const q = quoteSchema(schema);
    this.#t = `${q}.circuits`;
    this.#sagas = `${q}.sagas`;
    this.#now = `${q}.sagaflow_now()`;
  }

  async snapshots(db: Queryable, names: readonly string[]): Promise<CircuitSnapshot[]> {
    const { rows } = await db.query<CircuitSnapshot>(
      `SELECT name, state, forced,
              (extract(epoch FROM retry_at - ${this.#now}) * 1000)::float8 AS "retryInMs",
              (extract(epoch FROM probe_until - ${this.#now}) * 1000)::float8 AS "probeInMs"
       FROM ${this.#t} WHERE name = ANY($1::text[])`,
      [names],
    );
    return rows;
  }

  /**
   * Claims THE probe of a breaker whose cool-down is over (or whose probe went unanswered): a
   * conditional update, so of all the processes and transactions that try at once exactly one
   * gets the row back; the others see it half-open. It commits or rolls back with the attempt.
   */
  async claimProbe(tx: Queryable, name: string, sagaId: string, probeTimeoutMs: number): Promise<boolean> {
    const { rowCount } = await tx.query(
      `UPDATE ${this.#t} SET state = 'half_open', probe_saga = $2, probe_until = ${this.#now} + $3 * interval '1 millisecond',
              probes = probes + 1, updated_at = ${this.#now}
       WHERE name = $1 AND forced IS NULL
         AND ((state = 'open' AND retry_at <= ${this.#now}) OR (state = 'half_open' AND probe_until <= ${this.#now}))`,
      [name, sagaId, probeTimeoutMs],
    );
    return rowCount === 1;
  }

  /** Locks the rows (in name order: no deadlock between processes), creating missing ones. */
  async lockRows(tx: Queryable, names: readonly string[], create: boolean): Promise<Map<string, BreakerRow>> {
    const sorted = [...new Set(names)].sort();
    if (create) await tx.query(`INSERT INTO ${this.#t} (name, window_start) SELECT n, ${this.#now} FROM unnest($1::text[]) AS n ORDER BY 1 ON CONFLICT DO NOTHING`, [sorted]);
    const { rows } = await tx.query<BreakerRow & { name: string }>(
      `SELECT name, state, forced, failures, calls, prev_failures AS "prevFailures", prev_calls AS "prevCalls",
              (extract(epoch FROM ${this.#now} - window_start) * 1000)::float8 AS "windowAgeMs", probe_saga::text AS "probeSaga"
       FROM ${this.#t} WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE`,
      [sorted],
    );
    return new Map(rows.map((r) => [r.name, r]));
  }

  async apply(tx: Queryable, name: string, c: BreakerChange, p: BreakerPolicy): Promise<void> {
    await tx.query(
      `UPDATE ${this.#t} SET state = $2,
              window_start = CASE $3 WHEN 'reset' THEN ${this.#now} WHEN 'advance' THEN window_start + $9 * interval '1 millisecond' ELSE window_start END,
              failures = $4, calls = $5, prev_failures = $6, prev_calls = $7,
              opened_at = CASE WHEN $8 THEN ${this.#now} ELSE opened_at END,
              retry_at = CASE WHEN $8 THEN ${this.#now} + $10 * interval '1 millisecond' ELSE retry_at END,
              opens = opens + CASE WHEN $8 THEN 1 ELSE 0 END,
              probe_saga = CASE WHEN $2 = 'half_open' THEN probe_saga END,
              probe_until = CASE WHEN $2 = 'half_open' THEN probe_until END,
              updated_at = ${this.#now}
       WHERE name = $1`,
      [name, c.state, c.windowShift, c.failures, c.calls, c.prevFailures, c.prevCalls, c.opened, p.windowMs, p.coolDownMs],
    );
  }

  /**
   * Wakes the sagas held at `name`, `perSecond` at most, in the gate's queue order (compensations first): wake times spread from the timer clock's now on, only ever
   * moved earlier. SKIP LOCKED: a saga busy in another transaction keeps its own (already spread)
   * wake time rather than making this one wait on its lock.
   */
  async release(tx: Queryable, name: string, perSecond: number): Promise<number> {
    const { rowCount } = await tx.query(
      `WITH held AS (
         SELECT h.id, h.state, h.wake_at FROM ${this.#sagas} h
         WHERE ${heldAt('h', '$1')}
         FOR UPDATE SKIP LOCKED),
       ranked AS (SELECT id, row_number() OVER (ORDER BY ${HELD_ORDER}) - 1 AS rn FROM held)
       UPDATE ${this.#sagas} s SET wake_at = LEAST(s.wake_at, ${this.#now} + (r.rn / $2::float8) * interval '1 second')
       FROM ranked r WHERE s.id = r.id`,
      [name, perSecond],
    );
    return rowCount ?? 0;
  }

  /** An operator holds it open until closed by hand. */
  async forceOpen(tx: Queryable, name: string): Promise<void> {
    await tx.query(
      `INSERT INTO ${this.#t} (name, state, forced, opened_at, retry_at, opens) VALUES ($1, 'open', 'open', ${this.#now}, ${this.#now}, 1)
       ON CONFLICT (name) DO UPDATE SET state = 'open', forced = 'open', opened_at = ${this.#now}, retry_at = ${this.#now},
         opens = ${this.#t}.opens + 1, probe_saga = NULL, probe_until = NULL, updated_at = ${this.#now}`,
      [name],
    );
  }

  /** An operator closes it (and hands it back to the automatic rules); returns the previous state. */
  async forceClose(tx: Queryable, name: string): Promise<CircuitState | null> {
    const { rows } = await tx.query<{ state: CircuitState }>(`SELECT state FROM ${this.#t} WHERE name = $1 FOR UPDATE`, [name]);
    if (!rows[0]) return null;
    await tx.query(
      `UPDATE ${this.#t} SET state = 'closed', forced = NULL, window_start = ${this.#now}, failures = 0, calls = 0, prev_failures = 0,
              prev_calls = 0, probe_saga = NULL, probe_until = NULL, updated_at = ${this.#now}
       WHERE name = $1`,
      [name],
    );
    return rows[0].state;
  }

  async list(db: Queryable): Promise<CircuitInfo[]> {
    const { rows } = await db.query<CircuitInfo>(
      `SELECT c.name, c.state, c.forced, c.failures, c.calls, c.opens, c.probes, c.opened_at AS "openedAt", c.retry_at AS "retryAt",
              c.updated_at AS "updatedAt",
              (extract(epoch FROM c.retry_at - ${this.#now}) * 1000)::float8 AS "retryInMs",
              (extract(epoch FROM c.probe_until - ${this.#now}) * 1000)::float8 AS "probeInMs",
              (SELECT count(*)::int FROM ${this.#sagas} s
               WHERE ${heldAt('s', 'c.name')}) AS waiting
       FROM ${this.#t} c ORDER BY c.name`,
    );
    return rows;
  }
}
