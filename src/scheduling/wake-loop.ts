/**
 * Runs a job when asked, never twice at once, at the earliest time anyone asked for: the scheduling
 * shared by the outbox relay and the timer service. A request while the job runs makes it run
 * again right after; a failed run is retried after `retryMs`. Local timers only say when to look
 * next (capped, so no setTimeout beyond 2^31 ms); what is due is always decided by the database.
 */
export class WakeLoop {
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(
    private readonly job: () => Promise<void>,
    private readonly opts: { retryMs: number; maxDelayMs?: number; onError: (err: unknown) => void },
  ) {}

  start(): void {
    this.#stopped = false;
  }

  /** Stops scheduling and waits for a run in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    await this.#running;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Run after `delayMs` (an earlier request wins). */
  wakeIn(delayMs: number): void {
    if (this.#stopped) return;
    const delay = Math.min(Math.max(0, delayMs), this.opts.maxDelayMs ?? 60_000);
    const at = Date.now() + delay;
    if (this.#timer && at >= this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.kick();
    }, delay);
  }

  /** Run now (or right after the run in progress). */
  kick(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.job()
      .catch((err: unknown) => {
        this.opts.onError(err);
        this.wakeIn(this.opts.retryMs);
      })
      .finally(() => {
        this.#running = undefined;
        if (this.#again && !this.#stopped) {
          this.#again = false;
          this.kick();
        }
      });
  }

  /** Runs now and resolves when no run is in progress or asked for. */
  async drain(): Promise<void> {
    this.kick();
    while (this.#running) await this.#running;
  }
}
