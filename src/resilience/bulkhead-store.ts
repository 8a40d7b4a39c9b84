import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import { HELD_ORDER, heldAt } from './held-queue.js';

/** One slot taken by a command this transaction writes. */
export interface SlotTake {
  readonly slot: number;
  readonly sagaId: string;
  readonly commandId: string;
}

export interface BulkheadInfo {
  readonly gate: string;
  readonly slots: number;
  /** Slots held by a command sent and not yet answered. */
  readonly inFlight: number;
  /** Slots handed to a waiting saga that has not taken it yet. */
  readonly handed: number;
}

/**
 * The slot rows of the bulkheads: a semaphore in Postgres. Slots are locked with SKIP LOCKED, so
 * concurrent transactions (in any process) take different slots without waiting on each other and
 * without a hot counter row; a slot is in use when its row names a saga, and that naming commits or
 * rolls back with the saga's own transition.
 *
 * Whether a slot is still in use is derived from the saga's state, never trusted blindly: a slot is
 * held iff its saga's cursor still waits for that very command (or, for a handed slot, the saga
 * still waits at the gate). Anything else is a leak (the attempt ended by a cancel, a deadline, a
 * replay, a deleted saga) and `reclaim` frees it.
 */
export class BulkheadStore {
  readonly #t: string;
  readonly #sagas: string;
  readonly #now: string;
  constructor(schema: string) {
    const q = quoteSchema(schema);
    this.#t = `${q}.gate_slots`;
    this.#sagas = `${q}.sagas`;
    this.#now = `${q}.sagaflow_now()`;
  }

  /** Creates the slots 0..size-1 of `gate` (a process started with a larger limit adds rows; slots >= its size are never taken by it). */
  async ensure(db: Queryable, gate: string, size: number): Promise<void> {
    await db.query(`INSERT INTO ${this.#t} (gate, slot) SELECT $1, n FROM generate_series(0, $2::int - 1) AS n ON CONFLICT DO NOTHING`, [gate, size]);
  }

  /** Locks up to `n` free slots for this transaction (taken at flush if used; unlocked at commit if not). */
  async lockFree(tx: Queryable, gate: string, size: number, n: number): Promise<number[]> {
    const { rows } = await tx.query<{ slot: number }>(
      `SELECT slot FROM ${this.#t} WHERE gate = $1 AND slot < $2 AND saga_id IS NULL ORDER BY slot LIMIT $3 FOR UPDATE SKIP LOCKED`,
      [gate, size, n],
    );
    return rows.map((r) => r.slot);
  }

  /**
   * The slot handed to `sagaId` while it waited, if any (locked). It waits for the row's lock rather
   * than skipping it: the slot is this saga's, and whoever holds the lock only passes by (a
   * `lockFree` of another transaction keeps its lock on a row it read as free and found handed on
   * re-check). Skipping it made the saga miss its own slot and go back to sleep for `maxWaitMs` with
   * the slot still handed to it, which no hand-off would ever give it again.
   */
  async handedTo(tx: Queryable, gate: string, sagaId: string): Promise<number | null> {
    const { rows } = await tx.query<{ slot: number }>(
      `SELECT slot FROM ${this.#t} WHERE gate = $1 AND saga_id = $2 AND command_id IS NULL LIMIT 1 FOR UPDATE`,
      [gate, sagaId],
    );
    return rows[0]?.slot ?? null;
  }

  /**
   * Sagas that hold a slot handed to them but sleep (a wake time in the future): woken now. The
   * safety net behind `handedTo`; without it such a saga keeps the slot idle for its whole wait.
   */
  async wakeHanded(tx: Queryable, gate: string): Promise<number> {
    const { rowCount } = await tx.query(
      `UPDATE ${this.#sagas} s SET wake_at = ${this.#now}
       FROM ${this.#t} g
       WHERE g.gate = $1 AND g.saga_id IS NOT NULL AND g.command_id IS NULL AND s.id = g.saga_id
         AND s.wake_at > ${this.#now} AND ${heldAt('s', '$1')}`,
      [gate],
    );
    return rowCount ?? 0;
  }

  /**
   * Frees the slots whose saga no longer waits for their command (or, handed, no longer waits at
   * the gate), and returns them LOCKED to the caller. Judged on committed saga state; a slot locked
   * by a transaction in progress is skipped (it is being taken or freed right now).
   */
  async reclaim(tx: Queryable, gate: string, size: number): Promise<number[]> {
    const { rows } = await tx.query<{ slot: number }>(
      `UPDATE ${this.#t} s SET saga_id = NULL, command_id = NULL, taken_at = NULL
       FROM (SELECT x.gate, x.slot FROM ${this.#t} x LEFT JOIN ${this.#sagas} g ON g.id = x.saga_id
             WHERE x.gate = $1 AND x.slot < $2 AND x.saga_id IS NOT NULL
               AND NOT COALESCE(g.status IN ('running', 'compensating') AND (
                     (x.command_id IS NOT NULL AND g.state->'cursor'->>'commandId' = x.command_id::text)
                  OR (x.command_id IS NULL AND ${heldAt('g', 'x.gate')})), false)
             FOR UPDATE OF x SKIP LOCKED) stale
       WHERE s.gate = stale.gate AND s.slot = stale.slot
       RETURNING s.slot`,
      [gate, size],
    );
    return rows.map((r) => r.slot);
  }

