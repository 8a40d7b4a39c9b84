import { performance } from 'node:perf_hooks';
import type { Queryable } from '../db/db.js';
import type { Logger } from '../log.js';
import type { GateSignal, Hold } from '../saga/engine.js';
import type { GateTx, Gates } from '../transaction/gates.js';
import { applyOutcomes, type Outcomes } from './breaker.js';
import { CircuitStore, type CircuitSnapshot } from './circuit-store.js';
import type { BreakerPolicy } from './policy.js';

interface Cached {
  readonly snap: CircuitSnapshot | undefined;
  /** performance.now() when read: the snapshot's relative times count from here. */
  readonly at: number;
}

export interface CircuitGatesDeps {
  readonly schema: string;
  readonly policies: ReadonlyMap<string, BreakerPolicy>;
  readonly logger: Logger;
  readonly random: () => number;
  /** Held sagas were released (their wake times moved earlier): look for due timers now. */
  readonly onRelease: () => void;
  /**
   * How long a process trusts its cached view of a CLOSED breaker (default 500 ms). Admitting while
   * closed needs no query per transaction; the price is that a breaker opened by another process is
   * seen up to this late (a few more commands go out). Open and half-open are decided in SQL.
   */
  readonly refreshMs?: number;
}

/**
 * Circuit breakers whose state is a row in Postgres, shared by every orchestrator process. The
 * admission (may this command go?) happens in the transaction that would send it: closed -> yes;
 * open -> no, wait for the cool-down (the attempt is held, the reason says why); cool-down over ->
 * exactly one transaction claims the probe by a conditional update; its outcome closes or re-opens.
 */
export class CircuitGates implements Gates {
  readonly store: CircuitStore;
  readonly #cache = new Map<string, Cached>();
  readonly #refreshMs: number;

  constructor(private readonly deps: CircuitGatesDeps) {
    this.store = new CircuitStore(deps.schema);
    this.#refreshMs = deps.refreshMs ?? 500;
  }

  begin(): GateTx {
    return new CircuitTx(this, this.deps);
  }

  async snapshot(db: Queryable, gate: string): Promise<Cached> {
    const c = this.#cache.get(gate);
    if (c && performance.now() - c.at < this.#refreshMs) return c;
    // One query refreshes every gate this process knows.
    const names = [...this.deps.policies.keys()];
    const at = performance.now();
    const rows = new Map((await this.store.snapshots(db, names)).map((s) => [s.name, s]));
    for (const n of names) this.#cache.set(n, { snap: rows.get(n), at });
    return this.#cache.get(gate)!;
  }

  /** Forget what was cached of `gate` (it changed in a transaction of this process). */
  invalidate(gate: string): void {
    this.#cache.delete(gate);
  }
}

class CircuitTx implements GateTx {
  readonly #outcomes = new Map<string, Outcomes>();
  readonly #changed: string[] = [];
  #released = false;

  constructor(
    private readonly gates: CircuitGates,
    private readonly deps: CircuitGatesDeps,
  ) {}

  async admit(tx: Queryable, gate: string, sagaId: string): Promise<Hold | null> {
    const p = this.deps.policies.get(gate);
    if (!p) return null;
    const { snap, at } = await this.gates.snapshot(tx, gate);
    if (!snap || (snap.state === 'closed' && snap.forced === null)) return null;
    const elapsed = performance.now() - at;
    const spread = () => Math.round(this.deps.random() * p.coolDownMs);
    if (snap.forced === 'open') return { delayMs: p.coolDownMs + spread(), reason: `waiting: circuit ${gate} held open by an operator` };
    const retryIn = (snap.retryInMs ?? 0) - elapsed;
    if (snap.state === 'open' && retryIn > 0) {
      // Spread over one cool-down: the waiting sagas do not all wake at the same instant.
      return { delayMs: Math.round(retryIn) + spread(), reason: `waiting: circuit ${gate} open` };
    }
    const probeIn = (snap.probeInMs ?? 0) - elapsed;
    if (snap.state === 'open' || probeIn <= 0) {
      if (await this.gates.store.claimProbe(tx, gate, sagaId, p.probeTimeoutMs)) {
        this.gates.invalidate(gate);
        this.deps.logger.info({ gate, sagaId }, 'circuit half-open: one probe goes through');
        return null;
      }
      this.gates.invalidate(gate);
    }
    return { delayMs: Math.round(p.coolDownMs / 2) + spread(), reason: `waiting: circuit ${gate} half-open, probe in flight` };
  }

  record(gate: string, sagaId: string, outcome: GateSignal['outcome']): void {
    if (!this.deps.policies.has(gate)) return;
    let o = this.#outcomes.get(gate);
    if (!o) this.#outcomes.set(gate, (o = { technical: 0, ok: 0, bySaga: new Map() }));
    if (outcome === 'ok') o.ok++;
    else o.technical++;
    o.bySaga.set(sagaId, outcome);
  }

  async flush(tx: Queryable): Promise<void> {
    if (this.#outcomes.size === 0) return;
    // A healthy breaker costs no write: successes only matter to a failure rate or a probe.
    const wanted: string[] = [];
    for (const [gate, o] of this.#outcomes) {
      const p = this.deps.policies.get(gate)!;
      const { snap } = await this.gates.snapshot(tx, gate);
      const settled = (snap?.state ?? 'closed') === 'closed';
      if (o.technical > 0 || p.failureRate !== undefined || !settled) wanted.push(gate);
    }
    if (wanted.length === 0) return;
    const rows = await this.gates.store.lockRows(tx, wanted, wanted.some((g) => this.#outcomes.get(g)!.technical > 0));
    for (const [gate, row] of rows) {
      const p = this.deps.policies.get(gate)!;
      const change = applyOutcomes(row, this.#outcomes.get(gate)!, p);
      await this.gates.store.apply(tx, gate, change, p);
      this.#changed.push(gate);
      if (change.opened) this.deps.logger.warn({ gate, failures: change.failures, coolDownMs: p.coolDownMs }, `circuit ${gate} opened`);
      if (change.closed) {
        const n = await this.gates.store.release(tx, gate, p.releasePerSecond);
        this.#released ||= n > 0;
        this.deps.logger.info({ gate, released: n, perSecond: p.releasePerSecond }, `circuit ${gate} closed`);
      }
    }
  }

  committed(): void {
    for (const g of this.#changed) this.gates.invalidate(g);
    if (this.#released) this.deps.onRelease();
  }
}
