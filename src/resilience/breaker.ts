import type { BreakerPolicy } from './policy.js';

/**
 * The breaker's rules as pure functions over one row, so they are tested without a database.
 * The window is a sliding-window COUNTER: the current fixed window plus the previous one weighted
 * by how much of it still overlaps the sliding window (the usual approximation: two counters per
 * breaker instead of one entry per outcome, and exact enough for a threshold).
 */
export type CircuitState = 'closed' | 'open' | 'half_open';

export interface BreakerRow {
  readonly state: CircuitState;
  readonly forced: 'open' | null;
  readonly failures: number;
  readonly calls: number;
  readonly prevFailures: number;
  readonly prevCalls: number;
  /** Database now minus window_start. */
  readonly windowAgeMs: number;
  readonly probeSaga: string | null;
}

export interface Outcomes {
  technical: number;
  ok: number;
  /** Outcome per saga (the last one), to find the probe's. */
  readonly bySaga: Map<string, 'ok' | 'technical'>;
}

export interface BreakerChange {
  readonly state: CircuitState;
  /** How window_start moves: stays, advances by one window, or restarts at now(). */
  readonly windowShift: 'keep' | 'advance' | 'reset';
  readonly failures: number;
  readonly calls: number;
  readonly prevFailures: number;
  readonly prevCalls: number;
  /** The breaker opened (again): set opened_at, retry_at = now() + cool-down. */
  readonly opened: boolean;
  /** The breaker closed: release the sagas held at it. */
  readonly closed: boolean;
}

export function rollWindow(r: BreakerRow, windowMs: number): Pick<BreakerChange, 'windowShift' | 'failures' | 'calls' | 'prevFailures' | 'prevCalls'> & { ageMs: number } {
  if (r.windowAgeMs >= 2 * windowMs) return { windowShift: 'reset', failures: 0, calls: 0, prevFailures: 0, prevCalls: 0, ageMs: 0 };
  if (r.windowAgeMs >= windowMs) {
    return { windowShift: 'advance', failures: 0, calls: 0, prevFailures: r.failures, prevCalls: r.calls, ageMs: r.windowAgeMs - windowMs };
  }
  return { windowShift: 'keep', failures: r.failures, calls: r.calls, prevFailures: r.prevFailures, prevCalls: r.prevCalls, ageMs: r.windowAgeMs };
}

/** Failures and calls in the sliding window ending now. */
export function windowEstimate(w: { failures: number; calls: number; prevFailures: number; prevCalls: number; ageMs: number }, windowMs: number): { failures: number; calls: number } {
  const weight = Math.max(0, 1 - w.ageMs / windowMs);
  return { failures: w.failures + w.prevFailures * weight, calls: w.calls + w.prevCalls * weight };
}

export function trips(est: { failures: number; calls: number }, p: BreakerPolicy): boolean {
  if (est.failures < p.failureThreshold) return false;
  if (p.failureRate === undefined) return true;
  return est.calls >= p.minCalls && est.failures / est.calls >= p.failureRate;
}

/**
 * What outcomes do to a breaker. Closed: they fill the window; enough technical failures open it.
 * Open: they are answers to commands sent before it opened and change nothing. Half-open: only the
 * probe's outcome counts - success closes (and releases the held sagas), failure re-opens.
 */
export function applyOutcomes(r: BreakerRow, o: Outcomes, p: BreakerPolicy): BreakerChange {
  const w = rollWindow(r, p.windowMs);
  const same = { ...w, state: r.state, opened: false, closed: false };
  if (r.state === 'open' || r.forced === 'open') return same;
  if (r.state === 'half_open') {
    const probe = r.probeSaga ? o.bySaga.get(r.probeSaga) : undefined;
    if (probe === 'ok') return { state: 'closed', windowShift: 'reset', failures: 0, calls: 0, prevFailures: 0, prevCalls: 0, opened: false, closed: true };
    if (probe === 'technical') return { ...w, state: 'open', opened: true, closed: false };
    return same;
  }
  const next = { ...w, failures: w.failures + o.technical, calls: w.calls + o.technical + o.ok };
  if (trips(windowEstimate(next, p.windowMs), p)) return { ...next, state: 'open', opened: true, closed: false };
  return { ...next, state: 'closed', opened: false, closed: false };
}
