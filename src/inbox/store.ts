import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';

/**
 * The inbox: one row per (consumer, message id) processed. Claiming a message inserts its row in
 * the same transaction as the work it causes, so a redelivery after COMMIT finds the row and does
 * nothing, and a crash before COMMIT leaves no row and the redelivery does the work.
 */
export interface ClaimRequest {
  readonly messageId: string;
  /** Digest of the message's meaning (src/messages/envelope.ts meaningDigest). */
  readonly digest: Buffer;
  /**
   * Digest of the raw body, which rows written before digests were taken over the meaning hold: a
   * redelivery of a message the previous release processed is still a duplicate, not ID_CONFLICT.
   * Computed only for a message whose id is already there.
   */
  readonly bodyDigest?: () => Buffer;
}

export interface ClaimResult {
  /** Claimed now: process them. */
  readonly claimed: ReadonlySet<string>;
  /** Seen before with the same body: a duplicate to acknowledge and skip. */
  readonly duplicates: ReadonlySet<string>;
  /** Seen before with a different meaning: an id collision or a forged message (ID_CONFLICT). */
  readonly conflicts: ReadonlySet<string>;
  /**
   * Neither claimed nor found: the row that blocked the insert was deleted before the look-up (a
   * concurrent release). Never taken for a duplicate: the caller retries the message.
   */
  readonly unresolved: ReadonlySet<string>;
  /** The digest the inbox holds for every id that was there already (duplicates and conflicts). */
  readonly stored: ReadonlyMap<string, Buffer>;
}

/** Whether `stored` (an inbox row's digest) is that of the message `r`: by meaning, or by bytes for rows of the previous release. */
export function sameMessage(stored: Buffer, r: Pick<ClaimRequest, 'digest' | 'bodyDigest'>): boolean {
  return stored.equals(r.digest) || (r.bodyDigest !== undefined && stored.equals(r.bodyDigest()));
}

/** Postgres prints a uuid in lower case: every id is compared in that spelling, whatever the caller passed. */
const canonical = (id: string): string => id.toLowerCase();

export class InboxStore {
  readonly #t: string;
  constructor(schema: string) {
    this.#t = `${quoteSchema(schema)}.inbox`;
  }

  /** One statement for the whole batch. Ids are sorted so concurrent batches lock index entries in one order (no deadlock). */
  async claim(tx: Queryable, consumer: string, requests: readonly ClaimRequest[]): Promise<ClaimResult> {
    const sorted = requests.map((r) => ({ ...r, messageId: canonical(r.messageId) })).sort((a, b) => (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0));
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
    const unresolved = new Set<string>();
    const stored = new Map<string, Buffer>();
    if (others.length > 0) {
      const seen = await tx.query<{ message_id: string; digest: Buffer }>(
        `SELECT message_id, digest FROM ${this.#t} WHERE consumer = $1 AND message_id = ANY($2::uuid[])`,
        [consumer, others.map((r) => r.messageId)],
      );
      for (const r of seen.rows) stored.set(r.message_id, r.digest);
      for (const r of others) {
        const d = stored.get(r.messageId);
        if (d === undefined) unresolved.add(r.messageId);
        else if (sameMessage(d, r)) duplicates.add(r.messageId);
        else conflicts.add(r.messageId);
      }
    }
    return { claimed, duplicates, conflicts, unresolved, stored };
  }

  /** Gives claims back (their messages were rejected), so a later redelivery or redrive processes them. */
  async release(tx: Queryable, consumer: string, messageIds: readonly string[]): Promise<void> {
    if (messageIds.length === 0) return;
    await tx.query(`DELETE FROM ${this.#t} WHERE consumer = $1 AND message_id = ANY($2::uuid[])`, [consumer, messageIds.map(canonical)]);
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
