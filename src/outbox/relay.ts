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
      // Per message: published, failed for good (parked with its reason) or failed for now (rescheduled).
      const failures = new Map<string, { retryable: boolean; message: string }>();
      try {
        await this.deps.publisher.publish(rows.map((r) => r.message));
      } catch (err) {
        if (err instanceof PublishError) {
          for (const f of err.failures) failures.set(f.id, { retryable: f.retryable, message: f.message });
        } else {
          for (const r of rows) failures.set(r.message.id, { retryable: true, message: errorMessage(err) });
        }
      }
      const ok = rows.filter((r) => !failures.has(r.message.id));
      const permanent = rows.filter((r) => failures.get(r.message.id)?.retryable === false);
      const retry = rows.filter((r) => failures.get(r.message.id)?.retryable === true);
      await this.deps.store.deleteSent(tx, ok.map((r) => r.id));
      // The transport says whether a retry can help (too large, refused record, bad topic name: no).
      const byMessage = new Map<string, typeof permanent>();
      for (const r of permanent) {
        const why = failures.get(r.message.id)!.message;
        byMessage.set(why, [...(byMessage.get(why) ?? []), r]);
      }
      for (const [why, parked] of byMessage) {
        await this.deps.store.park(tx, parked.map((r) => r.id), why);
        this.deps.logger.error({ count: parked.length, err: why }, 'outbox rows parked: the broker refuses them for good');
      }
      if (retry.length > 0) {
        const error = failures.get(retry[0]!.message.id)!.message;
        const attempts = Math.max(...retry.map((r) => r.attempts));
        const delay = Math.min((this.opts.retryDelayMs ?? 1000) * 2 ** attempts, this.opts.maxRetryDelayMs ?? 60_000);
        await this.deps.store.reschedule(tx, retry.map((r) => r.id), delay, error);
        this.deps.logger.warn({ count: retry.length, err: error, retryInMs: delay }, 'outbox publish failed; rescheduled');
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
