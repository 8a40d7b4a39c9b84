import type { Tx } from '../db/db.js';
import { Params } from '../db/params.js';
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

export interface WriteStores {
  readonly sagas: SagaStore;
  readonly outbox: OutboxStore;
  /** How long the relay leaves new outbox rows to this process's own publish after COMMIT. */
  readonly graceMs: number;
}

/**
 * Everything a batch changes, in ONE statement (one round trip): saga inserts and version-checked
 * updates, step-history upserts, outbox inserts and deletes of already-sent rows, as data-modifying
 * CTEs over jsonb arrays. The version check is a fence inside the statement on top of the row lock:
 * if it ever fails, the statement fails (SQLSTATE 40001, re-run with fresh reads) rather than losing
 * an update. With `last`, the statement is the transaction's last and COMMIT rides with it.
 */
export async function writeBatch(
  tx: Tx,
  stores: WriteStores,
  w: BatchWrites,
  opts: { last?: boolean } = {},
): Promise<WrittenMessage[]> {
  const p = new Params();
  const { ctes, fence } = stores.sagas.writeCtes(p, w.sagas, w.steps, w.inputs ?? []);
  if (w.messages.length > 0) ctes.push(stores.outbox.insertCte(p, w.messages, stores.graceMs));
  if (w.deletes.length > 0) ctes.push(stores.outbox.deleteCte(p, w.deletes));
  if (ctes.length === 0) return [];
  // Outbox id and message id pairs as one text ("id message-id,..."): a bigint and a uuid hold
  // neither separator, and splitting a string is far cheaper than the client's text[] parser.
  const outboxSelect = w.messages.length > 0 ? `(SELECT string_agg(id::text || ' ' || message_id::text, ',') FROM outbox_ins) AS pairs` : `NULL::text AS pairs`;
  // Every CTE is referenced or not, Postgres runs data-modifying CTEs either way.
  const sql = `WITH ${ctes.join(',\n')}\nSELECT ${fence ?? 'true'} AS fenced, ${outboxSelect}`;
  const { rows } = await (opts.last ? tx.queryAndCommit<{ pairs: string | null }>(sql, p.values) : tx.query<{ pairs: string | null }>(sql, p.values));
  const row = rows[0]!;
  if (w.messages.length === 0) return [];
  const byId = new Map<string, OutgoingMessage>(w.messages.map((m) => [m.id, m]));
  if (row.pairs === null) return [];
  return row.pairs.split(',').map((pair) => {
    const space = pair.indexOf(' ');
    return { outboxId: pair.slice(0, space), message: byId.get(pair.slice(space + 1))! };
  });
}
