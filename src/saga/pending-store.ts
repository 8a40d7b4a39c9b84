import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import type { SagaInput } from './engine.js';
import type { SagaInstance } from './state.js';
import { WAITING_PREFIX, type DefinitionKey } from './versions.js';

/** An input parked for a saga whose definition version the receiving worker does not have. */
export interface PendingInput {
  readonly sagaId: string;
  readonly messageId: string;
  readonly consumer: string;
  readonly topic: string;
  readonly input: SagaInput;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** NOTIFY payload on the outbox channel: inputs were parked; a worker with their version may drain them. */
export const PENDING_NOTIFICATION = 'pending-inputs';

const WAITING_LIKE = `'${WAITING_PREFIX}%'`;

/**
 * The parked inputs of sagas waiting for their definition version, and the marker that makes the
 * wait visible. Why a table and not a broker redelivery: the message is claimed in the inbox and
 * parked in the same transaction, so it is acked exactly when it is safely kept (nothing is lost)
 * and the broker never hands it back (nothing loops hot, no attempt budget runs out into a dead
 * letter while the right worker is merely not deployed yet). A worker that has the version applies
 * the parked inputs, in arrival order, before anything else it does to that saga.
 */
export class PendingInputStore {
  readonly #t: string;
  readonly #sagas: string;
  /** The timer clock (migrations/0005_clock.sql), as the saga store compares wake times with it. */
  readonly #now: string;
  constructor(schema: string) {
    const q = quoteSchema(schema);
    this.#now = `${q}.sagaflow_now()`;
    this.#t = `${q}.saga_pending_inputs`;
    this.#sagas = `${q}.sagas`;
  }

  /** Keeps inputs; with `channel`, tells the other workers at COMMIT (one of them may have the version). */
  async park(tx: Queryable, rows: readonly PendingInput[], channel?: string): Promise<void> {
    if (rows.length === 0) return;
    if (channel) await this.notify(tx, channel);
    await tx.query(
      `INSERT INTO ${this.#t} (saga_id, message_id, consumer, topic, input, headers, body)
       SELECT u.saga_id, u.message_id, u.consumer, u.topic, u.input, u.headers, decode(u.body, 'base64')
       FROM jsonb_to_recordset($1::jsonb) AS u(saga_id uuid, message_id uuid, consumer text, topic text, input jsonb, headers jsonb, body text)
       ON CONFLICT (saga_id, message_id) DO NOTHING`,
      [
        JSON.stringify(
          rows.map((r) => ({ saga_id: r.sagaId, message_id: r.messageId, consumer: r.consumer, topic: r.topic, input: r.input, headers: r.headers, body: r.body.toString('base64') })),
        ),
      ],
    );
  }

  /** Wakes the other workers' check for parked inputs they can now apply (delivered at COMMIT). */
  async notify(tx: Queryable, channel: string): Promise<void> {
    await tx.query('SELECT pg_notify($1, $2)', [channel, PENDING_NOTIFICATION]);
  }

