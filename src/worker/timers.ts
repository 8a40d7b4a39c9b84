import { errorMessage } from '../errors.js';
import { FallbackPoll } from '../scheduling/fallback-poll.js';
import { WakeLoop } from '../scheduling/wake-loop.js';
import { drainPending, markWaitingTimers, runTimerRound, type TimerWorkDeps } from '../transaction/timer-work.js';

export interface TimerOptions {
  readonly batchSize?: number;
  /** Fallback poll for timers set by other workers that died; 0 disables it. Default 30 s. */
  readonly fallbackPollMs?: number;
  /** Fallback poll period once the worker has been idle for two minutes (0 = none). Default 300 s. */
  readonly idlePollMs?: number;
  /** Time without activity after which the worker counts as idle. Default 120 s. */
  readonly idleAfterMs?: number;
  /** How long a saga whose timer transition threw is parked before its timer is tried again. Default 15 min. */
  readonly parkMs?: number;
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
  readonly #work: TimerWorkDeps;
  /**
   * Look for parked inputs (and unmarked timers of versions this worker lacks) in the next round:
   * at start, on the safety-net poll, and when another process says it parked something - not on
   * every round, which would add queries to the hot timer path.
   */
  #versionsCheck = true;
  fired = 0;
  /** Sagas parked because their timer transition threw (each time it happened). */
  parked = 0;

  constructor(
    private readonly deps: Omit<TimerWorkDeps, 'parkMs'>,
    private readonly opts: TimerOptions = {},
  ) {
    this.#work = { ...deps, parkMs: opts.parkMs ?? 15 * 60_000 };
    // A far-away timer is looked at again every ten minutes at most; the database decides what is due.
    this.#loop = new WakeLoop(() => this.#rounds(), {
      retryMs: 1000,
      maxDelayMs: 600_000,
      onError: (err) => this.deps.logger.warn({ err: errorMessage(err) }, 'timer round failed; retrying'),
    });
    this.#poll = new FallbackPoll({ activeMs: opts.fallbackPollMs ?? 30_000, idleMs: opts.idlePollMs ?? 300_000, activeWindowMs: opts.idleAfterMs ?? 120_000 }, () => this.checkVersions());
  }

  /** Parked inputs may be waiting for this worker (another one parked them, an operator migrated sagas). */
  checkVersions(): void {
    this.#versionsCheck = true;
    this.wakeIn(0);
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
    if (this.#versionsCheck) {
      this.#versionsCheck = false;
      try {
        await markWaitingTimers(this.#work);
        while ((await drainPending(this.#work, size)) >= size && !this.#loop.stopped);
      } catch (err) {
        this.#versionsCheck = true; // the retried round looks again
        throw err;
      }
    }
    for (;;) {
      if (this.#loop.stopped) return;
      const r = await runTimerRound(this.#work, size);
      this.fired += r.fired;
      this.parked += r.parked.length;
      if (r.claimed < size) break;
    }
    const next = await this.deps.sagas.nextWakeInMs(this.deps.db, this.deps.versions.defs.keys());
    if (next !== null) this.wakeIn(Math.max(next, 5));
  }
}