  /** Writes the slots taken by this transaction's commands. */
  async take(tx: Queryable, gate: string, takes: readonly SlotTake[]): Promise<void> {
    if (takes.length === 0) return;
    await tx.query(
      `UPDATE ${this.#t} s SET saga_id = x.saga, command_id = x.cmd, taken_at = ${this.#now}
       FROM unnest($2::int[], $3::uuid[], $4::uuid[]) AS x(slot, saga, cmd)
       WHERE s.gate = $1 AND s.slot = x.slot`,
      [gate, takes.map((t) => t.slot), takes.map((t) => t.sagaId), takes.map((t) => t.commandId)],
    );
  }

  /**
   * The attempts of `sagaIds` at `gate` ended: their slots go straight to the sagas that have waited
   * longest at the gate (FIFO by wake time; woken now), the rest become free. One statement; the
   * waiting sagas are taken SKIP LOCKED, so a saga busy in another transaction is passed over.
   * Returns how many waiting sagas were woken.
   */
  async freeAndHand(tx: Queryable, gate: string, sagaIds: readonly string[]): Promise<number> {
    const ended = `SELECT slot, row_number() OVER (ORDER BY slot) AS rn FROM ${this.#t}
                   WHERE gate = $1 AND saga_id = ANY($2::uuid[]) AND command_id IS NOT NULL`;
    return this.#hand(tx, ended, 'free', [gate, sagaIds]);
  }

  /**
   * Hands free slots nobody has locked to the longest-waiting sagas (the safety net behind
   * `freeAndHand`: a saga that started waiting just after a slot was freed, or a reclaimed leak).
   */
  async handIdle(tx: Queryable, gate: string, size: number): Promise<number> {
    const idle = `SELECT slot, row_number() OVER (ORDER BY slot) AS rn FROM (
                    SELECT slot FROM ${this.#t} WHERE gate = $1 AND slot < $2 AND saga_id IS NULL ORDER BY slot FOR UPDATE SKIP LOCKED) f`;
    return this.#hand(tx, idle, 'leave', [gate, size]);
  }

  /**
   * Gives the slots `source` selects (columns slot, rn) to the sagas waiting longest at gate $1
   * (held by the bulkhead, without a slot; taken SKIP LOCKED) and moves their wake times to now.
   * Slots left over are freed ('free') or left as they are ('leave'). Returns the sagas woken.
   */
  async #hand(tx: Queryable, source: string, leftOver: 'free' | 'leave', params: unknown[]): Promise<number> {
    const { rows } = await tx.query<{ woken: number }>(
      `WITH src AS (${source}),
       waiters AS (
         SELECT id, row_number() OVER (ORDER BY ${HELD_ORDER}) AS rn FROM (
           ${this.waitersSql('(SELECT count(*) FROM src)')}) s),
       woken AS (
         UPDATE ${this.#sagas} s SET wake_at = LEAST(s.wake_at, ${this.#now}) FROM waiters w WHERE s.id = w.id RETURNING s.id),
       handed AS (
         UPDATE ${this.#t} g SET saga_id = w.id, command_id = NULL, taken_at = CASE WHEN w.id IS NULL THEN NULL ELSE ${this.#now} END
         FROM src e ${leftOver === 'free' ? 'LEFT JOIN' : 'JOIN'} waiters w ON w.rn = e.rn
         WHERE g.gate = $1 AND g.slot = e.slot RETURNING g.slot)
       SELECT (SELECT count(*) FROM woken)::int AS woken, (SELECT count(*) FROM handed)::int AS handed`,
      params,
    );
    return rows[0]?.woken ?? 0;
  }

  /**
   * The first `limit` sagas waiting for a slot of gate $1 (held by the bulkhead, none handed yet),
   * locked SKIP LOCKED, in the gate's queue order. The order is the `sagas_held` index's own, so
   * Postgres reads the front of the queue and stops however many wait behind it.
   */
  waitersSql(limit: string): string {
    return `SELECT s.id, s.state, s.wake_at FROM ${this.#sagas} s
           WHERE ${heldAt('s', '$1')}
             AND s.state->'cursor'->'held'->>'reason' LIKE 'waiting: bulkhead %'
             AND NOT EXISTS (SELECT 1 FROM ${this.#t} h WHERE h.saga_id = s.id AND h.gate = $1)
           ORDER BY ${HELD_ORDER} LIMIT ${limit}
           FOR UPDATE OF s SKIP LOCKED`;
  }

  async list(db: Queryable): Promise<BulkheadInfo[]> {
    const { rows } = await db.query<BulkheadInfo>(
      `SELECT gate, count(*)::int AS slots, count(*) FILTER (WHERE command_id IS NOT NULL)::int AS "inFlight",
              count(*) FILTER (WHERE saga_id IS NOT NULL AND command_id IS NULL)::int AS handed
       FROM ${this.#t} GROUP BY gate ORDER BY gate`,
    );
    return rows;
  }
}
