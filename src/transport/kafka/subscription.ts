import type { EventEmitter } from 'node:events';
import type { Consumer, ConsumerCrashEvent, ConsumerFetchEvent, ConsumerGroupJoinEvent, EachBatchPayload, Kafka, Message, RetryOptions } from 'kafkajs';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { DeadLetterSink, Delivery, Handler, RedeliveryPolicy, Subscription } from '../contract.js';
import type { KafkaAdmin } from './admin.js';
import { OffsetCommits } from './commits.js';
import { Fifo, retryDue, toDelivery } from './delivery.js';
import { FailedRecords } from './failures.js';
import type { KafkaNames } from './names.js';
import { PartitionState, type Task } from './partition.js';
import { Slots } from './slots.js';

export interface KafkaSubscriptionStats {
  /** Handler calls that resolved. */
  handled: number;
  /** Failed handler calls whose message went to a retry topic. */
  retried: number;
  /** Messages this transport produced to the dead-letter topic. */
  deadLettered: number;
  /** Failed records whose copy the broker refused, recorded in Postgres through the DeadLetterSink. */
  recordedDirectly: number;
  /** Successful OffsetCommit requests. */
  commits: number;
  /** consumer.events.CRASH, whether kafkajs restarted the consumer or not. */
  crashes: number;
  /** Consumers this transport re-created after kafkajs gave up on them. */
  recreated: number;
  /** Group joins (the first one and every rebalance). */
  joins: number;
}

export interface SubscriptionSettings {
  /** Handlers running at once in one subscription (SubscribeOptions.prefetch). */
  readonly prefetch: number;
  /** Records held per partition (running or waiting for a handler slot) before it is paused. */
  readonly maxInFlightPerPartition: number;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly rebalanceTimeoutMs: number;
  readonly maxWaitTimeMs: number;
  readonly commitIntervalMs: number;
  readonly maxConsumerRecreates: number;
  readonly joinTimeoutMs: number;
  readonly consumerRetry: RetryOptions;
  /** Passed to kafkajs: whether a crashed consumer is restarted (default: kafkajs decides). */
  readonly restartOnFailure?: (err: Error) => Promise<boolean>;
}

export interface SubscriptionDeps {
  readonly names: KafkaNames;
  readonly admin: KafkaAdmin;
  readonly logger: Logger;
  readonly events: EventEmitter;
  readonly stats: KafkaSubscriptionStats;
  readonly settings: SubscriptionSettings;
  /** A Kafka client of its own per consumer: kafkajs shares committed-offset caches per client. */
  newKafka(role: string): Kafka;
  /** Produce one record with acks=all; rejects with the kafkajs error. */
  produce(topic: string, message: Message): Promise<void>;
  onClosed(sub: KafkaSubscription): void;
}

/**
 * One subscription = one kafkajs consumer in group `<ns><consumer>`, reading the consumer's topics
 * AND its retry topics (`<ns><consumer>.retry.<ms>`, one per delay of its retry policy).
 *
 * Flow: `eachBatch` only dispatches. It hands each record to a per-key queue of its partition,
 * resolves the offset (so kafkajs fetches on) and returns at once; it never waits for handlers.
 * That matters with kafkajs: its fetch loop waits for every batch of a fetch before the next fetch,
 * and heartbeats between batches (tulios/kafkajs#447), so a handler held inside eachBatch would
 * stall every other partition and, past sessionTimeout, get the member thrown out. Here the fetch
 * loop and heartbeats keep going whatever the handlers do. Backpressure: at most `prefetch`
 * handlers run at once per subscription (slots are handed out in dispatch order); a partition
 * holding `maxInFlightPerPartition` unfinished records is paused (`pause()`; records of the batch
 * not taken are fetched again after `resume()`, once it is down to half).
 *
 * Order: handlers of one key run one at a time, in offset order; different keys of one partition run
 * concurrently. Offsets are committed explicitly (autoCommit off) every `commitIntervalMs` up to the
 * partition watermark (see PartitionState), never past an unfinished record.
 *
 * Failure: see `#failed`. A failed record is copied to a retry topic or the dead-letter topic
 * (acks=all) and only then counts as finished, so a failing record never blocks its partition. The
 * price: partition order is given up for retried records only: later records of the same key may
 * be handled before the retry. In sagaflow's own traffic a saga's next message is caused by the
 * handling of the previous one (a step's command follows the previous reply), so a record is rarely
 * overtaken by a record of its own saga; where it is, the saga engine's step checks apply.
 */
