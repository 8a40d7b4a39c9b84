import type { Db, Tx } from '../db/db.js';
import { SystemicError, errorMessage, isSystemicDbError } from '../errors.js';
import type { Logger } from '../log.js';
import type { OutboxDispatcher, WrittenMessage } from '../outbox/dispatcher.js';
import type { MessageOutcome } from './outcome.js';

/** What one transaction over a batch produced: an outcome per item and the outbox rows it wrote. */
export interface WorkResult {
  /** Exactly one per item, in order. */
  readonly outcomes: readonly MessageOutcome[];
  readonly written: readonly WrittenMessage[];
  /** Runs after COMMIT returned (notifications to observers; never before the data is durable). */
  readonly committed?: () => void;
}

/** tx: the batch's transaction; the work may end it with `tx.queryAndCommit` as its last statement. */
export type Work<I> = (tx: Tx, items: readonly I[], deletes: readonly string[]) => Promise<WorkResult>;

const RETRY_IN_PLACE = /^(40001|40P01)$/;

/**
 * Runs a batch of messages in ONE transaction (inbox claims, state changes, outbox rows), then
 * hands the outbox rows to the fast path and lets the caller ack. If the transaction fails for a
 * reason tied to one message, the batch is re-run one message per transaction so the bad one is
 * isolated and the others still commit. Failures of the database itself fail the batch as a
 * SystemicError, which the transports retry without charging the messages an attempt.
 */
export async function runTransactional<I>(
  deps: { db: Db; dispatcher: OutboxDispatcher; logger: Logger },
  items: readonly I[],
  work: Work<I>,
): Promise<MessageOutcome[]> {
  try {
    return await attempt(deps, items, work);
  } catch (err) {
    if (isSystemicDbError(err)) return items.map(() => ({ kind: 'failed', error: new SystemicError(errorMessage(err), err) }));
    if (items.length === 1) return [{ kind: 'failed', error: err }];
    deps.logger.warn({ err: errorMessage(err), size: items.length }, 'batch failed; isolating its messages one by one');
    const out: MessageOutcome[] = [];
    for (const item of items) {
      try {
        out.push(...(await attempt(deps, [item], work)));
      } catch (e) {
        out.push({ kind: 'failed', error: isSystemicDbError(e) ? new SystemicError(errorMessage(e), e) : e });
      }
    }
    return out;
  }
}

async function attempt<I>(deps: { db: Db; dispatcher: OutboxDispatcher }, items: readonly I[], work: Work<I>): Promise<MessageOutcome[]> {
  for (let tries = 1; ; tries++) {
    const deletes = deps.dispatcher.takeDeletes();
    let result: WorkResult;
    try {
      result = await deps.db.transaction((tx) => work(tx, items, deletes));
    } catch (err) {
      deps.dispatcher.giveBack(deletes);
      // Serialization failures and deadlocks are resolved by running the same transaction again.
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && RETRY_IN_PLACE.test(code) && tries < 5) continue;
      throw err;
    }
    deps.dispatcher.dispatch(result.written);
    result.committed?.();
    await deps.dispatcher.capacity();
    if (result.outcomes.length !== items.length) throw new Error(`the work gave ${result.outcomes.length} outcomes for ${items.length} messages`);
    return [...result.outcomes];
  }
}
