import type { Db, Queryable, Tx } from '../db/db.js';
import { errorMessage, isSystemicDbError } from '../errors.js';
import type { Logger } from '../log.js';
import type { OutboxDispatcher } from '../outbox/dispatcher.js';
import type { OutboxStore } from '../outbox/store.js';
import type { SagaStore } from '../saga/store.js';
import { parkSaga, type ParkedSaga } from './park.js';
import { TransitionBatch, type AppliedDecision, type TransitionSettings } from './transitions.js';
import { applyPending, resumeWaiting, type VersionDeps } from './waiting.js';
import type { SagaTracing } from '../observability/tracing.js';

export interface TimerWorkDeps {
  readonly db: Db;
  readonly sagas: SagaStore;
  readonly outbox: OutboxStore;
  /** The definitions by type and version, and where inputs of sagas of other versions wait. */
  readonly versions: VersionDeps;
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
  const keys = deps.versions.defs.keys();
  const seen: string[] = [];
  try {
    const fired = await fire(deps, (tx) => deps.sagas.claimDue(tx, size, keys), seen);
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
      fired += await fire(deps, (tx) => deps.sagas.claimDue(tx, 1, keys, [id]), one);
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
  let count = 0;
  await transitionTx(deps, async (tx) => {
    const due = await claim(tx);
    seen.push(...due.map((s) => s.id));
    count = due.length;
    const loaded = new Map(due.map((s) => [s.id, s]));
    const resumed = await resumeWaiting(tx, deps.versions, loaded);
    const tr = new TransitionBatch(deps.transitions, loaded);
    if (resumed.length > 0) await applyPending(tx, deps.versions, tr, resumed);
    for (const saga of due) {
      // Parked inputs that moved the saga on made its old timer moot (their transition set its own).
      if (tr.instance(saga.id)!.version !== saga.version) continue;
      const span = deps.tracing?.sagaTimer(saga.type, saga.id);
      let d: Awaited<ReturnType<TransitionBatch['apply']>>;
      try {
        d = await tr.apply(tx, deps.versions.defs.get(saga.type, saga.definitionVersion)!, saga.id, { kind: 'timer', deadline: saga.deadlineDue }, { messageId: undefined, trace: span });
      } catch (err) {
        span?.end(err);
        throw err;
      }
      span?.end();
      if (d.outcome !== 'applied') deps.logger.debug({ sagaId: saga.id, code: d.code }, 'timer ignored');
    }
    return tr;
  });
  return count;
}

/** One transaction of transitions the body decides, written with the outbox deletes taken over, then dispatched. */
async function transitionTx(deps: TimerWorkDeps, body: (tx: Tx) => Promise<TransitionBatch>): Promise<void> {
  const deletes = deps.dispatcher.takeDeletes();
  let applied: readonly AppliedDecision[] = [];
  let batch: TransitionBatch | undefined;
  try {
    const written = await deps.db.transaction(async (tx) => {
      const tr = (batch = await body(tx));
      applied = tr.applied;
      return tr.write(tx, { sagas: deps.sagas, outbox: deps.outbox, graceMs: deps.graceMs }, deletes, { last: true });
    });
    deps.dispatcher.dispatch(written);
  } catch (err) {
    deps.dispatcher.giveBack(deletes);
    throw err;
  }
  batch?.committed();
  deps.onApplied(applied);
}

/**
 * Sagas with parked inputs that this worker can now drive (it has their version, or an operator
 * migrated them to one it has), whether or not their timer is due: applies the inputs in one
 * transaction. Returns how many sagas were drained.
 */
export async function drainPending(deps: TimerWorkDeps, size: number): Promise<number> {
  let count = 0;
  await transitionTx(deps, async (tx) => {
    const ids = await deps.versions.pending.claimDrivable(tx, deps.versions.defs.keys(), size);
    count = ids.length;
    const loaded = await deps.sagas.lockMany(tx, ids);
    await resumeWaiting(tx, deps.versions, loaded);
    const tr = new TransitionBatch(deps.transitions, loaded);
    await applyPending(tx, deps.versions, tr, ids);
    return tr;
  });
  return count;
}

/** Marks due sagas of versions this worker lacks (once each), so operators see why their timers wait. */
export async function markWaitingTimers(deps: TimerWorkDeps): Promise<number> {
  const marked = await deps.versions.pending.markDueWaiting(deps.db, deps.versions.defs.types(), deps.versions.defs.keys());
  for (const m of marked) deps.versions.warnMissing({ type: m.type, version: m.version }, m.id);
  return marked.length;
}
