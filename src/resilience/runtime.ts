import type { Db } from '../db/db.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Gates } from '../transaction/gates.js';
import { BulkheadGates } from './bulkhead-gates.js';
import { CircuitGates } from './circuit-gates.js';
import { chainGates } from './gate-chain.js';
import { breakerPolicies, bulkheadPolicies, rateLimitPolicies, type ResilienceConfig } from './policy.js';
import { RateGates } from './rate-gates.js';

export interface ResilienceOptions {
  readonly schema: string;
  readonly config: ResilienceConfig | undefined;
  /** Use the circuit breakers (SAGAFLOW_CIRCUITS). */
  readonly circuits: boolean;
  /** Use the bulkheads and rate limits (SAGAFLOW_LIMITS). */
  readonly limits: boolean;
  readonly logger: Logger;
  readonly random: () => number;
  /** Held sagas were woken: look for due timers now. */
  readonly onRelease: () => void;
  readonly circuitRefreshMs?: number | undefined;
  /** How often the bulkheads' safety net runs (default 1 s). */
  readonly pumpMs?: number | undefined;
}

/** The gates a worker's transactions ask, and the background work they need. Nothing configured: no gates, no cost. */
export interface ResilienceRuntime {
  readonly gates: Gates | undefined;
  readonly circuits: CircuitGates | undefined;
  readonly bulkheads: BulkheadGates | undefined;
  readonly rates: RateGates | undefined;
  start(db: Db): Promise<void>;
  stop(): void;
}

export function resilienceRuntime(o: ResilienceOptions & { readonly db: Db }): ResilienceRuntime {
  const breakers = o.circuits ? breakerPolicies(o.config) : new Map();
  const heads = o.limits ? bulkheadPolicies(o.config) : new Map();
  const limits = o.limits ? rateLimitPolicies(o.config) : new Map();
  const common = { schema: o.schema, logger: o.logger, random: o.random, onRelease: o.onRelease };
  const circuits = breakers.size > 0 ? new CircuitGates({ ...common, policies: breakers, ...(o.circuitRefreshMs !== undefined ? { refreshMs: o.circuitRefreshMs } : {}) }) : undefined;
  const bulkheads = heads.size > 0 ? new BulkheadGates({ ...common, policies: heads }) : undefined;
  const rates = limits.size > 0 ? new RateGates({ schema: o.schema, db: o.db, policies: limits }) : undefined;
  // The bulkhead first: its grant is undone in memory if the breaker or the rate limit refuses.
  // The rate limit last: a token is only spent on a command that will be sent.
  const gates = chainGates([bulkheads, circuits, rates].filter((g): g is NonNullable<typeof g> => g !== undefined));
  let pump: NodeJS.Timeout | undefined;
  let pumping = false;
  return {
    gates,
    circuits,
    bulkheads,
    rates,
    async start(db) {
      if (!bulkheads) return;
      await bulkheads.ensure(db);
      pump = setInterval(() => {
        if (pumping) return;
        pumping = true;
        bulkheads
          .pump(db)
          .catch((err: unknown) => o.logger.warn({ err: errorMessage(err) }, 'bulkhead safety net failed; next round retries'))
          .finally(() => (pumping = false));
      }, o.pumpMs ?? 1000);
      pump.unref();
    },
    stop() {
      if (pump) clearInterval(pump);
    },
  };
}
