import type { Queryable } from '../db/db.js';
import type { GateSignal, Hold } from '../saga/engine.js';

/**
 * The seam through which the orchestrator's transactions ask whether a step's command may be sent
 * now (circuit breaker, limits) and report how attempts ended. The engine stays pure: it decides,
 * the shell asks the gate in the SAME transaction, and a refusal makes the engine decide again with
 * the attempt held. One `GateTx` per transaction; it writes what it learned before commit.
 */
export interface Gates {
  begin(): GateTx;
}

/** What a gate may want to know about the command it is asked about. */
export interface AdmitContext {
  readonly commandId: string;
  readonly tenantId: string;
  /** The saga was waiting at this very gate (it may have been handed a slot while it waited). */
  readonly wasHeld: boolean;
}

export interface GateTx {
  /** null: send it; a Hold: do not, wait this long (the saga stays running, the reason visible). */
  admit(tx: Queryable, gate: string, sagaId: string, ctx?: AdmitContext): Promise<Hold | null>;
  /** A later gate refused the command this one admitted: give back what it took (in memory only). */
  undo?(gate: string, sagaId: string): void;
  /** An attempt at `gate` ended (a reply or a timeout) for saga `sagaId`. */
  record(gate: string, sagaId: string, outcome: GateSignal['outcome']): void;
  /** Writes the outcomes (breaker transitions) in the caller's transaction, after its own writes. */
  flush(tx: Queryable): Promise<void>;
  /** The transaction committed. */
  committed(): void;
}
