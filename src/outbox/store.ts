import { createHash } from 'node:crypto';
import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import type { Params } from '../db/params.js';
import type { OutgoingMessage } from '../transport/contract.js';

/**
 * The outbox: messages written in the same transaction as the state change that caused them.
 * A row exists until its message was confirmed by the broker; then it is deleted (the table stays
 * small and hot). The relay claims rows with FOR UPDATE SKIP LOCKED, never with an `id > last`
 * watermark: ids are allocated before commit and commit out of order, so a watermark skips rows.
 */
export interface OutboxRow {
  readonly id: string;
  readonly message: OutgoingMessage;
  readonly attempts: number;
}

export class OutboxStore {
  readonly table: string;
  /** NOTIFY channel that wakes relays when rows are due now (client API, operator actions). */
  readonly channel: string;
  constructor(readonly schema: string) {
    this.table = `${quoteSchema(schema)}.outbox`;
    // A channel name is an identifier: pg_notify() refuses one longer than 63 bytes ("channel name
    // too long", so every enqueue would fail) and LISTEN silently truncates it. Schema names may be
    // 63 characters, so long ones get a hash; short ones keep the name older processes listen on.
    const channel = `sagaflow_outbox_${schema}`;
    this.channel = channel.length <= 63 ? channel : `sagaflow_outbox_${createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
  }

  /**
   * CTE that inserts the messages (due for the relay after `graceMs`: the writer publishes them itself
   * right after COMMIT, the relay only recovers what a crash left) and returns their ids in input order.
   */
  insertCte(p: Params, messages: readonly OutgoingMessage[], graceMs: number): string {
    // One jsonb parameter; bodies travel base64 (33% larger, no escaping) instead of the hex that
    // bytea array literals need (100% larger).
    const rows = messages.map((m) => ({ id: m.id, topic: m.topic, key: m.key, type: m.type, headers: m.headers ?? null, body: m.body.toString('base64') }));
    return `outbox_ins AS (
      INSERT INTO ${this.table} (message_id, topic, msg_key, msg_type, headers, body, publish_after)
      SELECT u.id, u.topic, u.key, u.type, u.headers, decode(u.body, 'base64'), now() + ${p.add(graceMs, 'float8')} * interval '1 millisecond'
      FROM jsonb_to_recordset(${p.add(JSON.stringify(rows), 'jsonb')}) AS u(id uuid, topic text, key text, type text, headers jsonb, body text)
      RETURNING id, message_id)`;
  }

  /** CTE deleting rows whose messages the broker confirmed (piggy-backs on a transaction that runs anyway). */
  deleteCte(p: Params, ids: readonly string[]): string {
    return `outbox_del AS (DELETE FROM ${this.table} WHERE id = ANY(${p.add(ids, 'bigint[]')}) RETURNING 1)`;
  }

  async deleteSent(db: Queryable, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await db.query(`DELETE FROM ${this.table} WHERE id = ANY($1::bigint[])`, [ids]);
  }

  /** Inserts messages due at once and wakes the relays (the NOTIFY is delivered at COMMIT). */
  async enqueue(tx: Queryable, messages: readonly OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    await tx.query(
      `INSERT INTO ${this.table} (message_id, topic, msg_key, msg_type, headers, body)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[])`,
      [
        messages.map((m) => m.id),
        messages.map((m) => m.topic),
        messages.map((m) => m.key),
        messages.map((m) => m.type),
        messages.map((m) => (m.headers ? JSON.stringify(m.headers) : null)),
        messages.map((m) => m.body),
      ],
    );
    await tx.query('SELECT pg_notify($1, $2)', [this.channel, '']);
  }

  /** Claims due rows for this relay; other relays skip them until this transaction ends. */
  async claimDue(tx: Queryable, limit: number): Promise<OutboxRow[]> {
    const { rows } = await tx.query<{
      id: string;
      message_id: string;
      topic: string;
      msg_key: string;
      msg_type: string;
      headers: Record<string, string> | null;
      body: Buffer;
      attempts: number;
    }>(
      `SELECT id, message_id, topic, msg_key, msg_type, headers, body, attempts FROM ${this.table}
       WHERE publish_after <= now() AND parked_at IS NULL
       ORDER BY publish_after, id LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [limit],
    );
    return rows.map((r) => ({
      id: r.id,
      attempts: r.attempts,
      message: {
        id: r.message_id,
        topic: r.topic,
        key: r.msg_key,
        type: r.msg_type,
        body: r.body,
        ...(r.headers ? { headers: r.headers } : {}),
      },
    }));
  }

  async reschedule(tx: Queryable, ids: readonly string[], delayMs: number, error: string): Promise<void> {
    if (ids.length === 0) return;
    await tx.query(
      `UPDATE ${this.table} SET attempts = attempts + 1, last_error = $2, publish_after = now() + $3 * interval '1 millisecond'
       WHERE id = ANY($1::bigint[])`,
      [ids, error.slice(0, 1000), delayMs],
    );
  }

  /** A row no retry can publish (too large, refused by the broker for good): kept for an operator, out of the relay's way. */
  async park(tx: Queryable, ids: readonly string[], error: string): Promise<void> {
    if (ids.length === 0) return;
    await tx.query(`UPDATE ${this.table} SET attempts = attempts + 1, last_error = $2, parked_at = now() WHERE id = ANY($1::bigint[])`, [
      ids,
      error.slice(0, 1000),
    ]);
  }

  /** Milliseconds until the earliest unparked row is due (<= 0: due now), or null when the outbox is empty. */
  async nextDueInMs(db: Queryable): Promise<number | null> {
    const { rows } = await db.query<{ ms: number | null }>(
      `SELECT (extract(epoch FROM (min(publish_after) - now())) * 1000)::float8 AS ms FROM ${this.table} WHERE parked_at IS NULL`,
    );
    return rows[0]?.ms ?? null;
  }

  async counts(db: Queryable): Promise<{ pending: number; parked: number }> {
    const { rows } = await db.query<{ pending: number; parked: number }>(
      `SELECT count(*) FILTER (WHERE parked_at IS NULL)::int AS pending, count(*) FILTER (WHERE parked_at IS NOT NULL)::int AS parked FROM ${this.table}`,
    );
    return rows[0] ?? { pending: 0, parked: 0 };
  }
}
