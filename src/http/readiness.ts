import { SagaflowError, errorMessage, isSystemicDbError } from '../errors.js';
import type { Logger } from '../log.js';

export interface ReadinessState {
  readonly ready: boolean;
  /** Why not (null when ready): safe to show to anyone, the details are in the log. */
  readonly reason: string | null;
}

export interface ReadinessOptions {
  /** First wait between checks while not ready; doubles up to `maxRetryMs`. */
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  /** A check result is reused this long, so probes (anyone may call /readyz) cannot flood the database. */
  readonly cacheMs?: number;
}

/**
 * Whether the admin API can serve: the database answers and its schema is what this code expects.
 * `serve` starts listening at once (liveness answers), checks in the background until it is ready
 * (and again after a failed check), and answers the API routes 503 meanwhile: an orchestrator
 * starts the API and the database in any order and routes traffic once /readyz says 200.
 */
export class Readiness {
  #state: ReadinessState = { ready: false, reason: 'not checked yet' };
  #checkedAt = -Infinity;
  #inflight: Promise<ReadinessState> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delay: number;
  #stopped = true;
  #logged: string | null = null;

  constructor(
    private readonly check: () => Promise<void>,
    private readonly logger: Logger,
    private readonly opts: ReadinessOptions = {},
  ) {
    this.#delay = opts.retryMs ?? 1000;
  }

  get state(): ReadinessState {
    return this.#state;
  }

  /** Checks until the first success, backing off; again whenever a later check fails. */
  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The current state, checked now unless a check finished less than `cacheMs` ago (concurrent callers share one). */
  probe(): Promise<ReadinessState> {
    if (Date.now() - this.#checkedAt < (this.opts.cacheMs ?? 1000)) return Promise.resolve(this.#state);
    return this.#checkNow();
  }

  #checkNow(): Promise<ReadinessState> {
    this.#inflight ??= this.#run().finally(() => (this.#inflight = undefined));
    return this.#inflight;
  }

  async #run(): Promise<ReadinessState> {
    try {
      await this.check();
      if (!this.#state.ready) this.logger.info('admin API ready: the database answers and the schema is current');
      this.#state = { ready: true, reason: null };
      this.#logged = null;
      this.#delay = this.opts.retryMs ?? 1000;
    } catch (err) {
      const reason = publicReason(err);
      // One line per distinct problem, not one per check.
      if (this.#logged !== errorMessage(err)) {
        this.#logged = errorMessage(err);
        this.logger.warn({ err: errorMessage(err), reason }, 'admin API not ready; serving /healthz and answering 503 until it is');
      }
      this.#state = { ready: false, reason };
      this.#schedule(this.#delay);
      this.#delay = Math.min(this.#delay * 2, this.opts.maxRetryMs ?? 10_000);
    }
    this.#checkedAt = Date.now();
    return this.#state;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#checkNow();
    }, delayMs);
    this.#timer.unref();
  }
}

/** What a probe may tell anyone: the schema's state is no secret, the database's address is (it is logged). */
function publicReason(err: unknown): string {
  if (err instanceof SagaflowError && (err.code === 'MIGRATION_FAILED' || err.code === 'SCHEMA_TOO_NEW')) return err.message;
  if ((err instanceof SagaflowError && err.code === 'SYSTEMIC') || isSystemicDbError(err)) return 'the database is unavailable';
  return 'the database check failed (the server log says why)';
}
