import { DefinitionError } from '../errors.js';
import type { SagaDefinition } from './definition.js';
import type { EngineState, Phase, SagaInstance } from './state.js';

/**
 * A user-written move of in-flight sagas from one definition version to another, run by
 * `sagaflow sagas migrate`. The step map is the coverage: every step a migrated saga has done or is
 * at must be listed (old name -> new name), so a saga in a step the author did not think about is
 * refused rather than guessed at.
 */
export interface SagaMigration {
  readonly saga: string;
  readonly from: number;
  readonly to: number;
  /** Old step name -> step name in the target version, for every step the mapping covers. */
  readonly steps: Readonly<Record<string, string>>;
  /** The saga data in the target version's shape (default: unchanged). Must be pure. */
  readonly data?: (data: any, at: { readonly step: string | null; readonly phase: Phase | null }) => unknown;
}

export type MigrationResult =
  | { readonly ok: true; readonly data: unknown; readonly state: EngineState }
  | { readonly ok: false; readonly reason: string };

/** Checks a migration against the definitions it names (at module load: every error is a programming error). */
export function checkMigration(m: SagaMigration, from: SagaDefinition | undefined, to: SagaDefinition | undefined): void {
  const label = `migration of ${m.saga} v${m.from} -> v${m.to}`;
  if (!from || !to) throw new DefinitionError(`${label}: the module must define both versions`);
  if (m.from === m.to) throw new DefinitionError(`${label}: from and to are the same version`);
  for (const [old, next] of Object.entries(m.steps)) {
    if (!from.step(old)) throw new DefinitionError(`${label}: v${m.from} has no step ${old}`);
    if (!to.step(next)) throw new DefinitionError(`${label}: v${m.to} has no step ${next} (mapped from ${old})`);
  }
}

/**
 * The instance's data and engine state in the target version, or why it cannot be moved. Pure: the
 * caller holds the saga's row lock and writes the result.
 */
export function migrateInstance(m: SagaMigration, from: SagaDefinition, to: SagaDefinition, inst: SagaInstance): MigrationResult {
  const s = inst.state;
  const cursor = s.cursor;
  const mentioned = new Set([...s.done, ...s.undone, ...Object.keys(s.kept), ...(cursor ? [cursor.step] : []), ...(s.failedAt ? [s.failedAt.step] : [])]);
  const uncovered = [...mentioned].filter((n) => m.steps[n] === undefined);
  if (uncovered.length > 0) {
    return { ok: false, reason: `saga ${inst.id} is in or past step(s) ${uncovered.join(', ')}, which the migration ${m.saga} v${m.from} -> v${m.to} does not cover` };
  }
  const rename = (n: string) => m.steps[n]!;
  if (cursor) {
    const target = to.step(rename(cursor.step))!;
    const action = cursor.phase === 'forward' ? target.forward : target.compensation;
    if (!action) return { ok: false, reason: `saga ${inst.id} is compensating ${cursor.step}, but ${target.name} has nothing to compensate in v${m.to}` };
    if (cursor.waiting === 'reply') {
      // The command in flight was sent by the old step: its reply must mean the same in the new one.
      const old = from.step(cursor.step);
      const sent = (cursor.phase === 'forward' ? old?.forward : old?.compensation)?.command?.type;
      if (action.command?.type !== sent) {
        return { ok: false, reason: `saga ${inst.id} waits for the reply to ${sent} at ${cursor.step}; ${target.name} in v${m.to} sends ${action.command?.type ?? 'no command'} instead` };
      }
    }
    if (cursor.waiting === 'local' && action.kind !== 'local') return { ok: false, reason: `saga ${inst.id} runs local step ${cursor.step}, which is remote in v${m.to}` };
  }
  let data: unknown = inst.data;
  if (m.data) {
    try {
      data = m.data(inst.data, { step: cursor ? rename(cursor.step) : null, phase: cursor?.phase ?? null });
    } catch (err) {
      return { ok: false, reason: `the data mapping threw: ${(err as Error).message}` };
    }
  }
  const state: EngineState = {
    ...s,
    done: s.done.map(rename),
    undone: s.undone.map(rename),
    kept: Object.fromEntries(Object.entries(s.kept).map(([k, v]) => [rename(k), v])),
    cursor: cursor ? { ...cursor, step: rename(cursor.step) } : null,
    failedAt: s.failedAt ? { ...s.failedAt, step: rename(s.failedAt.step) } : null,
  };
  return { ok: true, data, state };
}