  /**
   * Sets the "waiting for definition" reason on sagas (status and version stay: it is no
   * transition), keeping their own reason aside. Returns the sagas newly marked, so the caller
   * warns once and not on every input.
   */
  async markWaiting(tx: Queryable, marks: readonly { sagaId: string; reason: string }[]): Promise<string[]> {
    if (marks.length === 0) return [];
    const { rows } = await tx.query<{ id: string }>(
      `UPDATE ${this.#sagas} s
       SET reason_before_wait = CASE WHEN s.reason LIKE ${WAITING_LIKE} THEN s.reason_before_wait ELSE s.reason END,
           reason = u.reason, updated_at = now()
       FROM jsonb_to_recordset($1::jsonb) AS u(id uuid, reason text)
       WHERE s.id = u.id AND s.reason IS DISTINCT FROM u.reason
       RETURNING s.id::text`,
      [JSON.stringify(marks.map((m) => ({ id: m.sagaId, reason: m.reason })))],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Marks due sagas whose version is not among `keys` (a worker without it meets their timer): their
   * wake time stays, for a worker that has the version. Only sagas not marked yet are touched, so
   * repeated rounds write nothing.
   */
  async markDueWaiting(tx: Queryable, types: readonly string[], keys: readonly DefinitionKey[]): Promise<{ id: string; type: string; version: number }[]> {
    const { rows } = await tx.query<{ id: string; saga_type: string; definition_version: number }>(
      `UPDATE ${this.#sagas} s
       SET reason_before_wait = s.reason, reason = '${WAITING_PREFIX}' || s.saga_type || ' v' || s.definition_version, updated_at = now()
       WHERE s.id IN (
         SELECT id FROM ${this.#sagas}
         WHERE wake_at <= ${this.#now} AND saga_type = ANY($1::text[])
           AND (saga_type, definition_version) NOT IN (SELECT * FROM unnest($2::text[], $3::int[]))
           AND (reason IS NULL OR reason NOT LIKE ${WAITING_LIKE})
         LIMIT 100 FOR UPDATE SKIP LOCKED)
       RETURNING s.id::text, s.saga_type, s.definition_version`,
      [types, keys.map((k) => k.type), keys.map((k) => k.version)],
    );
    return rows.map((r) => ({ id: r.id, type: r.saga_type, version: r.definition_version }));
  }

  /** Puts a saga's own reason back (a worker with its version has it now); returns the instances as restored. */
  async resume(tx: Queryable, sagas: readonly SagaInstance[]): Promise<SagaInstance[]> {
    const waiting = sagas.filter((s) => s.reason?.startsWith(WAITING_PREFIX));
    if (waiting.length === 0) return [];
    const { rows } = await tx.query<{ id: string; reason: string | null }>(
      `UPDATE ${this.#sagas} SET reason = reason_before_wait, reason_before_wait = NULL
       WHERE id = ANY($1::uuid[]) AND reason LIKE ${WAITING_LIKE} RETURNING id::text, reason`,
      [waiting.map((s) => s.id)],
    );
    const restored = new Map(rows.map((r) => [r.id, r.reason]));
    return waiting.filter((s) => restored.has(s.id)).map((s) => ({ ...s, reason: restored.get(s.id) ?? null }));
  }

  /** Removes and returns the parked inputs of these sagas, in arrival order. */
  async take(tx: Queryable, sagaIds: readonly string[]): Promise<PendingInput[]> {
    if (sagaIds.length === 0) return [];
    const { rows } = await tx.query<{ seq: string; saga_id: string; message_id: string; consumer: string; topic: string; input: SagaInput; headers: Record<string, string>; body: Buffer }>(
      `DELETE FROM ${this.#t} WHERE saga_id = ANY($1::uuid[])
       RETURNING seq, saga_id::text, message_id::text, consumer, topic, input, headers, body`,
      [sagaIds],
    );
    return rows
      .sort((a, b) => Number(a.seq) - Number(b.seq))
      .map((r) => ({ sagaId: r.saga_id, messageId: r.message_id, consumer: r.consumer, topic: r.topic, input: r.input, headers: r.headers, body: r.body }));
  }

  /**
   * Sagas with parked inputs that a worker having `keys` can now drive, locked (SKIP LOCKED: a saga
   * busy elsewhere waits a round). Also finds sagas an operator migrated to a version it has.
   */
  async claimDrivable(tx: Queryable, keys: readonly DefinitionKey[], limit: number): Promise<string[]> {
    const { rows } = await tx.query<{ id: string }>(
      `SELECT s.id::text FROM ${this.#sagas} s
       WHERE s.id IN (SELECT DISTINCT saga_id FROM ${this.#t})
         AND (s.saga_type, s.definition_version) IN (SELECT * FROM unnest($1::text[], $2::int[]))
       ORDER BY s.id LIMIT $3 FOR UPDATE OF s SKIP LOCKED`,
      [keys.map((k) => k.type), keys.map((k) => k.version), limit],
    );
    return rows.map((r) => r.id);
  }
}
