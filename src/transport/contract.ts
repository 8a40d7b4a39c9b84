/**
 * The transport contract: the only thing sagaflow asks of a broker. Memory, RabbitMQ and Kafka
 * implement it, and one contract suite (test/contract/transport.contract.ts) runs against each.
 *
 * Delivery is at least once. A handler's promise decides the message's fate:
 * - resolves: the message is acknowledged (AMQP ack / Kafka offset may move past it). Handlers
 *   resolve only after their database transaction committed, so ack always follows COMMIT.
 * - rejects: the transport classifies the error with `classifyError` (src/errors.ts):
 *   - `retryable: false` -> dead-lettered at once to DEAD_LETTER_TOPIC with the reason headers;
 *   - `retryable: true`  -> redelivered after a delay (never a hot requeue loop); when
 *     `countsAsAttempt` is true the attempt counter grows, and once it reaches `maxAttempts`
 *     the message is dead-lettered with reason MAX_ATTEMPTS_EXCEEDED.
 *   Dead-lettering is itself at least once: the dead letter is confirmed before the original is acked.
 */

export interface OutgoingMessage {
  readonly topic: string;
  /** Ordering / partitioning key: the saga id for saga traffic. */
  readonly key: string;
  /** The envelope id; stable across re-publishes so consumers dedupe. */
  readonly id: string;
  readonly type: string;
  /** The encoded envelope. */
  readonly body: Buffer;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface Delivery {
  readonly topic: string;
  readonly key: string | undefined;
  /** Message id taken from the transport headers (the envelope's id), when present. */
  readonly id: string | undefined;
  readonly type: string | undefined;
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  /** 1 on the first delivery; grows with every counted retry (and, where the broker reports it, redelivery). */
  readonly attempt: number;
  /** The broker says this exact delivery may have been seen before (crash or connection loss). */
  readonly redelivered: boolean;
}

export type Handler = (delivery: Delivery) => Promise<void>;

export interface RedeliveryPolicy {
  /** Deliveries before the message is dead-lettered. Default 5. */
  readonly maxAttempts: number;
  /** Delay before the n-th retry (index n-1); the last value repeats. Default [200, 1000, 5000]. */
  readonly delaysMs: readonly number[];
}

export const DEFAULT_REDELIVERY: RedeliveryPolicy = Object.freeze({ maxAttempts: 5, delaysMs: [200, 1000, 5000] });

export function redeliveryDelayMs(policy: RedeliveryPolicy, attempt: number): number {
  const d = policy.delaysMs;
  if (d.length === 0) return 0;
  return d[Math.min(Math.max(attempt - 1, 0), d.length - 1)] ?? 0;
}

export interface SubscribeOptions {
  /** Deliveries in flight (unacked) at once. Default 256. */
  readonly prefetch?: number;
  readonly retry?: RedeliveryPolicy;
  /**
   * Where a failed message goes when the broker refuses its retry or dead-letter copy for good (too
   * large with the added headers, an unencodable header table): the worker passes one backed by
   * Postgres `dead_letters`. Without it such a message is held (retried every 30 s, never hot).
   */
  readonly deadLetterSink?: DeadLetterSink;
}

/**
 * Stores a dead letter durably without the broker. `deadLetter` reads like a delivery of
 * DEAD_LETTER_TOPIC (the reason, consumer and original topic in its headers); the transport acks
 * the original only after `record` resolved.
 */
export interface DeadLetterSink {
  record(deadLetter: Delivery): Promise<void>;
}

export interface Subscription {
  /** Stops taking new deliveries and waits for in-flight handlers to settle (acked or not). */
  close(): Promise<void>;
}

export interface Publisher {
  /**
   * Sends the messages and resolves only after the broker confirmed every one of them; rejects with
   * a `PublishError` naming the ones that failed. Many confirms are kept in flight at once.
   */
  publish(messages: readonly OutgoingMessage[]): Promise<void>;
  close(): Promise<void>;
}

export interface Subscriber {
  subscribe(topics: readonly string[], consumer: string, handler: Handler, opts?: SubscribeOptions): Promise<Subscription>;
  close(): Promise<void>;
}

/** What a transport guarantees beyond the contract; the contract suite reads this instead of guessing. */
export interface TransportFeatures {
  readonly name: 'memory' | 'rabbitmq' | 'kafka';
  /** Handlers for messages with the same key run one at a time, in publish order. */
  readonly orderedByKey: boolean;
  /** The broker itself bounds redeliveries of a message whose handler never settles (process crash loop). */
  readonly brokerDeliveryLimit: boolean;
  /** Messages survive a broker restart. */
  readonly durable: boolean;
}

/**
 * Topics and the consumers (queues / groups) reading them. Declared before use so that a message
 * published before its consumer first started is kept, and so that "unroutable" means a real fault.
 */
export interface Topology {
  readonly topics: readonly TopicSpec[];
  readonly consumers: readonly ConsumerSpec[];
}

export interface TopicSpec {
  readonly name: string;
  /**
   * true (default): a message that reaches no consumer is a publish failure. false for domain-event
   * topics, where a fact nobody subscribed to is fine.
   */
  readonly requireRoute?: boolean;
}

export interface ConsumerSpec {
  readonly consumer: string;
  readonly topics: readonly string[];
}

export interface Transport {
  readonly features: TransportFeatures;
  readonly publisher: Publisher;
  readonly subscriber: Subscriber;
  /** Idempotent; includes DEAD_LETTER_TOPIC and everything retries need. */
  declare(topology: Topology): Promise<void>;
  close(): Promise<void>;
}

/** Every dead letter of every consumer goes here, with the headers below; the recorder moves them to Postgres. */
export const DEAD_LETTER_TOPIC = 'sagaflow.dead-letters';
export const DEAD_LETTER_CONSUMER = 'sagaflow.dead-letter-recorder';

/** Header names, shared by all transports so a dead letter reads the same wherever it came from. */
export const H = Object.freeze({
  messageId: 'x-sagaflow-id',
  type: 'x-sagaflow-type',
  key: 'x-sagaflow-key',
  attempt: 'x-sagaflow-attempt',
  reason: 'x-sagaflow-reason',
  error: 'x-sagaflow-error',
  originalTopic: 'x-sagaflow-original-topic',
  consumer: 'x-sagaflow-consumer',
  deadLetteredAt: 'x-sagaflow-dead-lettered-at',
  firstSeenAt: 'x-sagaflow-first-seen-at',
});

/**
 * Why a publish failed, one code per cause, the same on every transport. Whether a retry can help
 * belongs to the code (PUBLISH_ERROR_RETRYABLE): the relay parks the rows of a permanent code and
 * reschedules the others.
 */
export type PublishErrorCode =
  /** No queue or consumer group reads the topic, or the topic does not exist (yet). */
  | 'UNROUTABLE'
  /** No broker confirm in time (blocked connection, lost link). */
  | 'PUBLISH_TIMEOUT'
  /** The broker nacked it or the request failed for a reason that may pass. */
  | 'PUBLISH_FAILED'
  /** The channel or connection closed before the confirm; the transport is closed. */
  | 'CHANNEL_CLOSED'
  /** Larger than the broker takes (Kafka message.max.bytes; an AMQP header table over 64 KiB). */
  | 'MESSAGE_TOO_LARGE'
  /** The broker refuses the record itself (Kafka INVALID_RECORD, CORRUPT_MESSAGE, bad timestamp). */
  | 'INVALID_MESSAGE'
  /** A topic name the broker can never accept. */
  | 'CONFIG_INVALID';

export const PUBLISH_ERROR_RETRYABLE: Readonly<Record<PublishErrorCode, boolean>> = Object.freeze({
  UNROUTABLE: true,
  PUBLISH_TIMEOUT: true,
  PUBLISH_FAILED: true,
  CHANNEL_CLOSED: true,
  MESSAGE_TOO_LARGE: false,
  INVALID_MESSAGE: false,
  CONFIG_INVALID: false,
});

/** What happened to one message of a failed publish. */
export interface PublishFailure {
  readonly id: string;
  readonly code: PublishErrorCode;
  readonly retryable: boolean;
  readonly message: string;
}

export class PublishError extends Error {
  /** The code of the first failure that decides `retryable` (a retryable one when there is any). */
  readonly code: PublishErrorCode;
  /** true when at least one failed message may succeed on a retry. */
  readonly retryable: boolean;
  /** Ids of the messages that were not confirmed; the others were. */
  readonly failedIds: readonly string[];
  /** Per message: which failed permanently, which may be retried, and why. */
  readonly failures: readonly PublishFailure[];
  constructor(
    message: string,
    opts: { code: PublishErrorCode; retryable: boolean; failedIds: readonly string[]; failures?: readonly PublishFailure[]; cause?: unknown },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PublishError';
    this.code = opts.code;
    this.retryable = opts.retryable;
    this.failedIds = opts.failedIds;
    this.failures = opts.failures ?? opts.failedIds.map((id) => ({ id, code: opts.code, retryable: opts.retryable, message }));
  }

