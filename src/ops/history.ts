import type { Queryable } from '../db/db.js';
import { NotFoundError } from '../errors.js';
import type { SagaStore } from '../saga/store.js';
import { HISTORY_FORMAT, type SagaHistory } from '../saga/history.js';

/** A saga's recorded inputs as a history file's content (`sagaflow history export`). */
export async function historyOf(db: Queryable, store: SagaStore, sagaId: string): Promise<SagaHistory> {
  const saga = await store.get(db, sagaId);
  if (!saga) throw new NotFoundError(`no saga ${sagaId}`);
  const rows = await store.recordedInputs(db, sagaId);
  if (rows.length === 0 || rows[0]!.input.kind !== 'start') {
    throw new NotFoundError(`saga ${sagaId} has no recorded history from its start (inputs are kept while SAGAFLOW_RECORD_INPUTS=on, since migration 0008)`);
  }
  return {
    format: HISTORY_FORMAT,
    sagaId,
    sagaType: saga.type,
    definitionVersion: rows[0]!.definitionVersion,
    inputs: rows.map((r) => ({ version: r.version, definitionVersion: r.definitionVersion, input: r.input, path: r.result })),
  };
}
