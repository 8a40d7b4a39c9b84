import { classifyError, errorMessage } from '../errors.js';
import {
  DEAD_LETTER_CONSUMER,
  DEAD_LETTER_TOPIC,
  DEFAULT_REDELIVERY,
  PublishError,
  deadLetterHeaders,
  standardHeaders,
  type Delivery,
  type Handler,
  type OutgoingMessage,
  type Publisher,
  type SubscribeOptions,
  type Subscriber,
  type Subscription,
  type Topology,
  type Transport,
  type TransportFeatures,
} from './contract.js';
import { routeFailure } from './failure-routing.js';

/**
 * An in-process broker with the same contract as RabbitMQ and Kafka: a queue per consumer name,
 * fan-out per topic, unroutable publishes fail, retries wait, dead letters go to DEAD_LETTER_TOPIC.
 * For unit tests and the embedded demo only: nothing survives the process.
 */
interface Queued {
  readonly delivery: Delivery;
}

class ConsumerQueue {
  readonly items: Queued[] = [];
  readonly topics = new Set<string>();
  /** Competing consumers of this queue: each message goes to one of them, round-robin. */
  readonly subs: ActiveSubscription[] = [];
  next = 0;
  constructor(readonly name: string) {}
}

class ActiveSubscription implements Subscription {
  inFlight = 0;
  closed = false;
  readonly settled = new Set<Promise<void>>();
  constructor(
    readonly broker: MemoryTransport,
    readonly queue: ConsumerQueue,
    readonly handler: Handler,
    readonly opts: Required<Omit<SubscribeOptions, 'deadLetterSink'>> & Pick<SubscribeOptions, 'deadLetterSink'>,
  ) {}

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const i = this.queue.subs.indexOf(this);
    if (i >= 0) this.queue.subs.splice(i, 1);
    while (this.settled.size > 0) await Promise.allSettled([...this.settled]);
  }
}

export interface MemoryTransportOptions {
  /** Scales every retry delay (tests use 0 to retry at once). Default 1. */
  readonly retryDelayFactor?: number;
}

export class MemoryTransport implements Transport {
  readonly features: TransportFeatures = { name: 'memory', orderedByKey: false, brokerDeliveryLimit: false, durable: false };
  readonly #queues = new Map<string, ConsumerQueue>();
  readonly #topicConsumers = new Map<string, Set<string>>();
  readonly #optionalTopics = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #retryDelayFactor: number;
  #closed = false;
  /** Counts for tests and the bench: messages accepted by publish. */
  published = 0;

  readonly publisher: Publisher = {
    publish: (messages) => this.#publish(messages),
    close: async () => {},
  };

  readonly subscriber: Subscriber = {
    subscribe: (topics, consumer, handler, opts) => this.#subscribe(topics, consumer, handler, opts),
    close: async () => {
      for (const q of this.#queues.values()) await Promise.allSettled([...q.subs].map((sub) => sub.close()));
    },
  };

  constructor(opts: MemoryTransportOptions = {}) {
    this.#retryDelayFactor = opts.retryDelayFactor ?? 1;
    // The dead-letter queue is the recorder's queue, as on the brokers: bound from the start so a
    // dead letter is kept even before the recorder subscribes.
    this.#bind(DEAD_LETTER_TOPIC, this.#queue(DEAD_LETTER_CONSUMER));
  }

  async declare(topology: Topology): Promise<void> {
    for (const t of topology.topics) if (t.requireRoute === false) this.#optionalTopics.add(t.name);
    for (const c of topology.consumers) {
      const q = this.#queue(c.consumer);
      for (const t of c.topics) this.#bind(t, q);
    }
  }

  /** Nothing queued, in flight or waiting to be redelivered (the test kit waits for this). */
  idle(): boolean {
    if (this.#timers.size > 0) return false;
    for (const q of this.#queues.values()) if (q.items.length > 0 || q.subs.some((s) => s.inFlight > 0)) return false;
    return true;
  }

  /** Messages waiting in a consumer's queue (not counting in-flight ones). */
  depth(consumer: string): number {
    return this.#queues.get(consumer)?.items.length ?? 0;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.subscriber.close();
  }

  #queue(name: string): ConsumerQueue {
    let q = this.#queues.get(name);
    if (!q) {
      q = new ConsumerQueue(name);
      this.#queues.set(name, q);
    }
    return q;
  }

  #bind(topic: string, q: ConsumerQueue): void {
    q.topics.add(topic);
    let set = this.#topicConsumers.get(topic);
    if (!set) {
      set = new Set();
      this.#topicConsumers.set(topic, set);
    }
    set.add(q.name);
  }

  async #publish(messages: readonly OutgoingMessage[]): Promise<void> {
    if (this.#closed) {
      throw new PublishError('transport is closed', { code: 'CHANNEL_CLOSED', retryable: true, failedIds: messages.map((m) => m.id) });
    }
    const unroutable = messages.filter(
      (m) => !this.#optionalTopics.has(m.topic) && (this.#topicConsumers.get(m.topic)?.size ?? 0) === 0,
    );
    if (unroutable.length > 0) {
      // The routable ones are still delivered, as a broker would: only the unroutable ones fail.
      for (const m of messages) if (!unroutable.includes(m)) this.#route(m);
      throw new PublishError(`no consumer is bound to topic ${unroutable[0]?.topic}`, {
        code: 'UNROUTABLE',
        retryable: true,
        failedIds: unroutable.map((m) => m.id),
      });
    }
    for (const m of messages) this.#route(m);
    // A broker confirm is asynchronous; resolving on a later tick keeps callers honest about that.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  #route(m: OutgoingMessage): void {
    this.published++;
    const headers = standardHeaders(m);
    for (const name of this.#topicConsumers.get(m.topic) ?? []) {
      const q = this.#queue(name);
      q.items.push({
        delivery: {
          topic: m.topic,
          key: m.key,
          id: m.id,
          type: m.type,
          body: m.body,
          headers,
          attempt: 1,
          redelivered: false,
        },
      });
      this.#pump(q);
    }
  }

