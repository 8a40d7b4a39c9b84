import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { PublishError, type OutgoingMessage, type Publisher } from '../transport/contract.js';
import type { Queryable } from '../db/db.js';
import type { OutboxStore } from './store.js';
import { PROBE_SENT_HEADER, wallMs, type LatencyProbe } from '../observability/latency-probe.js';

export interface WrittenMessage {
  readonly outboxId: string;
  readonly message: OutgoingMessage;
}

/**
 * The outbox fast path: right after a transaction commits, the worker publishes what it wrote
 * from memory instead of waiting for the relay to read it back. Confirmed rows are deleted later,
 * piggy-backed on the next batch transaction (or by a small idle flush). Whatever fails here stays
 * in the outbox and the relay publishes it once its grace period ends: nothing is lost, at worst
 * a message is published twice and the consumer's inbox absorbs it.
 */
export class OutboxDispatcher {
  #pendingDeletes: string[] = [];
  #inFlight = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  readonly #waiters = new Set<() => void>();
  readonly #settled = new Set<Promise<void>>();
  /** Messages confirmed by the broker through the fast path (metrics and the bench). */
  published = 0;

  constructor(
    private readonly deps: {
      /** Bench --breakdown only: stamps the publish time on each message and times the confirms. */
      probe?: LatencyProbe | undefined;
      publisher: Publisher;
      store: OutboxStore;
      db: Queryable;
      logger: Logger;
      /** Called when messages stay in the outbox, so the relay looks again when they fall due. */
      onLeftBehind: (count: number) => void;
      /** Messages in flight above which callers wait (backpressure into acks, hence into prefetch). */
      maxInFlight?: number;
      /** Idle flush of confirmed-row deletes when no batch came along to carry them. */
      deleteFlushMs?: number;
    },
  ) {}

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Starts publishing; does not wait for the confirms. */
  dispatch(written: readonly WrittenMessage[]): void {
    if (written.length === 0) return;
    this.#inFlight += written.length;
    const p = this.#publish(written).finally(() => {
      this.#inFlight -= written.length;
      this.#settled.delete(p);
      for (const w of [...this.#waiters]) w();
    });
    this.#settled.add(p);
  }

  /** Resolves once fewer than maxInFlight messages await confirms. */
  async capacity(): Promise<void> {
    const max = this.deps.maxInFlight ?? 20_000;
    while (this.#inFlight >= max) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#waiters.delete(done);
          resolve();
        };
        this.#waiters.add(done);
      });
    }
  }

  async #publish(written: readonly WrittenMessage[]): Promise<void> {
    const byMessage = new Map<string, string[]>();
    for (const w of written) byMessage.set(w.message.id, [...(byMessage.get(w.message.id) ?? []), w.outboxId]);
    const probe = this.deps.probe;
    const t0 = probe ? performance.now() : 0;
    try {
      if (probe) {
        const sent = String(wallMs());
        await this.deps.publisher.publish(written.map((w) => ({ ...w.message, headers: { ...w.message.headers, [PROBE_SENT_HEADER]: sent } })));
        probe.record('publish -> broker confirm (fast path)', performance.now() - t0);
      } else await this.deps.publisher.publish(written.map((w) => w.message));
      this.published += written.length;
      this.#confirmed(written.map((w) => w.outboxId));
    } catch (err) {
      const failed = err instanceof PublishError ? new Set(err.failedIds) : new Set(written.map((w) => w.message.id));
      this.#confirmed(written.filter((w) => !failed.has(w.message.id)).map((w) => w.outboxId));
      this.deps.logger.warn({ err: errorMessage(err), failed: failed.size }, 'fast-path publish failed; the relay will publish from the outbox');
      this.deps.onLeftBehind(failed.size);
    }
  }

  #confirmed(ids: string[]): void {
    if (ids.length === 0) return;
    for (const id of ids) this.#pendingDeletes.push(id);
    if (!this.#idleTimer) {
      this.#idleTimer = setTimeout(() => {
        this.#idleTimer = undefined;
        void this.flushDeletes();
      }, this.deps.deleteFlushMs ?? 200);
    }
  }

  /** Hands the confirmed ids to a transaction that deletes them; give them back if it rolls back. */
  takeDeletes(max = 5000): string[] {
    return this.#pendingDeletes.splice(0, max);
  }

  giveBack(ids: readonly string[]): void {
    this.#pendingDeletes.push(...ids);
  }

  async flushDeletes(): Promise<void> {
    while (this.#pendingDeletes.length > 0) {
      const ids = this.takeDeletes();
      try {
        await this.deps.store.deleteSent(this.deps.db, ids);
      } catch (err) {
        // Harmless: the rows are re-published by the relay later and deduped by consumers.
        this.giveBack(ids);
        this.deps.logger.warn({ err: errorMessage(err) }, 'could not delete sent outbox rows; will retry');
        return;
      }
    }
  }

  /** Waits for every publish in flight and deletes what was confirmed (graceful shutdown). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#settled]);
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    await this.flushDeletes();
  }
}
