import type { Queryable } from '../db/db.js';
import { Params } from '../db/params.js';
import { SagaflowError } from '../errors.js';
import type { WrittenMessage } from '../outbox/dispatcher.js';
import type { OutboxStore } from '../outbox/store.js';
import type { InputRowWrite, SagaStore, SagaWrite, StepRowWrite } from '../saga/store.js';
import type { OutgoingMessage } from '../transport/contract.js';

export interface BatchWrites {
  readonly sagas: readonly SagaWrite[];
  readonly steps: readonly StepRowWrite[];
  /** Applied inputs kept for history export (none when recording is off). */
  readonly inputs?: readonly InputRowWrite[];
  readonly messages: readonly OutgoingMessage[];
  /** Outbox rows confirmed earlier, deleted in this same statement. */
  readonly deletes: readonly string[];
}

/**
 * Everything a batch changes, in ONE statement (one round trip): saga inserts and version-checked
 * updates, step-history upserts, outbox inserts and deletes of already-sent rows, as data-modifying
 * CTEs over unnest()ed arrays. The version check is a fence on top of the row lock: if it ever
 * fails, the transaction is rolled back rather than losing an update.
 */
export interface WriteStores {
  readonly sagas: SagaStore;
  readonly outbox: OutboxStore;
  /** How long the relay leaves new outbox rows to this process's own publish after COMMIT. */
  readonly graceMs: number;
}

export async function writeBatch(
  tx: Queryable,
  stores: WriteStores,
  w: BatchWrites,
): Promise<WrittenMessage[]> {
  const p = new Params();
  const { ctes, updatedCheck, expectedUpdates } = stores.sagas.writeCtes(p, w.sagas, w.steps, w.inputs ?? []);
  if (w.messages.length > 0) ctes.push(stores.outbox.insertCte(p, w.messages, stores.graceMs));
  if (w.deletes.length > 0) ctes.push(stores.outbox.deleteCte(p, w.deletes));
  if (ctes.length === 0) return [];
  const outboxSelect =
    w.messages.length > 0
      ? `(SELECT array_agg(id::text) FROM outbox_ins) AS ids, (SELECT array_agg(message_id::text) FROM outbox_ins) AS mids`
      : `NULL::text[] AS ids, NULL::text[] AS mids`;
  // Every CTE is referenced or not, Postgres runs data-modifying CTEs either way.
  const sql = `WITH ${ctes.join(',\n')}\nSELECT ${updatedCheck ?? '0'} AS updated, ${outboxSelect}`;
  const { rows } = await tx.query<{ updated: number; ids: string[] | null; mids: string[] | null }>(sql, p.values);
  const row = rows[0]!;
  if (row.updated !== expectedUpdates) {
    throw new SagaflowError('CONCURRENT_UPDATE', `saga version check failed: ${row.updated} of ${expectedUpdates} sagas updated`, {
      retryable: true,
    });
  }
  if (w.messages.length === 0) return [];
  const byId = new Map<string, OutgoingMessage>(w.messages.map((m) => [m.id, m]));
  const ids = row.ids ?? [];
  const mids = row.mids ?? [];
  return ids.map((outboxId, i) => ({ outboxId, message: byId.get(mids[i]!)! }));
}
