/**
 * What became of one delivered message: exactly one of these, chosen explicitly by the transaction
 * work. There is no implicit "not claimed, so a duplicate": a message is a duplicate only when the
 * inbox holds its id with the same meaning, and everything that cannot be applied carries an error
 * (a PermanentError is dead-lettered at once with its reason code; a retryable one is retried and
 * dead-lettered as MAX_ATTEMPTS_EXCEEDED when its attempts run out).
 */
export type MessageOutcome =
  /** Processed and recorded in the inbox. `note` says why it changed nothing, if it did not (a late reply...). */
  | { readonly kind: 'applied'; readonly note?: string }
  /** The inbox (or an earlier copy in the same batch) holds this id with the same meaning. */
  | { readonly kind: 'duplicate'; readonly of: 'inbox' | 'batch' }
  | { readonly kind: 'failed'; readonly error: unknown };

export const APPLIED: MessageOutcome = Object.freeze({ kind: 'applied' });

export function failed(error: unknown): MessageOutcome {
  return { kind: 'failed', error };
}
