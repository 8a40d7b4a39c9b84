import { performance } from 'node:perf_hooks';
import type { Db, Queryable } from '../db/db.js';
import type { Logger } from '../log.js';
import type { GateSignal, Hold } from '../saga/engine.js';
import type { AdmitContext, GateTx, Gates } from '../transaction/gates.js';
import { BulkheadStore, type SlotTake } from './bulkhead-store.js';
import type { BulkheadPolicy } from './policy.js';

export interface BulkheadGatesDeps {
  readonly schema: string;
  readonly policies: ReadonlyMap<string, BulkheadPolicy>;
  readonly logger: Logger;
  readonly random: () => number;
  /** Waiting sagas were handed slots (their wake times moved to now): look for due timers. */
  readonly onRelease: () => void;
}

/** Slots a transaction locks at once grow 1, 2, 4 ... this many: few round trips, few slots idle in a small transaction. */
const MAX_CHUNK = 32;
/** A process looks for leaked slots of a full gate at most this often. */
const RECLAIM_EVERY_MS = 1000;

/**
 * Concurrency limits (bulkheads): at most `maxInFlight` commands of a gate sent and not yet
 * answered, across every orchestrator process. In flight is a slot row naming the saga and its
 * command, written in the transaction that writes the command and freed in the one that applies
 * its reply or timeout - so the count is the saga state, not a counter beside it: a kill -9 rolls
 * the slot back with the transition, and a slot whose saga moved on another way is reclaimed.
 *
 * A full gate holds the attempt like an open breaker (`waiting: bulkhead payment full`, attempts
 * untouched, its timeout not started). A freed slot is handed at once to the saga that has waited
 * longest, in the freeing transaction, so waiting sagas go in order and none polls.
 */
export class BulkheadGates implements Gates {
  readonly store: BulkheadStore;
  readonly #lastReclaim = new Map<string, number>();

  constructor(readonly deps: BulkheadGatesDeps) {
    this.store = new BulkheadStore(deps.schema);
  }

  begin(): GateTx {
    return new BulkheadTx(this, this.deps);
  }

  /** Creates the slot rows of every configured gate (worker start). */
  async ensure(db: Queryable): Promise<void> {
    for (const [gate, p] of this.deps.policies) await this.store.ensure(db, gate, p.maxInFlight);
  }

  /** May this process look for leaked slots of `gate` now? (A full gate would otherwise scan on every refusal.) */
  reclaimDue(gate: string): boolean {
    const now = performance.now();
    if (now - (this.#lastReclaim.get(gate) ?? -Infinity) < RECLAIM_EVERY_MS) return false;
    this.#lastReclaim.set(gate, now);
    return true;
  }

  /**
   * The periodic safety net (the worker runs it about once a second): frees leaked slots, wakes
   * sagas asleep on a slot handed to them and hands idle slots to waiting sagas. Each gate in its
   * own short transaction.
   */
  async pump(db: Db): Promise<number> {
    let woken = 0;
    for (const [gate, p] of this.deps.policies) {
      woken += await db.transaction(async (tx) => {
        const leaked = await this.store.reclaim(tx, gate, p.maxInFlight);
        if (leaked.length > 0) this.deps.logger.warn({ gate, slots: leaked.length }, `bulkhead ${gate}: freed slots whose attempt had ended without a reply`);
        const asleep = await this.store.wakeHanded(tx, gate);
        if (asleep > 0) this.deps.logger.warn({ gate, sagas: asleep }, `bulkhead ${gate}: woke sagas that slept on a slot handed to them`);
        return asleep + (await this.store.handIdle(tx, gate, p.maxInFlight));
      });
    }
    if (woken > 0) this.deps.onRelease();
    return woken;
  }
}

class BulkheadTx implements GateTx {
  /** Free slots this transaction has locked and not used yet, per gate. */
  readonly #pool = new Map<string, number[]>();
  readonly #chunk = new Map<string, number>();
  readonly #takes = new Map<string, Map<string, SlotTake>>();
  readonly #ended = new Map<string, Set<string>>();
  #woken = 0;

  constructor(
    private readonly gates: BulkheadGates,
    private readonly deps: BulkheadGatesDeps,
  ) {}

  async admit(tx: Queryable, gate: string, sagaId: string, ctx?: AdmitContext): Promise<Hold | null> {
    const p = this.deps.policies.get(gate);
    if (!p || !ctx) return null;
    const slot = (ctx.wasHeld ? await this.gates.store.handedTo(tx, gate, sagaId) : null) ?? (await this.#fromPool(tx, gate, p));
    if (slot === null) {
      // Sleeps long: a freed slot wakes it much earlier. No random spread: freed slots go to the
      // earliest wake time, so equal delays keep the waiting sagas in the order they arrived.
      return { delayMs: p.maxWaitMs, reason: `waiting: bulkhead ${gate} full` };
    }
    let takes = this.#takes.get(gate);
    if (!takes) this.#takes.set(gate, (takes = new Map()));
    takes.set(sagaId, { slot, sagaId, commandId: ctx.commandId });
    return null;
  }

  undo(gate: string, sagaId: string): void {
    const take = this.#takes.get(gate)?.get(sagaId);
    if (!take) return;
    this.#takes.get(gate)!.delete(sagaId);
    const pool = this.#pool.get(gate);
    if (pool) pool.push(take.slot);
    else this.#pool.set(gate, [take.slot]);
  }

  async #fromPool(tx: Queryable, gate: string, p: BulkheadPolicy): Promise<number | null> {
    let pool = this.#pool.get(gate);
    if (!pool) this.#pool.set(gate, (pool = []));
    if (pool.length === 0) {
      const n = this.#chunk.get(gate) ?? 1;
      this.#chunk.set(gate, Math.min(MAX_CHUNK, n * 2));
      pool.push(...(await this.gates.store.lockFree(tx, gate, p.maxInFlight, n)));
    }
    if (pool.length === 0 && this.gates.reclaimDue(gate)) {
      const leaked = await this.gates.store.reclaim(tx, gate, p.maxInFlight);
      if (leaked.length > 0) this.deps.logger.warn({ gate, slots: leaked.length }, `bulkhead ${gate}: freed slots whose attempt had ended without a reply`);
      pool.push(...leaked);
    }
    return pool.shift() ?? null;
  }

  record(gate: string, sagaId: string, _outcome: GateSignal['outcome']): void {
    if (!this.deps.policies.has(gate)) return;
    let s = this.#ended.get(gate);
    if (!s) this.#ended.set(gate, (s = new Set()));
    s.add(sagaId);
  }

  async flush(tx: Queryable): Promise<void> {
    // Free (and hand on) first: a saga whose reply ended one attempt and whose next command took
    // another slot of the same gate in this transaction keeps the new one.
    for (const [gate, sagas] of this.#ended) this.#woken += await this.gates.store.freeAndHand(tx, gate, [...sagas]);
    for (const [gate, takes] of this.#takes) await this.gates.store.take(tx, gate, [...takes.values()]);
  }

  committed(): void {
    if (this.#woken > 0) this.deps.onRelease();
  }
}
