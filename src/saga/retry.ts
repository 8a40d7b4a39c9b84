import { DefinitionError } from '../errors.js';
/** Exponential back-off with jitter, for step retries. Pure: the random source is passed in. */
export interface StepRetry {
  /** Attempts in all, the first one included. 1 = never retry. */
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly multiplier: number;
  /** 0..1: the share of each delay that is randomised ("full jitter" at 1). */
  readonly jitter: number;
}

export const DEFAULT_STEP_RETRY: StepRetry = Object.freeze({
  maxAttempts: 3,
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  multiplier: 2,
  jitter: 0.2,
});

/** Compensations must eventually succeed, so they get a longer budget by default. */
export const DEFAULT_COMPENSATION_RETRY: StepRetry = Object.freeze({
  maxAttempts: 10,
  initialDelayMs: 500,
  maxDelayMs: 60_000,
  multiplier: 2,
  jitter: 0.2,
});

export function normalizeRetry(partial: Partial<StepRetry> | undefined, base: StepRetry): StepRetry {
  const r = { ...base, ...partial };
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1) throw new DefinitionError(`retry.maxAttempts must be an integer >= 1, got ${r.maxAttempts}`);
  if (!(r.initialDelayMs >= 0) || !(r.maxDelayMs >= r.initialDelayMs)) throw new DefinitionError('retry delays must satisfy 0 <= initialDelayMs <= maxDelayMs');
  if (!(r.multiplier >= 1)) throw new DefinitionError('retry.multiplier must be >= 1');
  if (!(r.jitter >= 0 && r.jitter <= 1)) throw new DefinitionError('retry.jitter must be within 0..1');
  return Object.freeze(r);
}

/** Delay before attempt `nextAttempt` (2 = the first retry). */
export function backoffMs(spec: StepRetry, nextAttempt: number, random: () => number): number {
  const exp = spec.initialDelayMs * spec.multiplier ** Math.max(0, nextAttempt - 2);
  const capped = Math.min(spec.maxDelayMs, exp);
  const jittered = capped * (1 - spec.jitter) + capped * spec.jitter * random();
  return Math.max(0, Math.round(jittered));
}
