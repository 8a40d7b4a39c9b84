import { DefinitionError } from '../errors.js';

/**
 * Circuit-breaker settings of one gate. A gate is, by default, the topic of a step's command (one
 * breaker per participant); a step may name another (`gate: 'ChargePayment'`, one per command type).
 */
export interface BreakerPolicy {
  /** Technical failures (timeouts, outage replies) within the sliding window that open it. */
  readonly failureThreshold: number;
  /**
   * Also require this share of the window's outcomes to be failures (0..1). Costs one breaker-row
   * update per batch with outcomes even when healthy (successes must be counted); without it,
   * only failures are written and a healthy breaker costs no write at all.
   */
  readonly failureRate: number | undefined;
  /** With failureRate: the fewest outcomes in the window before the rate counts. */
  readonly minCalls: number;
  readonly windowMs: number;
  /** Open this long before one probe may go through (half-open). */
  readonly coolDownMs: number;
  /** A probe not answered within this lets another one go (its saga crashed or has no timeout). */
  readonly probeTimeoutMs: number;
  /** When it closes, the sagas held at it are woken at most this many per second (no herd). */
  readonly releasePerSecond: number;
}

export const DEFAULT_BREAKER: BreakerPolicy = Object.freeze({
  failureThreshold: 5,
  failureRate: undefined,
  minCalls: 20,
  windowMs: 10_000,
  coolDownMs: 5_000,
  probeTimeoutMs: 30_000,
  releasePerSecond: 200,
});

/** Concurrency limit (bulkhead) of one gate: commands sent whose reply is not yet applied. */
export interface BulkheadPolicy {
  readonly maxInFlight: number;
  /**
   * How long a saga held at a full bulkhead sleeps before it asks again on its own. It is normally
   * woken much earlier: a freed slot is handed to the longest-waiting saga at once. Long on purpose,
   * so that a backlog of 100,000 held sagas costs no polling.
   */
  readonly maxWaitMs: number;
}

export const DEFAULT_BULKHEAD: Omit<BulkheadPolicy, 'maxInFlight'> = Object.freeze({ maxWaitMs: 120_000 });

/** What a module configures (module export `resilience`), keyed by gate name. */
export interface ResilienceConfig {
  readonly circuits?: Readonly<Record<string, Partial<BreakerPolicy>>>;
  readonly bulkheads?: Readonly<Record<string, Partial<BulkheadPolicy> & { maxInFlight: number }>>;
}

export function breakerPolicy(gate: string, p: Partial<BreakerPolicy>): BreakerPolicy {
  const r = { ...DEFAULT_BREAKER, ...p };
  const bad = (what: string) => new DefinitionError(`circuit ${gate}: ${what}`);
  if (!Number.isInteger(r.failureThreshold) || r.failureThreshold < 1) throw bad('failureThreshold must be an integer >= 1');
  if (r.failureRate !== undefined && !(r.failureRate > 0 && r.failureRate <= 1)) throw bad('failureRate must be within (0, 1]');
  if (!Number.isInteger(r.minCalls) || r.minCalls < 1) throw bad('minCalls must be an integer >= 1');
  for (const k of ['windowMs', 'coolDownMs', 'probeTimeoutMs', 'releasePerSecond'] as const) {
    if (!(Number.isFinite(r[k]) && r[k] > 0)) throw bad(`${k} must be a positive number`);
  }
  return Object.freeze(r);
}

export function breakerPolicies(cfg: ResilienceConfig | undefined): ReadonlyMap<string, BreakerPolicy> {
  return new Map(Object.entries(cfg?.circuits ?? {}).map(([gate, p]) => [gate, breakerPolicy(gate, p)]));
}

export function bulkheadPolicy(gate: string, p: Partial<BulkheadPolicy> & { maxInFlight: number }): BulkheadPolicy {
  const r = { ...DEFAULT_BULKHEAD, ...p };
  if (!Number.isInteger(r.maxInFlight) || r.maxInFlight < 1) throw new DefinitionError(`bulkhead ${gate}: maxInFlight must be an integer >= 1`);
  if (!(Number.isFinite(r.maxWaitMs) && r.maxWaitMs > 0)) throw new DefinitionError(`bulkhead ${gate}: maxWaitMs must be a positive number`);
  return Object.freeze(r);
}

export function bulkheadPolicies(cfg: ResilienceConfig | undefined): ReadonlyMap<string, BulkheadPolicy> {
  return new Map(Object.entries(cfg?.bulkheads ?? {}).map(([gate, p]) => [gate, bulkheadPolicy(gate, p)]));
}
