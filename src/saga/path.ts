import type { Decision, SagaInput } from './engine.js';
import { STEP_HEADERS, type Phase, type SagaStatus } from './state.js';

/**
 * The path an input took: what `decide()` made of it, without ids, times or back-off jitter. Saved
 * with every applied input (saga_inputs.result) and compared by history replay: a changed
 * definition that would send another command, go to another step or end otherwise for the same
 * input shows up as a different path.
 */
export interface PathSummary {
  readonly outcome: Decision['outcome'];
  readonly code: string | null;
  readonly status: SagaStatus | null;
  /** Where the saga waits afterwards. */
  readonly at: { readonly step: string; readonly phase: Phase; readonly attempt: number; readonly waiting: string } | null;
  readonly commands: readonly { readonly type: string; readonly step: string | null; readonly phase: string | null }[];
  /** A local step the input makes the worker run now. */
  readonly local: string | null;
}

export function pathOf(d: Decision): PathSummary {
  const cursor = d.instance?.state.cursor ?? null;
  return {
    outcome: d.outcome,
    code: d.code ?? null,
    status: d.instance?.status ?? null,
    at: cursor ? { step: cursor.step, phase: cursor.phase, attempt: cursor.attempt, waiting: cursor.waiting } : null,
    commands: d.commands.map((c) => ({ type: c.message.type, step: c.headers[STEP_HEADERS.step] ?? null, phase: c.headers[STEP_HEADERS.phase] ?? null })),
    local: d.runLocal?.step ?? null,
  };
}

/** A short human name of an input, for divergence messages. */
export function describeInput(input: SagaInput | { readonly kind: string }): string {
  switch (input.kind) {
    case 'start':
      return `start (message ${(input as { messageId: string }).messageId})`;
    case 'reply': {
      const r = input as { type: string; messageId: string };
      return `reply ${r.type} (message ${r.messageId})`;
    }
    case 'local-result':
      return `local step result (${(input as { ok: boolean }).ok ? 'ok' : 'failed'})`;
    case 'timer':
      return 'timer';
    default:
      return `operator ${input.kind}`;
  }
}
