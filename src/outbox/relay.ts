import type pg from 'pg';
import type { Db } from '../db/db.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { PublishError, type Publisher } from '../transport/contract.js';
import { FallbackPoll } from '../scheduling/fallback-poll.js';
import { WakeLoop } from '../scheduling/wake-loop.js';
import type { OutboxStore } from './store.js';

export interface RelayOptions {
  /** Rows claimed per transaction. */
  readonly batchSize?: number;
  /**
   * Fallback poll (ms) for rows left by a worker that crashed and never came back; 0 disables it.
   * Everything else wakes the relay without polling: NOTIFY, this process's own failed publishes,
   * and a timer set to the next due row it knows of.
   */
  readonly fallbackPollMs?: number;
  /** Fallback poll period once the worker has been idle for two minutes (0 = none). Default 300 s. */
  readonly idlePollMs?: number;
  /** Time without activity after which the worker counts as idle. Default 120 s. */
  readonly idleAfterMs?: number;
  /** Back-off for a row whose publish failed, doubled per attempt up to maxRetryDelayMs. */
  readonly retryDelayMs?: number;
  readonly maxRetryDelayMs?: number;
}


/**
 * Publishes outbox rows that the fast path did not (a crash between COMMIT and publish, a broker
 * outage) and rows written by other processes through the client API. Several relays may run:
 * rows are claimed with FOR UPDATE SKIP LOCKED and deleted only after the broker confirmed them.
 */
export class OutboxRelay {
  readonly #poll: FallbackPoll;
  readonly #loop: WakeLoop;
  #listener: pg.Client | undefined;
  #stopped = false;
  #listenRetry: NodeJS.Timeout | undefined;
  /** Rows published by this relay since start (tests and metrics). */
  published = 0;

  constructor(
    private readonly deps: {
      db: Db;
      store: OutboxStore;
      publisher: Publisher;
      logger: Logger;
      /** Every NOTIFY on the outbox channel (operator actions also mean "look at your timers"). */
      onNotification?: (payload: string) => void;
    },
    private readonly opts: RelayOptions = {},
  ) {
    this.#loop = new WakeLoop(() => this.#rounds(), {
      retryMs: opts.retryDelayMs ?? 1000,
      onError: (err) => this.deps.logger.warn({ err: errorMessage(err) }, 'outbox relay round failed; retrying'),
    });
    this.#poll = new FallbackPoll({ activeMs: opts.fallbackPollMs ?? 30_000, idleMs: opts.idlePollMs ?? 300_000, activeWindowMs: opts.idleAfterMs ?? 120_000 }, () => this.wake(0));
  }

  /** Activity seen (a batch committed here): keep the safety-net poll at its active rate. */
  touch(): void {
    this.#poll.touch();
  }

  async start(): Promise<void> {
    this.#stopped = false;
    this.#loop.start();
    await this.#listen();
    this.#poll.start();
    // Recover whatever an earlier process left behind.
    this.wake(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#poll.stop();
    if (this.#listenRetry) clearTimeout(this.#listenRetry);
    const l = this.#listener;
    this.#listener = undefined;
    if (l) await l.end().catch(() => {});
    await this.#loop.stop();
  }

  /** Runs the relay after `delayMs` (an earlier wake wins). */
  wake(delayMs: number): void {
    this.#loop.wakeIn(delayMs);
  }

  /** Runs the relay now and resolves when the outbox holds nothing due (tests, shutdown). */
  async runOnce(): Promise<void> {
    await this.#loop.drain();
  }

  async #rounds(): Promise<void> {
    const size = this.opts.batchSize ?? 500;
    for (;;) {
      if (this.#stopped) return;
      const n = await this.#round(size);
      if (n < size) break;
    }
    const next = await this.deps.store.nextDueInMs(this.deps.db);
    if (next !== null) this.wake(Math.max(next, 20));
  }

  async #round(size: number): Promise<number> {
    return this.deps.db.transaction(async (tx) => {
      const rows = await this.deps.store.claimDue(tx, size);
      if (rows.length === 0) return 0;
      let failed: Set<string>;
      let error = '';
      let permanent = false;
      try {
        await this.deps.publisher.publish(rows.map((r) => r.message));
        failed = new Set();
      } catch (err) {
        failed = err instanceof PublishError ? new Set(err.failedIds) : new Set(rows.map((r) => r.message.id));
        error = errorMessage(err);
        // The transport says whether a retry can help (too large, refused record, bad topic name: no).
        permanent = err instanceof PublishError && !err.retryable;
      }
      const ok = rows.filter((r) => !failed.has(r.message.id));
      const bad = rows.filter((r) => failed.has(r.message.id));
      await this.deps.store.deleteSent(tx, ok.map((r) => r.id));
      if (bad.length > 0) {
        if (permanent) {
          await this.deps.store.park(tx, bad.map((r) => r.id), error);
          this.deps.logger.error({ count: bad.length, err: error }, 'outbox rows parked: the broker refuses them for good');
        } else {
          const attempts = Math.max(...bad.map((r) => r.attempts));
          const delay = Math.min((this.opts.retryDelayMs ?? 1000) * 2 ** attempts, this.opts.maxRetryDelayMs ?? 60_000);
          await this.deps.store.reschedule(tx, bad.map((r) => r.id), delay, error);
          this.deps.logger.warn({ count: bad.length, err: error, retryInMs: delay }, 'outbox publish failed; rescheduled');
        }
      }
      this.published += ok.length;
      // A round that failed entirely ends the loop; the rescheduled rows wake it again when due.
      return ok.length === 0 ? 0 : rows.length;
    });
  }

  async #listen(): Promise<void> {
    if (this.#stopped) return;
    try {
      const client = await this.deps.db.connectListener();
      client.on('notification', (n) => {
        this.#poll.touch();
        this.wake(0);
        this.deps.onNotification?.(n.payload ?? '');
      });
      client.on('error', () => {
        // The connection died: listen again (with a catch-up round, notifications may have been lost).
        if (this.#listener === client) this.#listener = undefined;
        this.#scheduleListen();
      });
      client.on('end', () => {
        if (this.#listener === client) {
          this.#listener = undefined;
          this.#scheduleListen();
        }
      });
      await client.query(`LISTEN "${this.deps.store.channel}"`);
      this.#listener = client;
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'cannot LISTEN for outbox notifications; retrying');
      this.#scheduleListen();
    }
  }

  #scheduleListen(): void {
    if (this.#stopped || this.#listenRetry) return;
    this.#listenRetry = setTimeout(() => {
      this.#listenRetry = undefined;
      void this.#listen().then(() => this.wake(0));
    }, 1000);
  }
}