export class KafkaSubscription implements Subscription {
  readonly #d: SubscriptionDeps;
  readonly #s: SubscriptionSettings;
  readonly #group: string;
  readonly #mainTopics: string[];
  readonly #retryTopics = new Map<string, number>();
  readonly #parts = new Map<string, PartitionState>();
  readonly #capacityPaused = new Set<PartitionState>();
  readonly #running = new Set<Promise<void>>();
  #consumer: Consumer | undefined;
  readonly #slots: Slots;
  readonly #failures: FailedRecords;
  #closing = false;
  #closed: Promise<void> | undefined;
  readonly #commits: OffsetCommits;
  #recreateTimer: NodeJS.Timeout | undefined;
  #recreateAttempts = 0;
  #fatal = false;
  #ready!: () => void;
  #notReady!: (err: Error) => void;
  readonly #firstFetch: Promise<void>;

  constructor(
    deps: SubscriptionDeps,
    readonly topics: readonly string[],
    readonly consumer: string,
    readonly handler: Handler,
    readonly retry: RedeliveryPolicy,
    readonly sink: DeadLetterSink | undefined,
  ) {
    this.#d = deps;
    this.#s = deps.settings;
    this.#slots = new Slots(deps.settings.prefetch);
    this.#commits = new OffsetCommits({
      group: deps.names.group(consumer),
      logger: deps.logger,
      stats: deps.stats,
      intervalMs: deps.settings.commitIntervalMs,
      parts: this.#parts,
      isClosing: () => this.#closing,
    });
    this.#failures = new FailedRecords({
      names: deps.names,
      logger: deps.logger,
      stats: deps.stats,
      group: deps.names.group(consumer),
      consumer,
      retry,
      sink,
      produce: (topic, message) => deps.produce(topic, message),
      isClosing: () => this.#closing,
    });
    this.#group = deps.names.group(consumer);
    this.#mainTopics = [...new Set(topics)].map((t) => deps.names.topic(t));
    const delays = retry.delaysMs.length > 0 ? retry.delaysMs : [0];
    for (const ms of new Set(delays)) this.#retryTopics.set(deps.names.retryTopic(consumer, ms), ms);
    this.#firstFetch = new Promise<void>((resolve, reject) => {
      this.#ready = resolve;
      this.#notReady = reject;
    });
    // Never an unhandled rejection: start() is the one that awaits it.
    this.#firstFetch.catch(() => {});
  }

  get group(): string {
    return this.#group;
  }

  /** Kafka topics this subscription's consumer reads. */
  get kafkaTopics(): string[] {
    return [...this.#mainTopics, ...this.#retryTopics.keys()];
  }

  /**
   * Resolves once the consumer has joined its group and completed its first fetch, i.e. it is
   * long-polling: a message published from now on is fetched as soon as it is written.
   */
  async start(): Promise<void> {
    await this.#d.admin.ensureTopics(this.kafkaTopics);
    await this.#startConsumer();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`kafka consumer group ${this.#group} did not join and fetch within ${this.#s.joinTimeoutMs} ms`)),
        this.#s.joinTimeoutMs,
      );
    });
    try {
      await Promise.race([this.#firstFetch, deadline]);
    } catch (err) {
      await this.close().catch(() => {});
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Consumer lifecycle
  // ------------------------------------------------------------------------------------------

  async #startConsumer(): Promise<void> {
    const kafka = this.#d.newKafka(`consumer-${this.consumer}`);
    const consumer = kafka.consumer({
      groupId: this.#group,
      allowAutoTopicCreation: false,
      sessionTimeout: this.#s.sessionTimeoutMs,
      heartbeatInterval: this.#s.heartbeatIntervalMs,
      rebalanceTimeout: this.#s.rebalanceTimeoutMs,
      // The time a fetch waits for data: also how late a resumed partition is fetched again and
      // how long stop() waits for the fetch loop.
      maxWaitTimeInMs: this.#s.maxWaitTimeMs,
      retry: {
        ...this.#s.consumerRetry,
        ...(this.#s.restartOnFailure ? { restartOnFailure: this.#s.restartOnFailure } : {}),
      },
    });
    this.#consumer = consumer;
    this.#commits.use(undefined);
    let joined = false;
    consumer.on(consumer.events.GROUP_JOIN, (e: ConsumerGroupJoinEvent) => {
      joined = true;
      this.#onJoin(consumer, e);
    });
    // Ready = joined AND long-polling: a fetch that waited its full maxWaitTime (or delivered a
    // batch, see #eachBatch). A fetch that failed (e.g. a partition not served yet) also ends with
    // a FETCH event, but quickly.
    consumer.on(consumer.events.FETCH, (e: ConsumerFetchEvent) => {
      if (joined && consumer === this.#consumer && e.payload.duration >= this.#s.maxWaitTimeMs / 2) this.#ready();
    });
    consumer.on(consumer.events.CRASH, (e: ConsumerCrashEvent) => this.#onCrash(consumer, e));
    await consumer.connect();
    // fromBeginning only applies to partitions without a committed offset; declare() gave every
    // partition of a declared group one (see KafkaAdmin.initGroupOffsets).
    await consumer.subscribe({ topics: this.kafkaTopics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async (payload) => this.#eachBatch(consumer, payload),
    });
  }

  #onJoin(consumer: Consumer, e: ConsumerGroupJoinEvent): void {
    if (consumer !== this.#consumer) return;
    this.#d.stats.joins++;
    this.#recreateAttempts = 0;
    const assignment = e.payload.memberAssignment;
    for (const st of this.#parts.values()) {
      st.revoked = !(assignment[st.topic] ?? []).includes(st.partition);
    }
    this.#d.logger.debug({ group: this.#group, assignment }, 'kafka consumer joined its group');
    this.#d.events.emit('joined', { consumer: this.consumer, group: this.#group, assignment });
  }

  /**
   * kafkajs restarts a consumer after a retriable crash by itself; after a non-retriable one (or when
   * `restartOnFailure` says no) it leaves it stopped, and the process would look healthy while
   * consuming nothing (tulios/kafkajs#1271, #885). Such a consumer is re-created here, with backoff,
   * at most `maxConsumerRecreates` times in a row; then the transport emits 'fatal' and the worker
   * exits non-zero so its supervisor restarts it. Never a silent stall.
   */
  #onCrash(consumer: Consumer, e: ConsumerCrashEvent): void {
    if (consumer !== this.#consumer || this.#closing) return;
    const { error, restart } = e.payload;
    this.#d.stats.crashes++;
    this.#d.events.emit('crash', { consumer: this.consumer, group: this.#group, error, restart });
    if (restart) {
      this.#d.logger.warn({ group: this.#group, err: errorMessage(error) }, 'kafka consumer crashed; kafkajs restarts it');
      return;
    }
    this.#d.logger.error({ group: this.#group, err: errorMessage(error) }, 'kafka consumer crashed and kafkajs gave up on it; re-creating it');
    this.#scheduleRecreate(error);
  }

  #scheduleRecreate(cause: unknown): void {
    if (this.#closing || this.#fatal) return;
    if (this.#recreateAttempts >= this.#s.maxConsumerRecreates) {
      this.#fatal = true;
      const err = new Error(
        `kafka consumer group ${this.#group} failed ${this.#recreateAttempts + 1} times in a row and was not restored: ${errorMessage(cause)}`,
        { cause },
      );
      this.#d.logger.fatal({ group: this.#group, err: errorMessage(cause) }, 'kafka consumer lost for good');
      this.#notReady(err);
      this.#d.events.emit('fatal', err);
      return;
    }
    const delay = Math.min(500 * 2 ** this.#recreateAttempts, 10_000);
    this.#recreateAttempts++;
    this.#recreateTimer = setTimeout(() => {
      this.#recreateTimer = undefined;
      void this.#recreate();
    }, delay);
  }

  async #recreate(): Promise<void> {
    if (this.#closing) return;
    const old = this.#consumer;
    this.#consumer = undefined;
    await old?.disconnect().catch(() => {});
    try {
      await this.#startConsumer();
      this.#d.stats.recreated++;
      this.#d.events.emit('recreated', { consumer: this.consumer, group: this.#group });
    } catch (err) {
      // connect()/subscribe() failed before run(): no CRASH event will come for it.
      this.#d.logger.warn({ group: this.#group, err: errorMessage(err) }, 'could not re-create the kafka consumer');
      this.#scheduleRecreate(err);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Dispatch
  // ------------------------------------------------------------------------------------------

  #state(topic: string, partition: number): PartitionState {
    const k = `${topic}\u0000${partition}`;
    let st = this.#parts.get(k);
    if (!st) {
      st = new PartitionState(topic, partition, this.#retryTopics.has(topic));
      this.#parts.set(k, st);
    }
    st.revoked = false;
    return st;
  }

  #full(st: PartitionState): boolean {
    return st.pending >= this.#s.maxInFlightPerPartition;
  }

  async #eachBatch(consumer: Consumer, payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    if (consumer !== this.#consumer || this.#closing) {
      payload.pause();
      return;
    }
    this.#commits.use(payload.commitOffsetsIfNecessary);
    this.#ready();
    const st = this.#state(batch.topic, batch.partition);
    const logical = this.#d.names.logical(batch.topic);
    let all = true;
    // The first offset not yet handed to a handler: the consumer lag is what lies beyond it.
    let next = batch.messages.length > 0 ? BigInt(batch.firstOffset()!) : BigInt(batch.highWatermark);
    for (const m of batch.messages) {
      const offset = BigInt(m.offset);
      if (st.fetchedUpTo !== undefined && offset < st.fetchedUpTo) {
        payload.resolveOffset(m.offset);
        continue;
      }
      if (this.#full(st)) {
        st.capacityPaused = true;
        this.#capacityPaused.add(st);
        payload.pause();
        all = false;
        break;
      }
      if (st.retry) {
        // Never later than the tier's delay from now: a producer whose clock runs ahead (or a
        // garbled header) cannot park a record longer than its topic's delay.
        const now = Date.now();
        const due = Math.min(retryDue(m), now + (this.#retryTopics.get(batch.topic) ?? 0));
        if (due > now) {
          this.#holdUntil(st, due);
          payload.pause();
          all = false;
          break;
        }
      }
      this.#dispatch(st, offset, toDelivery(m, logical, st.retry));
      payload.resolveOffset(m.offset);
      next = offset + 1n;
    }
    // Control records (transactions) after the last message need no handler.
    if (all && batch.messages.length > 0) st.advanceTo(BigInt(batch.lastOffset()) + 1n);
    // For the consumer-lag metric: records of this partition the broker holds beyond what was dispatched.
    const lag = BigInt(batch.highWatermark) - (all && batch.messages.length > 0 ? BigInt(batch.lastOffset()) + 1n : next);
    this.#d.events.emit('lag', { consumer: this.consumer, topic: logical, partition: batch.partition, messages: Number(lag > 0n ? lag : 0n) });
  }

  /** Pause a retry partition until its head record is due; resume() at that time, no polling. */
  #holdUntil(st: PartitionState, due: number): void {
    if (st.dueTimer) clearTimeout(st.dueTimer);
    st.dueTimer = setTimeout(() => {
      st.dueTimer = undefined;
      if (!this.#full(st)) {
        this.#resume(st);
      } else if (!st.capacityPaused) {
        // Due, but no room: resumed by #afterTask once handlers finish.
        st.capacityPaused = true;
        this.#capacityPaused.add(st);
      }
    }, Math.max(1, due - Date.now()));
  }

  #resume(st: PartitionState): void {
    if (this.#closing) return;
    try {
      this.#consumer?.resume([{ topic: st.topic, partitions: [st.partition] }]);
    } catch {
      // The consumer is being re-created: its successor starts unpaused.
    }
  }

  #dispatch(st: PartitionState, offset: bigint, delivery: Delivery): void {
    const entry = st.add(offset);
    // A record without a key has no order to keep: it gets a queue of its own.
    const key = delivery.key ?? `\u0000${offset}`;
    const task: Task = { entry, delivery };
    const queue = st.keys.get(key);
    if (queue) {
      queue.push(task);
      return;
    }
    const fresh = new Fifo<Task>();
    fresh.push(task);
    st.keys.set(key, fresh);
    const run = this.#runKey(st, key, fresh);
    this.#running.add(run);
    void run.finally(() => this.#running.delete(run));
  }

  async #runKey(st: PartitionState, key: string, queue: Fifo<Task>): Promise<void> {
    for (let task = queue.peek(); task; task = queue.peek()) {
      // Closing: records not started yet are left unfinished (not committed, delivered again later).
      if (this.#closing) break;
      if (!this.#slots.tryTake() && !(await this.#slots.take())) break;
      let finished = false;
      try {
        finished = await this.#execute(task.delivery);
      } catch (err) {
        // Unreachable (#execute catches everything); never an unhandled rejection. The record stays
        // unfinished: its offset is not committed and it comes back after a restart or rebalance.
        this.#d.logger.error({ group: this.#group, id: task.delivery.id, err: errorMessage(err) }, 'kafka record processing failed unexpectedly');
      } finally {
        this.#slots.give();
      }
      if (finished) st.finish(task.entry);
      queue.shift();
      this.#afterTask();
    }
    st.keys.delete(key);
  }

  /** Runs the handler; true when the record is finished (handled, or its failure stored durably). */
  async #execute(d: Delivery): Promise<boolean> {
    try {
      await this.handler(d);
      this.#d.stats.handled++;
      return true;
    } catch (err) {
      return this.#failures.handle(d, err);
    }
  }

  #afterTask(): void {
    this.#commits.schedule();
    if (this.#capacityPaused.size === 0) return;
    for (const p of this.#capacityPaused) {
      if (p.pending > this.#s.maxInFlightPerPartition / 2) continue;
      p.capacityPaused = false;
      this.#capacityPaused.delete(p);
      if (!p.dueTimer) this.#resume(p);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Close
  // ------------------------------------------------------------------------------------------

  /**
   * Stops taking records (every partition paused), waits for the handlers in flight (and their
   * retry/dead-letter copies) to settle, commits what finished, then leaves the group.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    this.#slots.close();
    if (this.#recreateTimer) clearTimeout(this.#recreateTimer);
    this.#notReady(new Error(`the subscription of ${this.#group} was closed`));
    const consumer = this.#consumer;
    try {
      consumer?.pause(this.kafkaTopics.map((topic) => ({ topic })));
    } catch {
      // Not running (crashed): nothing to pause.
    }
    for (const st of this.#parts.values()) {
      if (st.dueTimer) clearTimeout(st.dueTimer);
      st.dueTimer = undefined;
    }
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    if (!(await this.#commits.final())) {
      this.#d.logger.warn({ group: this.#group }, 'kafka offsets of finished records not committed at close: they will be delivered again');
    }
    await consumer?.disconnect().catch((err: unknown) => {
      this.#d.logger.warn({ group: this.#group, err: errorMessage(err) }, 'kafka consumer did not disconnect cleanly');
    });
    this.#consumer = undefined;
    this.#d.onClosed(this);
  }
}
