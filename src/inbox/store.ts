import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';

/**
 * The inbox: one row per (consumer, message id) processed. Claiming a message inserts its row in
 * the same transaction as the work it causes, so a redelivery after COMMIT finds the row and does
 * nothing, and a crash before COMMIT leaves no row and the redelivery does the work.
 */
export interface ClaimRequest {
  readonly messageId: string;
  readonly digest: Buffer;
}

export interface ClaimResult {
  /** Claimed now: process them. */
  readonly claimed: ReadonlySet<string>;
  /** Seen before with the same body: a duplicate to acknowledge and skip. */
  readonly duplicates: ReadonlySet<string>;
  /** Seen before with a different body: an id collision or a forged message (ID_CONFLICT). */
  readonly conflicts: ReadonlySet<string>;
}

export class InboxStore {
  readonly #t: string;
  constructor(schema: string) {
    this.#t = `${quoteSchema(schema)}.inbox`;
  }

  /** One statement for the whole batch. Ids are sorted so concurrent batches lock index entries in one order (no deadlock). */
  async claim(tx: Queryable, consumer: string, requests: readonly ClaimRequest[]): Promise<ClaimResult> {
    const sorted = [...requests].sort((a, b) => (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0));
    const { rows } = await tx.query<{ message_id: string }>(
      `INSERT INTO ${this.#t} (consumer, message_id, digest)
       SELECT $1, u.id, u.digest FROM unnest($2::uuid[], $3::bytea[]) AS u(id, digest)
       ON CONFLICT DO NOTHING RETURNING message_id`,
      [consumer, sorted.map((r) => r.messageId), sorted.map((r) => r.digest)],
    );
    const claimed = new Set(rows.map((r) => r.message_id));
    const others = sorted.filter((r) => !claimed.has(r.messageId));
    const duplicates = new Set<string>();
    const conflicts = new Set<string>();
    if (others.length > 0) {
      const seen = await tx.query<{ message_id: string; digest: Buffer }>(
        `SELECT message_id, digest FROM ${this.#t} WHERE consumer = $1 AND message_id = ANY($2::uuid[])`,
        [consumer, others.map((r) => r.messageId)],
      );
      const digests = new Map(seen.rows.map((r) => [r.message_id, r.digest]));
      for (const r of others) {
        const d = digests.get(r.messageId);
        if (d && !d.equals(r.digest)) conflicts.add(r.messageId);
        else duplicates.add(r.messageId);
      }
    }
    return { claimed, duplicates, conflicts };
  }

  /** Gives claims back (their messages were rejected), so a later redelivery or redrive processes them. */
  async release(tx: Queryable, consumer: string, messageIds: readonly string[]): Promise<void> {
    if (messageIds.length === 0) return;
    await tx.query(`DELETE FROM ${this.#t} WHERE consumer = $1 AND message_id = ANY($2::uuid[])`, [consumer, messageIds]);
  }

  /** Retention: the inbox only has to outlive redelivery; old rows are deleted in small batches. */
  async prune(db: Queryable, olderThanMs: number, limit = 5000): Promise<number> {
    const { rowCount } = await db.query(
      `DELETE FROM ${this.#t} WHERE ctid = ANY(ARRAY(
         SELECT ctid FROM ${this.#t} WHERE received_at < now() - $1 * interval '1 millisecond' LIMIT $2))`,
      [olderThanMs, limit],
    );
    return rowCount ?? 0;
  }
}