  async #subscribe(topics: readonly string[], consumer: string, handler: Handler, opts?: SubscribeOptions): Promise<Subscription> {
    const q = this.#queue(consumer);
    for (const t of topics) this.#bind(t, q);
    const sub = new ActiveSubscription(this, q, handler, {
      prefetch: opts?.prefetch ?? 256,
      retry: opts?.retry ?? DEFAULT_REDELIVERY,
      deadLetterSink: opts?.deadLetterSink,
    });
    q.subs.push(sub);
    this.#pump(q);
    return sub;
  }

  #pump(q: ConsumerQueue): void {
    while (q.items.length > 0) {
      const sub = this.#nextWithRoom(q);
      if (!sub) return;
      const item = q.items.shift()!;
      sub.inFlight++;
      const p = this.#run(sub, item.delivery).finally(() => {
        sub.inFlight--;
        sub.settled.delete(p);
        this.#pump(q);
      });
      sub.settled.add(p);
    }
  }

  /** Round-robin over the queue's open subscriptions that have prefetch room left. */
  #nextWithRoom(q: ConsumerQueue): ActiveSubscription | undefined {
    for (let i = 0; i < q.subs.length; i++) {
      const sub = q.subs[(q.next + i) % q.subs.length]!;
      if (!sub.closed && sub.inFlight < sub.opts.prefetch) {
        q.next = (q.next + i + 1) % q.subs.length;
        return sub;
      }
    }
    return undefined;
  }

  async #run(sub: ActiveSubscription, d: Delivery): Promise<void> {
    try {
      await sub.handler(d);
    } catch (err) {
      this.#failed(sub, d, err);
    }
  }

  /** Carries out the failure route (failure-routing.ts); this broker never refuses a copy. */
  #failed(sub: ActiveSubscription, d: Delivery, err: unknown): void {
    const q = sub.queue;
    const route = routeFailure({
      error: classifyError(err),
      attempt: d.attempt,
      policy: sub.opts.retry,
      recorder: q.name === DEAD_LETTER_CONSUMER,
      sink: sub.opts.deadLetterSink !== undefined,
    });
    if (route.action === 'dead-letter') return this.#deadLetter(d, q.name, route.reason, route.error);
    if (route.action !== 'retry') return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#closed) return;
      q.items.push({ delivery: { ...d, attempt: route.attempt, redelivered: true } });
      this.#pump(q);
    }, route.delayMs * this.#retryDelayFactor);
    this.#timers.add(timer);
  }

  #deadLetter(d: Delivery, consumer: string, reason: string, error: string): void {
    try {
      this.#route({
        topic: DEAD_LETTER_TOPIC,
        key: d.key ?? '',
        id: d.id ?? '',
        type: d.type ?? 'unknown',
        body: d.body,
        headers: deadLetterHeaders(d, consumer, reason, errorMessage(error)),
      });
    } catch {
      // #route never throws for the dead-letter topic (it is always bound); nothing to do.
    }
  }
}
