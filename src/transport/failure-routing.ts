import type { ErrorClass } from '../errors.js';
import { redeliveryDelayMs, type RedeliveryPolicy } from './contract.js';

/**
 * What happens to a message whose handler rejected: ONE pure function for every transport. The
 * adapters (memory.ts, rabbitmq/failures.ts, kafka/failures.ts) only carry the route out
 * and report back what the broker said about the copy it asked for.
 */
export interface FailureFacts {
  /** The handler's error, classified by `classifyError`. */
  readonly error: Pick<ErrorClass, 'code' | 'retryable' | 'countsAsAttempt' | 'message'>;
  /** The delivery attempt that failed (1 on the first delivery). */
  readonly attempt: number;
  readonly policy: RedeliveryPolicy;
  /**
   * The failing consumer is the dead-letter recorder. Its dead letters cannot go to the dead-letter
   * topic (they would come back to it with their recorded reason overwritten).
   */
  readonly recorder: boolean;
  /** The subscription was given a DeadLetterSink (Postgres `dead_letters`, from the worker). */
  readonly sink: boolean;
  /**
   * The broker refused, for good, the copy an earlier route asked for: it is too large with its
   * added headers (Kafka's message.max.bytes) or cannot be encoded (an AMQP header table over
   * 64 KiB). Transient refusals (broker down, channel closed) are not facts of the message: the
   * adapter tries the same copy again with a back-off.
   */
  readonly refused?: { readonly copy: 'retry' | 'dead-letter'; readonly code: string; readonly message: string };
}

export type FailureRoute =
  /** Copy to the retry queue/topic of `delayMs`; the copy carries `attempt`. */
  | { readonly action: 'retry'; readonly attempt: number; readonly delayMs: number }
  /** Copy to the dead-letter topic with this reason; the original is acked once the copy is confirmed. */
  | { readonly action: 'dead-letter'; readonly reason: string; readonly error: string }
  /** No broker copy is possible: record it in Postgres through the sink, then ack the original. */
  | { readonly action: 'record'; readonly reason: string; readonly error: string }
  /** Nothing can store it now: keep the original unacknowledged and route again after `delayMs`. */
  | { readonly action: 'hold'; readonly delayMs: number; readonly why: string };

/** How long a message nothing can store waits before it is tried again (never a hot loop). */
export const HOLD_MS = 30_000;

export function routeFailure(f: FailureFacts): FailureRoute {
  const { error: e, policy } = f;
  const next = e.countsAsAttempt ? f.attempt + 1 : f.attempt;
  const exhausted = e.retryable && next > policy.maxAttempts;
  const reason = !e.retryable ? e.code : exhausted ? 'MAX_ATTEMPTS_EXCEEDED' : e.code;
  const error = e.retryable && exhausted ? `${e.code}: ${e.message}` : e.message;

  if (f.refused) {
    // The recorder's sink is the very thing that failed; the message stays where it is.
    if (f.recorder) return { action: 'hold', delayMs: HOLD_MS, why: `the recorder cannot record it and its copy is refused: ${f.refused.message}` };
    // A dead-letter copy only adds headers to a retry copy: once either is refused, the other would
    // be too, so the message goes to Postgres directly, with the reason it failed for.
    const note = `${error} (its ${f.refused.copy} copy was refused by the broker: ${f.refused.code}: ${f.refused.message})`;
    if (!f.sink) return { action: 'hold', delayMs: HOLD_MS, why: note };
    return { action: 'record', reason, error: note };
  }
  if (e.retryable && !exhausted) return { action: 'retry', attempt: next, delayMs: redeliveryDelayMs(policy, f.attempt) };
  if (f.recorder) {
    // Parked in the recorder's slowest retry tier, attempt unchanged, its recorded headers intact.
    return { action: 'retry', attempt: f.attempt, delayMs: Math.max(0, ...policy.delaysMs) };
  }
  return { action: 'dead-letter', reason, error };
}
