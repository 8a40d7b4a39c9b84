import type { Db } from '../db/db.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { OutboxDispatcher } from '../outbox/dispatcher.js';
import type { OutboxStore } from '../outbox/store.js';
import type { SagaDefinition } from '../saga/definition.js';
import type { SagaStore } from '../saga/store.js';
import { FallbackPoll } from '../scheduling/fallback-poll.js';
import { WakeLoop } from '../scheduling/wake-loop.js';
import { TransitionBatch, type AppliedDecision, type TransitionSettings } from '../transaction/transitions.js';

export interface TimerOptions {
  readonly batchSize?: number;
  /** Fallback poll for timers set by other workers that died; 0 disables it. Default 30 s. */
  readonly fallbackPollMs?: number;
  /** Fallback poll period once the worker has been idle for two minutes (0 = none). Default 300 s. */
  readonly idlePollMs?: number;
  /** Time without activity after which the worker counts as idle. Default 120 s. */
  readonly idleAfterMs?: number;
}

/**
 * Fires saga timers (step timeouts, retry back-offs). Due times live in `sagas.wake_at`, set and
 * compared with the database clock, so a skewed worker clock changes nothing and a timer that fell
 * due while every worker was down fires once after restart. No long setTimeout holds a deadline:
 * the local timer only says when to look next, and is capped so 24.8-day overflow cannot happen.
 */
export class TimerService {
  readonly #poll: FallbackPoll;
  readonly #loop: WakeLoop;
  readonly #types: string[];
  fired = 0;

  constructor(
    private readonly deps: {
      db: Db;
      sagas: SagaStore;
      outbox: OutboxStore;
      defs: ReadonlyMap<string, SagaDefinition>;
      transitions: TransitionSettings;
      dispatcher: OutboxDispatcher;
      graceMs: number;
      logger: Logger;
      onApplied: (applied: readonly AppliedDecision[]) => void;
    },
    private readonly opts: TimerOptions = {},
  ) {
    this.#types = [...deps.defs.keys()];
    // A far-away timer is looked at again every ten minutes at most; the database decides what is due.
    this.#loop = new WakeLoop(() => this.#rounds(), {
      retryMs: 1000,
      maxDelayMs: 600_000,
      onError: (err) => this.deps.logger.warn({ err: errorMessage(err) }, 'timer round failed; retrying'),
    });
    this.#poll = new FallbackPoll({ activeMs: opts.fallbackPollMs ?? 30_000, idleMs: opts.idlePollMs ?? 300_000, activeWindowMs: opts.idleAfterMs ?? 120_000 }, () => this.wakeIn(0));
  }

  /** Activity seen: keep the safety-net poll at its active rate. */
  touch(): void {
    this.#poll.touch();
  }

  start(): void {
    this.#loop.start();
    this.#poll.start();
    this.wakeIn(0);
  }

  async stop(): Promise<void> {
    this.#poll.stop();
    await this.#loop.stop();
  }

  /** Look again in `delayMs` (a committed transition set a wake time; an earlier look wins). */
  wakeIn(delayMs: number): void {
    this.#loop.wakeIn(delayMs);
  }

  async #rounds(): Promise<void> {
    const size = this.opts.batchSize ?? 200;
    for (;;) {
      if (this.#loop.stopped) return;
      const n = await this.#round(size);
      if (n < size) break;
    }
    const next = await this.deps.sagas.nextWakeInMs(this.deps.db, this.#types);
    if (next !== null) this.wakeIn(Math.max(next, 5));
  }

  async #round(size: number): Promise<number> {
    const deletes = this.deps.dispatcher.takeDeletes();
    let applied: readonly AppliedDecision[] = [];
    let count = 0;
    try {
      const written = await this.deps.db.transaction(async (tx) => {
        const due = await this.deps.sagas.claimDue(tx, size, this.#types);
        count = due.length;
        const tr = new TransitionBatch(this.deps.transitions, new Map(due.map((s) => [s.id, s])));
        for (const saga of due) {
          const d = await tr.apply(tx, this.deps.defs.get(saga.type)!, saga.id, { kind: 'timer' }, { messageId: undefined });
          if (d.outcome !== 'applied') this.deps.logger.debug({ sagaId: saga.id, code: d.code }, 'timer ignored');
        }
        applied = tr.applied;
        return tr.write(tx, { sagas: this.deps.sagas, outbox: this.deps.outbox, graceMs: this.deps.graceMs }, deletes);
      });
      this.deps.dispatcher.dispatch(written);
    } catch (err) {
      this.deps.dispatcher.giveBack(deletes);
      throw err;
    }
    this.fired += count;
    this.deps.onApplied(applied);
    return count;
  }
}
