import { performance } from 'node:perf_hooks';
import type { Queryable } from '../db/db.js';
import type { GateSignal, Hold } from '../saga/engine.js';
import type { AdmitContext, GateTx, Gates } from '../transaction/gates.js';
import type { RateLimitPolicy } from './policy.js';
import { RateStore, type BucketSpec } from './rate-store.js';

export interface RateGatesDeps {
  readonly schema: string;
  /** The pool: tokens are taken outside the saga transaction (the bucket row is locked one statement only). */
  readonly db: Queryable;
  readonly policies: ReadonlyMap<string, RateLimitPolicy>;
}

interface Lease {
  tokens: number;
  /** performance.now() after which what is left is dropped. */
  until: number;
  /** A take in progress (one per bucket and process at a time). */
  pending: Promise<void> | undefined;
  /** Where this process queues its next refused command (ms, performance.now()): one per 1/perSecond. */
  nextSlot: number;
}

/**
 * Rate limits: at most `perSecond` commands per second to a gate (and `perTenant` per tenant),
 * across every orchestrator process. A process takes tokens from the shared bucket a few at a time
 * (a lease of perSecond x leaseMs) in its own one-statement transaction and spends them within
 * leaseMs; leftovers are dropped. A token spent by a saga transaction that then rolls back is lost:
 * the rate errs below the limit, never above.
 *
 * A refused command is held (`waiting: rate limit payment`) until the slot this process assigns it
 * in its own queue of the gate, one per 1/perSecond: the held sagas come back at about the rate,
 * in the order they were refused, instead of all retrying together. With a per-tenant limit, a
 * tenant over its own share waits in its own queue, so it cannot take the whole rate from others.
 */
export class RateGates implements Gates {
  readonly store: RateStore;
  readonly #leases = new Map<string, Lease>();

  constructor(readonly deps: RateGatesDeps) {
    this.store = new RateStore(deps.schema);
  }

  begin(): GateTx {
    return new RateTx(this, this.deps);
  }

  /** Takes one token of `b` from this process's lease, renewing the lease when it ran out; false: none left. */
  async token(b: BucketSpec, leaseMs: number): Promise<boolean> {
    const key = `${b.gate}\u0000${b.tenant}`;
    let l = this.#leases.get(key);
    if (!l) this.#leases.set(key, (l = { tokens: 0, until: 0, pending: undefined, nextSlot: 0 }));
    for (;;) {
      if (l.tokens > 0 && performance.now() < l.until) {
        l.tokens--;
        return true;
      }
      if (l.pending) {
        await l.pending;
        continue;
      }
      // Spent before its time: ask the bucket again. A refused command then sleeps until its place
      // in this process's queue (holdFor), so the asks stay near the rate, never a busy loop.
      const want = Math.max(1, Math.round((b.perSecond * leaseMs) / 1000));
      const lease = l;
      lease.pending = this.store
        .take(this.deps.db, b, want)
        .then((n) => {
          lease.tokens = n;
          lease.until = performance.now() + leaseMs;
        })
        .finally(() => (lease.pending = undefined));
      await lease.pending;
      if (lease.tokens === 0) return false;
    }
  }

  /** When a refused command of `b` should ask again: the next free place in this process's queue of the bucket. */
  holdFor(b: BucketSpec): number {
    const l = this.#leases.get(`${b.gate}\u0000${b.tenant}`)!;
    const now = performance.now();
    l.nextSlot = Math.max(now, l.nextSlot) + 1000 / b.perSecond;
    return Math.ceil(l.nextSlot - now);
  }

  /** A token taken for a command that another gate then refused goes back to the lease. */
  giveBack(b: BucketSpec): void {
    const l = this.#leases.get(`${b.gate}\u0000${b.tenant}`);
    if (l && performance.now() < l.until) l.tokens++;
  }
}

class RateTx implements GateTx {
  readonly #granted = new Map<string, BucketSpec[]>();

  constructor(
    private readonly gates: RateGates,
    private readonly deps: RateGatesDeps,
  ) {}

  async admit(_tx: Queryable, gate: string, sagaId: string, ctx?: AdmitContext): Promise<Hold | null> {
    const p = this.deps.policies.get(gate);
    if (!p) return null;
    const buckets: BucketSpec[] = [];
    // The tenant's own bucket first: a tenant over its share does not use up the gate's tokens.
    if (p.perTenant !== undefined && ctx) buckets.push({ gate, tenant: ctx.tenantId, perSecond: p.perTenant, burst: Math.max(1, Math.min(p.burst, p.perTenant / 10)) });
    buckets.push({ gate, tenant: '', perSecond: p.perSecond, burst: p.burst });
    const got: BucketSpec[] = [];
    for (const b of buckets) {
      if (!(await this.gates.token(b, p.leaseMs))) {
        for (const g of got) this.gates.giveBack(g);
        const who = b.tenant === '' ? '' : ` tenant ${b.tenant}`;
        return { delayMs: this.gates.holdFor(b), reason: `waiting: rate limit ${gate}${who}` };
      }
      got.push(b);
    }
    this.#granted.set(`${gate}\u0000${sagaId}`, got);
    return null;
  }

  undo(gate: string, sagaId: string): void {
    const key = `${gate}\u0000${sagaId}`;
    for (const b of this.#granted.get(key) ?? []) this.gates.giveBack(b);
    this.#granted.delete(key);
  }

  record(_gate: string, _sagaId: string, _outcome: GateSignal['outcome']): void {}

  async flush(): Promise<void> {}

  committed(): void {}
}
