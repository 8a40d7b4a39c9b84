import type { Db } from '../db/db.js';
import { NotFoundError } from '../errors.js';
import type { Logger } from '../log.js';
import { CircuitStore, type CircuitInfo } from '../resilience/circuit-store.js';
import { DEFAULT_BREAKER } from '../resilience/policy.js';
import { AuditLog } from './audit.js';
import type { Actor } from './saga-ops.js';
import { notify } from './saga-ops.js';
import { OutboxStore } from '../outbox/store.js';

export interface CircuitActionResult {
  readonly name: string;
  readonly from: string | null;
  readonly to: 'open' | 'closed';
  /** Sagas woken (at a controlled rate) because the breaker closed. */
  readonly released: number;
  readonly auditId: string;
}

/**
 * Breakers by hand, audited: open holds a breaker open (every saga about to send through it waits)
 * until closed by hand; close closes it now, hands it back to the automatic rules, and releases
 * the waiting sagas at `releasePerSecond`.
 */
export class CircuitOperations {
  readonly #store: CircuitStore;
  readonly #audit: AuditLog;
  readonly #channel: string;

  constructor(private readonly deps: { db: Db; schema: string; logger: Logger; releasePerSecond?: number }) {
    this.#store = new CircuitStore(deps.schema);
    this.#audit = new AuditLog(deps.schema);
    this.#channel = new OutboxStore(deps.schema).channel;
  }

  list(): Promise<CircuitInfo[]> {
    return this.#store.list(this.deps.db);
  }

  async open(name: string, actor: Actor, reason?: string): Promise<CircuitActionResult> {
    return this.deps.db.transaction(async (tx) => {
      const before = (await this.#store.snapshots(tx, [name]))[0];
      await this.#store.forceOpen(tx, name);
      const auditId = await this.#audit.record(tx, { actor: actor.name, action: 'circuit-open', targetType: 'circuit', targetId: name, reason, requestId: actor.requestId, outcome: 'accepted', detail: { from: before?.state ?? null } });
      this.deps.logger.info({ circuit: name, actor: actor.name }, 'circuit opened by hand');
      return { name, from: before?.state ?? null, to: 'open' as const, released: 0, auditId };
    });
  }

  async close(name: string, actor: Actor, reason?: string): Promise<CircuitActionResult> {
    return this.deps.db.transaction(async (tx) => {
      const from = await this.#store.forceClose(tx, name);
      if (from === null) throw new NotFoundError(`no circuit ${name}`);
      const released = await this.#store.release(tx, name, this.deps.releasePerSecond ?? DEFAULT_BREAKER.releasePerSecond);
      // Wakes the workers' timers, so the released sagas go at their new times.
      await notify(tx, this.#channel);
      const auditId = await this.#audit.record(tx, { actor: actor.name, action: 'circuit-close', targetType: 'circuit', targetId: name, reason, requestId: actor.requestId, outcome: 'accepted', detail: { from, released } });
      this.deps.logger.info({ circuit: name, actor: actor.name, released }, 'circuit closed by hand');
      return { name, from, to: 'closed' as const, released, auditId };
    });
  }
}
