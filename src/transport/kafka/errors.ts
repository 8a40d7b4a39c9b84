import type { PublishErrorCode } from '../contract.js';
/**
 * What a failed kafkajs produce means for the caller. kafkajs wraps the broker's error in retry
 * errors (`KafkaJSNumberOfRetriesExceeded`, `KafkaJSNonRetriableError`) with the original in
 * `cause`; the broker's error code is the `type` of the innermost KafkaJSProtocolError.
 */
export interface ProduceFailure {
  readonly code: PublishErrorCode;
  readonly retryable: boolean;
  readonly message: string;
}

/**
 * Broker errors that no retry fixes for THIS message: the relay parks such rows with the reason.
 * RECORD_LIST_TOO_LARGE / MESSAGE_TOO_LARGE are also what a too large *batch* gets; the publisher
 * splits batches before it calls a message too large (see kafka.ts).
 */
const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);
const INVALID = new Set(['INVALID_RECORD', 'CORRUPT_MESSAGE', 'INVALID_TIMESTAMP', 'UNSUPPORTED_COMPRESSION_TYPE']);
/** The topic vanished (deleted after it was declared) or is not known to the broker. */
const NO_TOPIC = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'UNKNOWN_TOPIC_ID', 'INVALID_TOPIC_EXCEPTION']);

function chain(err: unknown): unknown[] {
  const out: unknown[] = [];
  let e: unknown = err;
  for (let i = 0; i < 10 && e !== undefined && e !== null; i++) {
    out.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

export function kafkaErrorType(err: unknown): string | undefined {
  for (const e of chain(err)) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string') return type;
  }
  return undefined;
}

export function classifyProduceError(err: unknown): ProduceFailure {
  const message = err instanceof Error ? err.message : String(err);
  const type = kafkaErrorType(err);
  if (type && TOO_LARGE.has(type)) return { code: 'MESSAGE_TOO_LARGE', retryable: false, message };
  if (type && INVALID.has(type)) return { code: 'INVALID_MESSAGE', retryable: false, message };
  if (type && NO_TOPIC.has(type)) return { code: 'UNROUTABLE', retryable: true, message };
  const names = chain(err).map((e) => (e as { name?: unknown }).name);
  if (names.includes('KafkaJSTopicMetadataNotLoaded') || names.includes('KafkaJSMetadataNotLoaded')) {
    return { code: 'UNROUTABLE', retryable: true, message };
  }
  if (names.includes('KafkaJSRequestTimeoutError')) return { code: 'PUBLISH_TIMEOUT', retryable: true, message };
  return { code: 'PUBLISH_FAILED', retryable: true, message };
}
