import type { Queryable } from '../db/db.js';
import { PermanentError, RetryableError } from '../errors.js';
import { digest16 } from '../ids.js';
import type { InboxStore } from '../inbox/store.js';
import type { Logger } from '../log.js';
import type { Inbound } from './decode.js';
import type { MessageOutcome } from './outcome.js';

/**
 * One outcome slot per message of a batch. Setting a slot twice, or leaving one empty, throws: the
 * work of a transaction cannot forget a message (the bug class where an unclaimed message was taken
 * for a duplicate and silently acked) nor decide it twice.
 */
export class Outcomes {
  readonly #slots: (MessageOutcome | undefined)[];

  constructor(size: number) {
    this.#slots = new Array<MessageOutcome | undefined>(size).fill(undefined);
  }

  set(index: number, outcome: MessageOutcome): void {
    if (this.#slots[index] !== undefined) throw new Error(`message ${index} of the batch got two outcomes (${this.#slots[index]!.kind}, ${outcome.kind})`);
    this.#slots[index] = outcome;
  }

  all(): MessageOutcome[] {
    const missing = this.#slots.findIndex((o) => o === undefined);
    if (missing >= 0) throw new Error(`message ${missing} of the batch was given no outcome`);
    return this.#slots as MessageOutcome[];
  }
}

export interface ClaimedBatch {
  /** Duplicates and conflicts are settled here; the work must set one outcome for each claimed item. */
  readonly outcomes: Outcomes;
  /** Items claimed now (first copy of each id), with their index in the batch, in batch order. */
  readonly claimed: readonly { readonly index: number; readonly item: Inbound }[];
}

/**
 * The inbox step every consumer's transaction starts with: keep the first copy of each message id
 * in the batch, claim them all in one statement, and sort out what is new, what is a duplicate
 * (same id, same meaning: acknowledged and skipped) and what reuses an id with another meaning
 * (ID_CONFLICT), whether the other copy is in this batch or was seen before. Ids are compared in
 * their canonical spelling (decode lower-cased them; the inbox lower-cases again).
 */
export async function claimBatch(tx: Queryable, inbox: InboxStore, consumer: string, items: readonly Inbound[], logger: Logger): Promise<ClaimedBatch> {
  const outcomes = new Outcomes(items.length);
  const first = new Map<string, number>();
  items.forEach((it, i) => {
    const id = it.envelope.id.toLowerCase();
    const f = first.get(id);
    if (f === undefined) first.set(id, i);
    else if (items[f]!.digest.equals(it.digest)) {
      outcomes.set(i, { kind: 'duplicate', of: 'batch' });
    } else {
      outcomes.set(i, { kind: 'failed', error: new PermanentError('ID_CONFLICT', `message id ${id} appears twice in one batch with different contents`) });
    }
  });
  const claim = await inbox.claim(
    tx,
    consumer,
    [...first].map(([id, i]) => ({ messageId: id, digest: items[i]!.digest, bodyDigest: () => digest16(items[i]!.delivery.body) })),
  );
  const claimed: { index: number; item: Inbound }[] = [];
  for (const [id, i] of first) {
    const item = items[i]!;
    if (claim.claimed.has(id)) {
      claimed.push({ index: i, item });
    } else if (claim.duplicates.has(id)) {
      outcomes.set(i, { kind: 'duplicate', of: 'inbox' });
      logger.debug({ messageId: id, type: item.envelope.type, consumer }, 'duplicate delivery ignored');
    } else if (claim.conflicts.has(id)) {
      outcomes.set(i, { kind: 'failed', error: new PermanentError('ID_CONFLICT', `message id ${id} was seen before with different contents`) });
    } else {
      outcomes.set(i, { kind: 'failed', error: new RetryableError('CONCURRENT_UPDATE', `the inbox row of message ${id} changed under the claim; retrying`) });
    }
  }
  return { outcomes, claimed };
}
