import type { Queryable } from '../db/db.js';
import { PermanentError } from '../errors.js';
import type { InboxStore } from '../inbox/store.js';
import type { Logger } from '../log.js';
import type { Outcome } from '../scheduling/batcher.js';
import type { Inbound } from './decode.js';

const OK: Outcome<void> = { ok: true, value: undefined };

export interface ClaimedBatch {
  /** One outcome per item, in order: ok, or an ID_CONFLICT to dead-letter. Callers add their own. */
  readonly outcomes: Outcome<void>[];
  /** Items claimed now (first copy of each id), with their index in the batch, in batch order. */
  readonly claimed: readonly { readonly index: number; readonly item: Inbound }[];
  /** Items the inbox had seen before (acknowledged without effect). */
  readonly duplicates: number;
}

/**
 * The inbox step every consumer's transaction starts with: keep the first copy of each message id
 * in the batch, claim them all in one statement, and sort out what is new, what is a duplicate
 * (acknowledged and skipped) and what reuses an id with another body (ID_CONFLICT, docs/fault-matrix.md "Bad input"
 * row 13), whether the other copy is in this batch or was seen before.
 */
export async function claimBatch(tx: Queryable, inbox: InboxStore, consumer: string, items: readonly Inbound[], logger: Logger): Promise<ClaimedBatch> {
  const outcomes: Outcome<void>[] = items.map(() => OK);
  const first = new Map<string, number>();
  items.forEach((it, i) => {
    const f = first.get(it.envelope.id);
    if (f === undefined) first.set(it.envelope.id, i);
    else if (!items[f]!.digest.equals(it.digest)) {
      outcomes[i] = { ok: false, error: new PermanentError('ID_CONFLICT', `message id ${it.envelope.id} appears twice in one batch with different bodies`) };
    }
  });
  const claim = await inbox.claim(
    tx,
    consumer,
    [...first.values()].map((i) => ({ messageId: items[i]!.envelope.id, digest: items[i]!.digest })),
  );
  const claimed: { index: number; item: Inbound }[] = [];
  let duplicates = 0;
  for (const [id, i] of first) {
    const item = items[i]!;
    if (claim.conflicts.has(id)) {
      outcomes[i] = { ok: false, error: new PermanentError('ID_CONFLICT', `message id ${id} was seen before with a different body`) };
    } else if (!claim.claimed.has(id)) {
      duplicates++;
      logger.debug({ messageId: id, type: item.envelope.type, consumer }, 'duplicate delivery ignored');
    } else {
      claimed.push({ index: i, item });
    }
  }
  return { outcomes, claimed, duplicates };
}
