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
   * How long a saga held at a full bulkhead sleeps before it asks again on its own. It is woken
   * much earlier: a freed slot is handed to the longest-waiting saga in the freeing transaction,
   * and a once-a-second sweep hands idle slots on. Long on purpose: a backlog of 100,000 held
   * sagas waking on their own would flood the timers (measured: with 2 minutes, the self-wakes of
   * a 100,000 burst crowded out the handed sagas and the replies).
   */
  readonly maxWaitMs: number;
}

export const DEFAULT_BULKHEAD: Omit<BulkheadPolicy, 'maxInFlight'> = Object.freeze({ maxWaitMs: 3_600_000 });

/** What a module configures (module export `resilience`), keyed by gate name. */
export interface ResilienceConfig {
  readonly circuits?: Readonly<Record<string, Partial<BreakerPolicy>>>;
  readonly bulkheads?: Readonly<Record<string, Partial<BulkheadPolicy> & { maxInFlight: number }>>;
  readonly rateLimits?: Readonly<Record<string, Partial<RateLimitPolicy> & { perSecond: number }>>;
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

/** Rate limit of one gate: at most `perSecond` commands sent per second, across every process. */
export interface RateLimitPolicy {
  readonly perSecond: number;
  /** Tokens the bucket holds at most (a burst after a quiet spell; also what a late ask still finds). Default perSecond / 4, at least 1. */
  readonly burst: number;
  /** Also at most this many per second for any one tenant, so one tenant cannot take the whole rate. */
  readonly perTenant: number | undefined;
  /**
   * A process takes tokens from the shared bucket a few at a time (perSecond x leaseMs / 1000) and
   * spends them within leaseMs; what it has not spent by then is dropped, never carried over, so
   * the rate can fall a little below perSecond but never above it. Default 100 ms.
   */
  readonly leaseMs: number;
}

export function rateLimitPolicy(gate: string, p: Partial<RateLimitPolicy> & { perSecond: number }): RateLimitPolicy {
  const bad = (what: string) => new DefinitionError(`rate limit ${gate}: ${what}`);
  if (!(Number.isFinite(p.perSecond) && p.perSecond > 0)) throw bad('perSecond must be a positive number');
  const r: RateLimitPolicy = { burst: Math.max(1, p.perSecond / 4), perTenant: undefined, leaseMs: 100, ...p };
  if (!(Number.isFinite(r.burst) && r.burst >= 1)) throw bad('burst must be >= 1');
  if (r.perTenant !== undefined && !(Number.isFinite(r.perTenant) && r.perTenant > 0)) throw bad('perTenant must be a positive number');
  if (!(Number.isFinite(r.leaseMs) && r.leaseMs > 0)) throw bad('leaseMs must be a positive number');
  return Object.freeze(r);
}

export function rateLimitPolicies(cfg: ResilienceConfig | undefined): ReadonlyMap<string, RateLimitPolicy> {
  return new Map(Object.entries(cfg?.rateLimits ?? {}).map(([gate, p]) => [gate, rateLimitPolicy(gate, p)]));
}
