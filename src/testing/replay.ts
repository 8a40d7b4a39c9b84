import { readFileSync } from 'node:fs';
import { SagaflowError } from '../errors.js';
import type { SagaDefinition } from '../saga/definition.js';
import { decide, type SagaInput } from '../saga/engine.js';
import { HISTORY_FORMAT, type SagaHistory } from '../saga/history.js';
import { describeInput, pathOf, type PathSummary } from '../saga/path.js';
import type { SagaInstance } from '../saga/state.js';

export { HISTORY_FORMAT, type HistoryEntry, type SagaHistory } from '../saga/history.js';

export interface ReplayResult {
  /** Inputs replayed (all of them, unless the history crosses an operator's migration). */
  readonly replayed: number;
  /** Set when replay stopped at a migration to another definition version. */
  readonly stoppedAt?: string;
  readonly final: SagaInstance | null;
}

/** A recorded history that the definition would now take along another path. */
export class HistoryDivergence extends SagaflowError {
  constructor(
    message: string,
    readonly index: number,
    readonly recorded: PathSummary,
    readonly now: PathSummary,
  ) {
    super('DEFINITION_MISMATCH', message);
  }
}

export function readHistory(file: string): SagaHistory {
  const h = JSON.parse(readFileSync(file, 'utf8')) as SagaHistory;
  if (h?.format !== HISTORY_FORMAT || !Array.isArray(h.inputs)) {
    throw new SagaflowError('USAGE', `${file} is not a ${HISTORY_FORMAT} file (write one with: sagaflow history export <saga-id>)`);
  }
  return h;
}

// Back-off jitter only moves wake times, which paths leave out: any fixed source will do.
const FIXED = { random: () => 0.5 };

/**
 * Replays a recorded history against `def` with the pure engine, input by input, and throws a
 * HistoryDivergence at the first input whose path (outcome, status, step it waits at, commands,
 * local step) differs from the recorded one. A definition change that passes this for the
 * histories of sagas in flight is safe to deploy as the same version; one that fails needs a new
 * version (or a migration).
 */
export function replayHistory(def: SagaDefinition<any, any>, history: SagaHistory, label = `saga ${history.sagaId}`): ReplayResult {
  if (history.sagaType !== def.name) throw new SagaflowError('USAGE', `${label} is a ${history.sagaType}, the definition is ${def.name}`);
  let instance: SagaInstance | null = null;
  let replayed = 0;
  for (const [i, entry] of history.inputs.entries()) {
    if (entry.input.kind === 'migrate') {
      return { replayed, stoppedAt: `input #${i + 1}: migrated to v${String(entry.input.to)}`, final: instance };
    }
    const d = decide(def as SagaDefinition, instance, entry.input as unknown as SagaInput, FIXED);
    const now = pathOf(d);
    const diff = differences(entry.path, now);
    if (diff.length > 0) {
      throw new HistoryDivergence(
        `${label} (${def.name} v${def.version}) diverged at input #${i + 1} of ${history.inputs.length}, ${describeInput(entry.input)}:\n  ${diff.join('\n  ')}`,
        i,
        entry.path,
        now,
      );
    }
    instance = d.instance;
    replayed++;
  }
  return { replayed, final: instance };
}

/** Replays several history files; the error names every file that diverged. */
export function replayHistoryFiles(def: SagaDefinition<any, any>, files: readonly string[]): ReplayResult[] {
  const failures: string[] = [];
  const out: ReplayResult[] = [];
  for (const f of files) {
    try {
      out.push(replayHistory(def, readHistory(f), f));
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  if (failures.length > 0) throw new SagaflowError('DEFINITION_MISMATCH', `${failures.length} of ${files.length} histories diverged:\n${failures.join('\n')}`);
  return out;
}

/** JSON with object keys sorted: a history read back from jsonb has its keys in another order. */
function show(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

function differences(recorded: PathSummary, now: PathSummary): string[] {
  const out: string[] = [];
  const fields: (keyof PathSummary)[] = ['outcome', 'code', 'status', 'at', 'commands', 'local'];
  const names: Record<keyof PathSummary, string> = { outcome: 'outcome', code: 'code', status: 'status', at: 'waits at', commands: 'commands sent', local: 'local step run' };
  for (const f of fields) {
    if (show(recorded[f] ?? null) !== show(now[f] ?? null)) out.push(`${names[f]}: recorded ${show(recorded[f] ?? null)}, now ${show(now[f] ?? null)}`);
  }
  return out;
}