  /** One error for the failures of one publish call: retryable when any failure is. */
  static of(failures: readonly PublishFailure[], total: number, cause?: unknown): PublishError {
    const retryable = failures.some((f) => f.retryable);
    const first = failures.find((f) => f.retryable === retryable)!;
    const byCode = new Map<string, number>();
    for (const f of failures) byCode.set(f.code, (byCode.get(f.code) ?? 0) + 1);
    const summary = [...byCode].map(([c, n]) => `${c} x${n}`).join(', ');
    return new PublishError(`${failures.length} of ${total} message(s) not published (${summary}): ${first.message.slice(0, 2000)}`, {
      code: first.code,
      retryable,
      failedIds: failures.map((f) => f.id),
      failures,
      cause,
    });
  }
}

/** Headers a transport sets on every outgoing message from the OutgoingMessage fields. */
export function standardHeaders(m: OutgoingMessage): Record<string, string> {
  return { ...m.headers, [H.messageId]: m.id, [H.type]: m.type, [H.key]: m.key };
}

/** `delivery` as the dead letter a DeadLetterSink records (the same headers a dead-letter copy gets). */
export function asDeadLetter(delivery: Delivery, consumer: string, reason: string, error: string): Delivery {
  return { ...delivery, topic: DEAD_LETTER_TOPIC, headers: deadLetterHeaders(delivery, consumer, reason, error) };
}

/** Headers for a dead letter of `delivery` read by `consumer`, failed with `reason`. */
export function deadLetterHeaders(
  delivery: Delivery,
  consumer: string,
  reason: string,
  error: string,
): Record<string, string> {
  return {
    ...delivery.headers,
    [H.reason]: reason,
    [H.error]: error.slice(0, 1000),
    [H.originalTopic]: delivery.topic,
    [H.consumer]: consumer,
    [H.attempt]: String(delivery.attempt),
    [H.deadLetteredAt]: new Date().toISOString(),
  };
}
