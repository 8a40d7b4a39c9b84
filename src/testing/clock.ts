import type pg from 'pg';

/**
 * Virtual time on a connection pool. Saga timers are set and compared with `sagaflow_now()`
 * (migrations/0005_clock.sql): now() plus the session setting sagaflow.clock_offset_ms. The kit
 * owns its pool, so it sets that setting on each of its connections whenever a connection is
 * checked out behind the current offset. The SET is queued on the client before the caller's first
 * query (a node-postgres client runs its queries in order), outside any transaction, so a rollback
 * cannot undo it. Production pools never do this: their clock is the database clock.
 */
export class VirtualClock {
  #offsetMs = 0;
  #failure: Error | undefined;
  readonly #seen = new WeakMap<pg.PoolClient, number>();

  constructor(pool: pg.Pool) {
    pool.on('acquire', (client) => {
      if (this.#seen.get(client) === this.#offsetMs) return;
      const offset = this.#offsetMs;
      this.#seen.set(client, offset);
      // The offset is a number we produce: interpolating it is safe, and SET takes no parameters.
      // A SET that fails would leave this connection on another clock: forget it (set again on the
      // next checkout) and keep the error for the next advance() to throw, never swallow it.
      client.query(`SET sagaflow.clock_offset_ms = '${offset}'`).catch((err: unknown) => {
        this.#seen.delete(client);
        this.#failure ??= err instanceof Error ? err : new Error(String(err));
      });
    });
  }

  /** How far virtual time is ahead of the database clock. */
  get offsetMs(): number {
    return this.#offsetMs;
  }

  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new Error(`time only moves forward: advance(${ms})`);
    if (this.#failure) throw new Error(`sagaflow/testing: the virtual clock could not be set on a connection: ${this.#failure.message}`);
    this.#offsetMs += ms;
  }
}
