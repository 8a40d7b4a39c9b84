import type { Queryable } from '../db/db.js';
import { PermanentError, RetryableError } from '../errors.js';
import { digest16 } from '../ids.js';
import { sameMessage, type InboxStore } from '../inbox/store.js';
import type { Logger } from '../log.js';
import type { Inbound } from './decode.js';
import { failed, type MessageOutcome } from './outcome.js';

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
  // Copies of one id in this batch, in batch order; the first one is claimed for all of them.
  const copies = new Map<string, number[]>();
  items.forEach((it, i) => {
    const id = it.envelope.id.toLowerCase();
    const list = copies.get(id);
    if (list) list.push(i);
    else copies.set(id, [i]);
  });
  const request = (i: number) => ({ digest: items[i]!.digest, bodyDigest: () => digest16(items[i]!.delivery.body) });
  const claim = await inbox.claim(tx, consumer, [...copies].map(([id, [first]]) => ({ messageId: id, ...request(first!) })));
  const claimed: { index: number; item: Inbound }[] = [];
  const conflict = (id: string, where: string) => failed(new PermanentError('ID_CONFLICT', `message id ${id} was ${where} with different contents`));
  for (const [id, [first, ...rest]] of copies) {
    const f = first!;
    if (claim.claimed.has(id)) {
      // New: the first copy is applied; the others of the batch compare with it.
      claimed.push({ index: f, item: items[f]! });
      for (const i of rest) outcomes.set(i, items[i]!.digest.equals(items[f]!.digest) ? { kind: 'duplicate', of: 'batch' } : conflict(id, 'in the same batch'));
      continue;
    }
    const stored = claim.stored.get(id);
    if (stored === undefined) {
      for (const i of [f, ...rest]) outcomes.set(i, failed(new RetryableError('CONCURRENT_UPDATE', `the inbox row of message ${id} changed under the claim; retrying`)));
      continue;
    }
    // Seen before: every copy compares with what the inbox holds, not with its neighbours in the batch.
    for (const i of [f, ...rest]) {
      if (sameMessage(stored, request(i))) {
        outcomes.set(i, { kind: 'duplicate', of: 'inbox' });
        logger.debug({ messageId: id, type: items[i]!.envelope.type, consumer }, 'duplicate delivery ignored');
      } else {
        outcomes.set(i, conflict(id, 'seen before'));
      }
    }
  }
  return { outcomes, claimed };
}
