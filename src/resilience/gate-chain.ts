import type { Queryable } from '../db/db.js';
import type { GateSignal, Hold } from '../saga/engine.js';
import type { AdmitContext, GateTx, Gates } from '../transaction/gates.js';

/**
 * Several gate kinds asked in order about one command (bulkhead, then circuit breaker, then rate
 * limit): the first refusal holds the attempt, and what the earlier ones granted in memory is given
 * back. Order matters: the bulkhead's grant is free to undo, a breaker's probe claim and a rate
 * limit's token are not, so they come last. With one part the chain is that part itself.
 */
export function chainGates(parts: readonly Gates[]): Gates | undefined {
  if (parts.length <= 1) return parts[0];
  return { begin: () => new ChainTx(parts.map((p) => p.begin())) };
}

class ChainTx implements GateTx {
  constructor(private readonly parts: readonly GateTx[]) {}

  async admit(tx: Queryable, gate: string, sagaId: string, ctx?: AdmitContext): Promise<Hold | null> {
    for (let i = 0; i < this.parts.length; i++) {
      const hold = await this.parts[i]!.admit(tx, gate, sagaId, ctx);
      if (hold) {
        for (let j = 0; j < i; j++) this.parts[j]!.undo?.(gate, sagaId);
        return hold;
      }
    }
    return null;
  }

  undo(gate: string, sagaId: string): void {
    for (const p of this.parts) p.undo?.(gate, sagaId);
  }

  record(gate: string, sagaId: string, outcome: GateSignal['outcome']): void {
    for (const p of this.parts) p.record(gate, sagaId, outcome);
  }

  async flush(tx: Queryable): Promise<void> {
    for (const p of this.parts) await p.flush(tx);
  }

  committed(): void {
    for (const p of this.parts) p.committed();
  }
}
