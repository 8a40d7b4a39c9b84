import type { Queryable } from '../db/db.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { SagaStore } from '../saga/store.js';

/** What a parked saga's `reason` starts with (sagas list / show, the admin API, alerts grep for it). */
export const PARKED_PREFIX = 'parked: ';
const MAX_REASON = 500;

export interface ParkedSaga {
  readonly sagaId: string;
  readonly sagaType: string;
  readonly error: string;
}

/**
 * Marks a saga that an input could not move because its transition threw (a stored saga that no
 * longer fits its definition, a bug): the input itself is isolated elsewhere (a dead letter, a
 * timer pushed out), this makes the saga say so - `parked: <what> failed: <error>` - with a warning.
 * `retryInMs` (timers) moves its wake time out; null leaves it. Null when nothing was parked.
 */
export async function parkSaga(
  deps: { db: Queryable; sagas: SagaStore; logger: Logger },
  sagaId: string,
  what: string,
  err: unknown,
  retryInMs: number | null,
): Promise<ParkedSaga | null> {
  const error = errorMessage(err);
  const reason = `${PARKED_PREFIX}${what} failed: ${error}`.slice(0, MAX_REASON);
  const row = await deps.sagas.park(deps.db, sagaId, reason, retryInMs);
  if (!row) return null;
  deps.logger.warn(
    { sagaId, sagaType: row.type, err: error, code: (err as { code?: unknown }).code, ...(retryInMs !== null ? { retryInMs } : {}) },
    `saga parked: its ${what} failed; the other sagas go on (fix the cause, e.g. the definition)`,
  );
  return { sagaId, sagaType: row.type, error };
}
