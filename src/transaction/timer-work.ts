import type { Db, Queryable } from '../db/db.js';
import { errorMessage, isSystemicDbError } from '../errors.js';
import type { Logger } from '../log.js';
import type { OutboxDispatcher } from '../outbox/dispatcher.js';
import type { OutboxStore } from '../outbox/store.js';
import type { SagaDefinition } from '../saga/definition.js';
import type { SagaStore } from '../saga/store.js';
import { parkSaga, type ParkedSaga } from './park.js';
import { TransitionBatch, type AppliedDecision, type TransitionSettings } from './transitions.js';
import type { SagaTracing } from '../observability/tracing.js';

export interface TimerWorkDeps {
  readonly db: Db;
  readonly sagas: SagaStore;
  readonly outbox: OutboxStore;
  readonly defs: ReadonlyMap<string, SagaDefinition>;
  readonly transitions: TransitionSettings;
  readonly dispatcher: OutboxDispatcher;
  readonly graceMs: number;
  readonly logger: Logger;
  readonly onApplied: (applied: readonly AppliedDecision[]) => void;
  /** How long a saga whose timer transition threw waits before its timer is tried again. */
  readonly parkMs: number;
  readonly tracing?: SagaTracing | undefined;
}

export interface TimerRoundResult {
  /** Due sagas claimed by the round (the caller runs another round while it gets a full one). */
  readonly claimed: number;
  /** Timers whose transition committed (applied or ignored as stale). */
  readonly fired: number;
  /** Sagas whose timer transition threw: parked instead of holding back every other timer. */
  readonly parked: readonly ParkedSaga[];
}

/**
 * One round of due timers: claim up to `size` due sagas, decide each, write everything, in ONE
 * transaction. A transition that throws (a stored saga that no longer fits its definition, a bug)
 * would roll the whole round back and fail it again every second, so no other timer of the worker
 * would ever fire. The round is then re-run one saga per transaction, as the message path isolates
 * a bad message (run.ts): the others commit, and the failing saga is parked - its timer pushed
 * `parkMs` out and its reason saying why - so it can neither block the others nor loop hot, and it
 * resumes by itself once the cause is fixed (e.g. the definition deployed with its step back).
 * Failures of the database itself are not the saga's fault: they fail the round, which is retried.
 */
export async function runTimerRound(deps: TimerWorkDeps, size: number): Promise<TimerRoundResult> {
  const types = [...deps.defs.keys()];
  const seen: string[] = [];
  try {
    const fired = await fire(deps, (tx) => deps.sagas.claimDue(tx, size, types), seen);
    return { claimed: fired, fired, parked: [] };
  } catch (err) {
    if (isSystemicDbError(err) || seen.length === 0) throw err;
    deps.logger.warn({ err: errorMessage(err), size: seen.length }, 'timer round failed; isolating its sagas one by one');
  }
  let fired = 0;
  const parked: ParkedSaga[] = [];
  for (const id of seen) {
    const one: string[] = [];
    try {
      fired += await fire(deps, (tx) => deps.sagas.claimDue(tx, 1, types, [id]), one);
    } catch (err) {
      if (isSystemicDbError(err)) throw err;
      const p = await parkSaga(deps, id, 'timer', err, deps.parkMs);
      if (p) parked.push(p);
    }
  }
  return { claimed: seen.length, fired, parked };
}

/** Claims with `claim`, applies a timer input to each claimed saga and writes, in one transaction. */
async function fire(deps: TimerWorkDeps, claim: (tx: Queryable) => ReturnType<SagaStore['claimDue']>, seen: string[]): Promise<number> {
  const deletes = deps.dispatcher.takeDeletes();
  let applied: readonly AppliedDecision[] = [];
  let batch: TransitionBatch | undefined;
  let count = 0;
  try {
    const written = await deps.db.transaction(async (tx) => {
      const due = await claim(tx);
      seen.push(...due.map((s) => s.id));
      count = due.length;
      const tr = (batch = new TransitionBatch(deps.transitions, new Map(due.map((s) => [s.id, s]))));
      for (const saga of due) {
        const span = deps.tracing?.sagaTimer(saga.type, saga.id);
        let d: Awaited<ReturnType<TransitionBatch['apply']>>;
        try {
          d = await tr.apply(tx, deps.defs.get(saga.type)!, saga.id, { kind: 'timer', deadline: saga.deadlineDue }, { messageId: undefined, trace: span });
        } catch (err) {
          span?.end(err);
          throw err;
        }
        span?.end();
        if (d.outcome !== 'applied') deps.logger.debug({ sagaId: saga.id, code: d.code }, 'timer ignored');
      }
      applied = tr.applied;
      return tr.write(tx, { sagas: deps.sagas, outbox: deps.outbox, graceMs: deps.graceMs }, deletes);
    });
    deps.dispatcher.dispatch(written);
  } catch (err) {
    deps.dispatcher.giveBack(deletes);
    throw err;
  }
  batch?.committed();
  deps.onApplied(applied);
  return count;
}
