import type { Channel } from 'amqplib';
import { SagaflowError, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { DEAD_LETTER_CONSUMER, DEAD_LETTER_TOPIC, type Topology } from '../contract.js';
import type { ConnectionManager } from './connection.js';
import type { Names } from './names.js';

export type QueueType = 'classic' | 'quorum';
type Args = Readonly<Record<string, string | number>>;

/** One declaration; the registry replays them in insertion order after a reconnect. */
export type Op =
  | { readonly kind: 'exchange'; readonly name: string }
  | { readonly kind: 'queue'; readonly name: string; readonly args: Args }
  | { readonly kind: 'bind'; readonly queue: string; readonly exchange: string };

function opKey(op: Op): string {
  return op.kind === 'bind' ? `bind\0${op.queue}\0${op.exchange}` : `${op.kind}\0${op.name}`;
}

export interface TopologyOptions {
  readonly names: Names;
  readonly queueType: QueueType;
  readonly deliveryLimit: number;
  readonly connection: ConnectionManager;
  readonly logger: Logger;
  /** How long a declaration waits for a connection before failing. */
  readonly timeoutMs: number;
  /** Told about every exchange that exists (asserted by us), so the publisher needn't check it. */
  readonly onExchange: (name: string) => void;
}

/**
 * Declares exchanges, queues and bindings, and remembers every declaration so that it can be
 * replayed after a reconnect or after the broker cancelled a consumer because its queue was deleted.
 * Every declaration is an idempotent assert with the full arguments, which doubles as the check of
 * the EFFECTIVE arguments of an existing queue: RabbitMQ answers a re-declare with different
 * arguments with 406 PRECONDITION_FAILED naming the first differing argument (a passive declare
 * cannot show arguments at all), and we turn that into an error naming the queue. Queues are never
 * deleted here: they may hold messages.
 */
export class TopologyRegistry {
  readonly #o: TopologyOptions;
  readonly #ops = new Map<string, Op>();
  readonly #optionalTopics = new Set<string>();
  /** Declarations run one at a time: a 406 closes the channel, and the order matters (queue before bind). */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(opts: TopologyOptions) {
    this.#o = opts;
  }

  /** Topics declared with `requireRoute: false`: published without `mandatory`. */
  isOptionalTopic(topic: string): boolean {
    return this.#optionalTopics.has(topic);
  }

  /** Queue arguments for a consumer queue. Exported for tests and for operators comparing policies. */
  consumerQueueArgs(consumer: string): Args {
    const { queueType, deliveryLimit, names } = this.#o;
    // The dead-letter queue itself has no DLX (a dead letter must not cycle) and no delivery limit
    // (a recorder that keeps crashing must not drop dead letters).
    if (consumer === DEAD_LETTER_CONSUMER) return { 'x-queue-type': queueType };
    if (queueType === 'classic') {
      // Classic queues have no broker delivery limit (x-delivery-limit is quorum-only): a handler
      // that never settles (crash loop) is redelivered forever; only app-side attempts bound retries.
      return { 'x-queue-type': 'classic', 'x-dead-letter-exchange': names.deadLetterExchange };
    }
    return {
      'x-queue-type': 'quorum',
      // Backstop against crash loops; RabbitMQ 3.x quorum queues have no default limit
      // (20 is the default only from 4.0, rabbitmq/rabbitmq-server#11937).
      'x-delivery-limit': deliveryLimit,
      'x-dead-letter-exchange': names.deadLetterExchange,
      // at-least-once: the queue keeps the message until the DLX target confirms it (3.10+);
      // the default at-most-once may drop it in transit. It requires reject-publish overflow.
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
    };
  }

  retryQueueArgs(consumer: string, delayMs: number): Args {
    const back = {
      // Queue-level TTL: every message in this queue waits the same time, so the head always expires
      // first. A per-message TTL on one shared queue would block short delays behind long ones.
      'x-message-ttl': delayMs,
      // Dead-lettering through the default exchange back into the consumer's own queue.
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': this.#o.names.queue(consumer),
    };
    // Classic queues only dead-letter at most once: a broker crash at the moment a message
    // expires out of a classic retry queue can lose it. Quorum retry queues use at-least-once.
    if (this.#o.queueType === 'classic') return { 'x-queue-type': 'classic', ...back };
    return { 'x-queue-type': 'quorum', ...back, 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' };
  }

  /** The full topology plus the dead-letter exchange and queue. */
  declare(topology: Topology): Promise<void> {
    for (const t of topology.topics) {
      if (t.requireRoute === false) this.#optionalTopics.add(t.name);
      // Later declarations may tighten a topic again.
      else this.#optionalTopics.delete(t.name);
    }
    const ops: Op[] = [];
    const topics = new Set([...topology.topics.map((t) => t.name), DEAD_LETTER_TOPIC]);
    for (const c of topology.consumers) for (const t of c.topics) topics.add(t);
    for (const t of topics) ops.push(this.#exchange(t));
    const consumers = [...topology.consumers, { consumer: DEAD_LETTER_CONSUMER, topics: [DEAD_LETTER_TOPIC] }];
    for (const c of consumers) ops.push(...this.#consumerOps(c.consumer, c.topics));
    return this.#run(ops);
  }

  /** A consumer's queue, bindings and retry queues (called by every (re)subscribe). */
  ensureConsumer(consumer: string, topics: readonly string[], delaysMs: readonly number[]): Promise<void> {
    const ops: Op[] = [this.#exchange(DEAD_LETTER_TOPIC)];
    for (const t of topics) ops.push(this.#exchange(t));
    if (consumer !== DEAD_LETTER_CONSUMER) ops.push(...this.#consumerOps(DEAD_LETTER_CONSUMER, [DEAD_LETTER_TOPIC]));
    ops.push(...this.#consumerOps(consumer, topics));
    for (const d of new Set(delaysMs)) {
      const name = this.#o.names.retryQueue(consumer, d);
      ops.push({ kind: 'queue', name, args: this.retryQueueArgs(consumer, d) });
    }
    return this.#run(ops);
  }

  /** Replays everything declared so far (after a reconnect). */
  redeclareAll(): Promise<void> {
    return this.#run([...this.#ops.values()]);
  }

  /** Every exchange and queue this registry declared (test cleanup, operators). */
  declaredNames(): { exchanges: string[]; queues: string[] } {
    const exchanges: string[] = [];
    const queues: string[] = [];
    for (const op of this.#ops.values()) {
      if (op.kind === 'exchange') exchanges.push(op.name);
      else if (op.kind === 'queue') queues.push(op.name);
    }
    return { exchanges, queues };
  }

  #exchange(topic: string): Op {
    return { kind: 'exchange', name: this.#o.names.exchange(topic) };
  }

  #consumerOps(consumer: string, topics: readonly string[]): Op[] {
    const queue = this.#o.names.queue(consumer);
    const ops: Op[] = [{ kind: 'queue', name: queue, args: this.consumerQueueArgs(consumer) }];
    for (const t of topics) ops.push({ kind: 'bind', queue, exchange: this.#o.names.exchange(t) });
    return ops;
  }

  #run(ops: readonly Op[]): Promise<void> {
    const next = this.#chain.then(() => this.#apply(ops));
    this.#chain = next.catch(() => {});
    return next;
  }

  async #apply(ops: readonly Op[]): Promise<void> {
    const model = await this.#o.connection.waitForConnection(this.#o.timeoutMs);
    const ch: Channel = await model.createChannel();
    // A failed declaration closes the channel with an 'error' event as well as rejecting the call.
    ch.on('error', (err: Error) => this.#o.logger.debug({ err: errorMessage(err) }, 'declaration channel closed by the broker'));
    ch.on('handler-error', () => {});
    const seen = new Set<string>();
    try {
      for (const op of ops) {
        const key = opKey(op);
        if (seen.has(key)) continue;
        seen.add(key);
        await this.#declareOne(ch, op);
        if (!this.#ops.has(key)) this.#ops.set(key, op);
      }
    } finally {
      await ch.close().catch(() => {});
    }
  }

  async #declareOne(ch: Channel, op: Op): Promise<void> {
    try {
      switch (op.kind) {
        case 'exchange':
          // Fanout: routing is by exchange (one per topic); the key travels in a header.
          await ch.assertExchange(op.name, 'fanout', { durable: true, autoDelete: false });
          this.#o.onExchange(op.name);
          return;
        case 'queue':
          await ch.assertQueue(op.name, { durable: true, exclusive: false, autoDelete: false, arguments: op.args });
          return;
        case 'bind':
          await ch.bindQueue(op.queue, op.exchange, '');
          return;
      }
    } catch (err) {
      throw describeDeclareError(op, err);
    }
  }
}

/** 406 on a declaration means an object of that name exists with other properties: say which and why it matters. */
export function describeDeclareError(op: Op, err: unknown): Error {
  const code = (err as { code?: unknown }).code;
  const detail = errorMessage(err).replace(/^.*?with message "/, '').replace(/"$/, '');
  if (code === 406 && op.kind === 'queue') {
    return new SagaflowError(
      'CONFIG_INVALID',
      `RabbitMQ queue '${op.name}' exists with different arguments than sagaflow declares (${detail}); ` +
        `sagaflow wants ${JSON.stringify(op.args)}. Queues are never deleted automatically because they may hold ` +
        `messages: drain and delete it, or move its messages to a queue declared with these arguments (a policy cannot ` +
        `change x-queue-type).`,
      { retryable: false, cause: err },
    );
  }
  if (code === 406 && op.kind === 'exchange') {
    return new SagaflowError(
      'CONFIG_INVALID',
      `RabbitMQ exchange '${op.name}' exists with a different type or flags (${detail}); sagaflow wants a durable fanout exchange.`,
      { retryable: false, cause: err },
    );
  }
  const what = op.kind === 'bind' ? `binding ${op.queue} <- ${op.exchange}` : `${op.kind} '${op.name}'`;
  return new SagaflowError('SYSTEMIC', `declaring RabbitMQ ${what} failed: ${detail}`, {
    retryable: true,
    countsAsAttempt: false,
    cause: err,
  });
}
