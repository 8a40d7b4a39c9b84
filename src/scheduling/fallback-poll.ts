/**
 * The safety-net poll of the relay and the timer service, for work another process left behind
 * (a worker that crashed and never came back). Everything else wakes them without polling
 * (NOTIFY, this process's own writes and failures, the due times it knows), so the net only
 * needs to be fine-meshed while the system is busy: after `activeWindowMs` without activity it
 * polls every `idleMs` instead (0 = not at all), so an idle worker issues almost no queries.
 */
export interface FallbackPollOptions {
  /** Poll period while active. 0 disables the poll entirely. */
  readonly activeMs: number;
  /** Poll period once idle. 0 = no polling while idle. */
  readonly idleMs: number;
  readonly activeWindowMs?: number;
}

export class FallbackPoll {
  #timer: NodeJS.Timeout | undefined;
  #lastActivity = Date.now();
  #lastPoll = Date.now();
  /** Polls actually run (tests and metrics). */
  polls = 0;

  constructor(
    private readonly opts: FallbackPollOptions,
    private readonly poll: () => void,
  ) {}

  start(): void {
    if (this.opts.activeMs <= 0) return;
    this.#timer = setInterval(() => this.#tick(), this.opts.activeMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Something happened (a batch, a notification): poll at the active rate for a while. */
  touch(): void {
    this.#lastActivity = Date.now();
  }

  #tick(): void {
    const now = Date.now();
    const idle = now - this.#lastActivity > (this.opts.activeWindowMs ?? 120_000);
    if (idle && (this.opts.idleMs <= 0 || now - this.#lastPoll < this.opts.idleMs)) return;
    this.#lastPoll = now;
    this.polls++;
    this.poll();
  }
}
