import { EventEmitter } from 'node:events';
import { Kafka, Partitioners, type KafkaConfig, type Message, type Producer, type RetryOptions } from 'kafkajs';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { KafkaAdmin } from './admin.js';
import { classifyProduceError, type ProduceFailure } from './errors.js';
import { groupTiming } from './group-timing.js';
import { kafkaLogCreator, kafkaLogLevel, type KafkaLogGate } from './log.js';
import { KafkaNames } from './names.js';
import { KafkaSubscription, type KafkaSubscriptionStats, type SubscriptionSettings } from './subscription.js';
import {
  DEAD_LETTER_CONSUMER,
  DEAD_LETTER_TOPIC,
  DEFAULT_REDELIVERY,
  PublishError,
  standardHeaders,
  type PublishFailure,
  type OutgoingMessage,
  type Publisher,
  type Subscriber,
  type Subscription,
  type Topology,
  type Transport,
  type TransportFeatures,
} from '../contract.js';

export interface KafkaTransportOptions {
  readonly brokers: readonly string[];
  /** Prefix of every topic and consumer-group name (retry and dead-letter topics included). Default ''. */
  readonly namespace?: string;
  /** Partitions of the topics this transport creates. Default 6. Existing topics are left as they are. */
  readonly partitions?: number;
  /** Replication factor of the topics this transport creates. Default 1 (a single broker). */
  readonly replicationFactor?: number;
  readonly clientId: string;
  readonly logger: Logger;
  /** Consumer group session timeout: how soon a crashed member's partitions move. Default 6,000 (kafka/group-timing.ts). */
  readonly sessionTimeoutMs?: number;
  /** Consumer heartbeat interval; must be below the session timeout. Default min(1,000, sessionTimeoutMs / 3). */
  readonly heartbeatIntervalMs?: number;
  /** How long a rebalance waits for members to rejoin before dropping them. Default 10,000. */
  readonly rebalanceTimeoutMs?: number;
  /** Request timeout of every Kafka request. Default 30,000. */
  readonly requestTimeoutMs?: number;
  /** TCP connect timeout. Default 3,000. */
  readonly connectionTimeoutMs?: number;
  /** The first connect (admin and producer, retries included) gives up after this. Default 15,000. */
  readonly firstConnectDeadlineMs?: number;
  /** Unfinished records held per partition (running or waiting) before the partition is paused. Default 1,000. */
  readonly maxInFlightPerPartition?: number;
  /** Handlers running at once per subscription unless subscribe() says otherwise (its `prefetch`). Default 256. */
  readonly prefetch?: number;
  /** How long a fetch waits for data (also the latest a resumed retry partition is fetched). Default 500. */
  readonly maxWaitTimeMs?: number;
  /** How often finished offsets are committed. Default 100 ms. */
  readonly commitIntervalMs?: number;
  /** Re-creations of a consumer kafkajs gave up on, before the transport emits 'fatal'. Default 5. */
  readonly maxConsumerRecreates?: number;
  /** A publish() is sent in requests of at most this many bytes per topic. Default 512 KiB. */
  readonly maxBatchBytes?: number;
  /** Passed to the consumers (kafkajs `retry.restartOnFailure`); tests use it to provoke a consumer kafkajs does not restart. */
  readonly restartOnFailure?: (err: Error) => Promise<boolean>;
  /** kafkajs retry options of the consumers (fetch loop, joins): default 8 retries, 200 ms doubling to 5 s. */
  readonly consumerRetry?: RetryOptions;
  readonly ssl?: KafkaConfig['ssl'];
  readonly sasl?: KafkaConfig['sasl'];
}

export interface KafkaStats extends KafkaSubscriptionStats {
  /** Messages confirmed by publish(). */
  readonly published: number;
}

/**
 * The Kafka transport plus what operators and tests observe. `events` emits 'fatal' (Error: a
 * consumer could not be restored; the worker CLI exits non-zero), 'crash', 'recreated' and 'joined';
 * never 'error' (an 'error' event without a listener would kill the process).
 */
export interface KafkaTransport extends Transport {
  readonly events: EventEmitter;
  readonly names: KafkaNames;
  stats(): KafkaStats;
}

const EMPTY_STATS: KafkaSubscriptionStats = { handled: 0, retried: 0, deadLettered: 0, recordedDirectly: 0, commits: 0, crashes: 0, recreated: 0, joins: 0 };

/**
 * Connects (failing fast if no broker answers) and returns the transport.
 *
 * Topology on the broker (see kafka/names.ts): a topic per sagaflow topic, keyed by the message key
 * (the saga id) so a saga's messages share a partition and keep their order; a consumer group per
 * consumer; per consumer and retry delay a retry topic; one dead-letter topic. declare() creates the
 * topics and gives new groups committed offsets at the end of their topics (kafka/admin.ts).
 *
 * Producer choices:
 * - acks = -1 (all in-sync replicas) on every request;
 * - one request per topic (and per 512 KiB): a record the broker refuses fails its whole request
 *   (tulios/kafkajs#949), so topics are sent apart and a request refused for a non-retryable reason
 *   is split in halves until the refused records are isolated;
 * - NOT the idempotent producer. kafkajs marks it experimental, serialises all produce requests to a
 *   broker behind one lock, forces unbounded retries (a publish() that never fails would hold the
 *   relay's transaction and row locks through an outage) and cannot recover from
 *   OUT_OF_ORDER_SEQUENCE_NUMBER / UNKNOWN_PRODUCER_ID (tulios/kafkajs#598). What it would buy,
 *   no duplicate from a retried request, sagaflow already has: every consumer dedupes by message id
 *   in its inbox, and the relay is at least once across sessions anyway.
 */
export async function createKafkaTransport(opts: KafkaTransportOptions): Promise<KafkaTransport> {
  const logger = opts.logger.child({ component: 'kafka' });
  const names = new KafkaNames(opts.namespace ?? '');
  const partitions = opts.partitions ?? 6;
  const timing = groupTiming({
    sessionTimeoutMs: opts.sessionTimeoutMs,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
    rebalanceTimeoutMs: opts.rebalanceTimeoutMs,
  });
  const requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  const maxBatchBytes = opts.maxBatchBytes ?? 512 * 1024;
  const defaultPrefetch = opts.prefetch ?? 256;
  const settings: Omit<SubscriptionSettings, 'prefetch'> = {
    maxInFlightPerPartition: opts.maxInFlightPerPartition ?? 1_000,
    ...timing,
    maxWaitTimeMs: opts.maxWaitTimeMs ?? 500,
    commitIntervalMs: opts.commitIntervalMs ?? 100,
    maxConsumerRecreates: opts.maxConsumerRecreates ?? 5,
    joinTimeoutMs: Math.max(60_000, 2 * timing.sessionTimeoutMs),
    consumerRetry: { retries: 8, initialRetryTime: 200, maxRetryTime: 5_000, ...opts.consumerRetry },
    ...(opts.restartOnFailure ? { restartOnFailure: opts.restartOnFailure } : {}),
  };
  const events = new EventEmitter();
  const stats = { ...EMPTY_STATS, published: 0 };
  const subscriptions = new Set<KafkaSubscription>();
  /** Logical topics declared here, those with requireRoute: false, and those a consumer reads. */
  const declared = new Set<string>([DEAD_LETTER_TOPIC]);
  const optional = new Set<string>();
  const routes = new Set<string>([DEAD_LETTER_TOPIC]);
  let closed = false;

  const connectLog: KafkaLogGate = { quiet: true };
  const config: KafkaConfig = {
    brokers: [...opts.brokers],
    clientId: opts.clientId,
    requestTimeout: requestTimeoutMs,
    connectionTimeout: opts.connectionTimeoutMs ?? 3_000,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 3_000 },
    logLevel: kafkaLogLevel(logger),
    logCreator: kafkaLogCreator(logger, connectLog),
    ...(opts.ssl !== undefined ? { ssl: opts.ssl } : {}),
    ...(opts.sasl !== undefined ? { sasl: opts.sasl } : {}),
  };
  const kafka = new Kafka(config);
  const admin = new KafkaAdmin(kafka, { partitions, replicationFactor: opts.replicationFactor ?? 1, logger, timeoutMs: requestTimeoutMs });
  const producer: Producer = kafka.producer({
    allowAutoTopicCreation: false,
    idempotent: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    // Bounded: a publish during an outage fails (retryable) after a few seconds and the outbox
    // relay reschedules the rows, instead of hanging with its transaction open.
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
  });
  const deadlineMs = opts.firstConnectDeadlineMs ?? 15_000;
  let deadline: NodeJS.Timeout | undefined;
  try {
    // Bounded even when every attempt hangs until its connection timeout (a blackholed address).
    await Promise.race([
      Promise.all([admin.connect(), producer.connect()]),
      new Promise<never>((_, reject) => {
        deadline = setTimeout(() => reject(new Error(`no broker answered within ${deadlineMs} ms`)), deadlineMs);
      }),
    ]);
  } catch (err) {
    // The gate stays quiet: these clients are given up, their retries are nobody's concern.
    await Promise.allSettled([admin.disconnect(), producer.disconnect()]);
    throw new Error(`cannot connect to Kafka at ${opts.brokers.join(',')}: ${errorMessage(err)}`, { cause: err });
  } finally {
    clearTimeout(deadline);
  }
  connectLog.quiet = false;

  const produce = async (topic: string, message: Message): Promise<void> => {
    await producer.send({ topic, acks: -1, messages: [message] });
  };

  // ---------------------------------------------------------------------------------------------
  // Publisher
  // ---------------------------------------------------------------------------------------------

  interface Failed extends ProduceFailure {
    readonly ids: string[];
  }

  /**
   * Whether a publish to a topic can reach a consumer. A topic declared here is routable when a
   * consumer declared or subscribed here reads it, or it was declared `requireRoute: false` (then it
   * only has to exist). A topic this transport did not declare (a publisher-only process, such as
   * `sagaflow publish`) is routable when it exists on the broker: some process declared it.
   */
  async function route(logical: string): Promise<{ ok: true } | { ok: false; why: string }> {
    const topic = names.topic(logical);
    if (routes.has(logical)) return { ok: true };
    if (declared.has(logical) && !optional.has(logical)) return { ok: false, why: `no consumer reads topic ${logical}` };
    if (await admin.exists(topic)) return { ok: true };
    return { ok: false, why: `topic ${logical} does not exist (not declared)` };
  }

  function record(m: OutgoingMessage): Message {
    return { key: m.key, value: m.body, headers: standardHeaders(m) };
  }

  function size(m: OutgoingMessage): number {
    let n = 70 + m.body.length + Buffer.byteLength(m.key);
    for (const [k, v] of Object.entries(standardHeaders(m))) n += k.length + Buffer.byteLength(v) + 4;
    return n;
  }

  function chunks(msgs: OutgoingMessage[]): OutgoingMessage[][] {
    const out: OutgoingMessage[][] = [];
    let cur: OutgoingMessage[] = [];
    let bytes = 0;
    for (const m of msgs) {
      const s = size(m);
      if (cur.length > 0 && bytes + s > maxBatchBytes) {
        out.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(m);
      bytes += s;
    }
    if (cur.length > 0) out.push(cur);
    return out;
  }

  async function sendChunk(topic: string, msgs: OutgoingMessage[]): Promise<Failed[]> {
    try {
      await producer.send({ topic, acks: -1, messages: msgs.map(record) });
      return [];
    } catch (err) {
      const f = classifyProduceError(err);
      if (!f.retryable && msgs.length > 1) {
        // One refused record fails the whole request: split it to isolate the refused ones.
        const mid = Math.ceil(msgs.length / 2);
        return [...(await sendChunk(topic, msgs.slice(0, mid))), ...(await sendChunk(topic, msgs.slice(mid)))];
      }
      return [{ ...f, ids: msgs.map((m) => m.id) }];
    }
  }

  async function sendTopic(logical: string, msgs: OutgoingMessage[]): Promise<Failed[]> {
    const topic = names.topic(logical);
    const parts = chunks(msgs);
    const failed: Failed[] = [];
    for (let i = 0; i < parts.length; i++) {
      const f = await sendChunk(topic, parts[i]!);
      failed.push(...f);
      const retryable = f.find((x) => x.retryable);
      if (retryable) {
        // Later records of this topic are not sent after an earlier one failed: a record of the same
        // key sent now and the failed one re-sent later would swap places.
        const rest = parts.slice(i + 1).flat();
        if (rest.length > 0) failed.push({ ...retryable, ids: rest.map((m) => m.id) });
        break;
      }
    }
    return failed;
  }

  const publisher: Publisher = {
    publish: async (messages) => {
      if (closed) {
        throw new PublishError('the Kafka transport is closed', { code: 'CHANNEL_CLOSED', retryable: true, failedIds: messages.map((m) => m.id) });
      }
      if (messages.length === 0) return;
      const byTopic = new Map<string, OutgoingMessage[]>();
      for (const m of messages) {
        let list = byTopic.get(m.topic);
        if (!list) byTopic.set(m.topic, (list = []));
        list.push(m);
      }
      const failed: Failed[] = [];
      let cause: unknown;
      await Promise.all(
        [...byTopic].map(async ([logical, msgs]) => {
          const ids = msgs.map((m) => m.id);
          try {
            const r = await route(logical);
            if (!r.ok) {
              failed.push({ ids, code: 'UNROUTABLE', retryable: true, message: r.why });
              return;
            }
            failed.push(...(await sendTopic(logical, msgs)));
          } catch (err) {
            cause = err;
            // An illegal topic name never becomes legal; anything else (the admin request failed) may.
            const permanent = (err as { code?: unknown }).code === 'CONFIG_INVALID';
            failed.push({ ids, code: permanent ? 'CONFIG_INVALID' : 'PUBLISH_FAILED', retryable: !permanent, message: errorMessage(err) });
          }
        }),
      );
      const failures: PublishFailure[] = failed.flatMap((f) => f.ids.map((id) => ({ id, code: f.code, retryable: f.retryable, message: f.message })));
      stats.published += messages.length - failures.length;
      if (failures.length > 0) throw PublishError.of(failures, messages.length, cause);
    },
    close: async () => {
      await producer.disconnect();
    },
  };

  // ---------------------------------------------------------------------------------------------
  // Subscriber
  // ---------------------------------------------------------------------------------------------

  const subscriber: Subscriber = {
    subscribe: async (topics, consumer, handler, subOpts): Promise<Subscription> => {
      if (closed) throw new Error('the Kafka transport is closed');
      const sub = new KafkaSubscription(
        {
          names,
          admin,
          logger,
          events,
          stats,
          settings: { ...settings, prefetch: subOpts?.prefetch ?? defaultPrefetch },
          // A client per consumer (kafkajs caches committed offsets per client and group); its
          // connection retries are the consumer's, so a re-creation fails as fast as a consumer does.
          newKafka: () => new Kafka({ ...config, retry: settings.consumerRetry }),
          produce,
          onClosed: (s) => subscriptions.delete(s),
        },
        topics,
        consumer,
        handler,
        subOpts?.retry ?? DEFAULT_REDELIVERY,
        subOpts?.deadLetterSink,
      );
      for (const t of topics) routes.add(t);
      subscriptions.add(sub);
      await sub.start();
      return { close: () => sub.close() };
    },
    close: async () => {
      await Promise.allSettled([...subscriptions].map((s) => s.close()));
    },
  };

  // ---------------------------------------------------------------------------------------------
  // Topology
  // ---------------------------------------------------------------------------------------------

  /**
   * Creates the missing topics (declared topics, the dead-letter topic, and each consumer's retry
   * topics for the default retry policy; subscribe() adds those of its own policy) and initialises
   * the committed offsets of new consumer groups to the end of their topics (KafkaAdmin
   * .initGroupOffsets explains why). The dead-letter recorder's group is always part of it, so a
   * dead letter produced before the recorder first runs is kept for it.
   */
  async function declare(topology: Topology): Promise<void> {
    if (closed) throw new Error('the Kafka transport is closed');
    const consumers = new Map<string, Set<string>>([[DEAD_LETTER_CONSUMER, new Set([DEAD_LETTER_TOPIC])]]);
    for (const c of topology.consumers) {
      let set = consumers.get(c.consumer);
      if (!set) consumers.set(c.consumer, (set = new Set()));
      for (const t of c.topics) set.add(t);
    }
    const tiers = [...new Set(DEFAULT_REDELIVERY.delaysMs)];
    const logicalTopics = new Set<string>([DEAD_LETTER_TOPIC, ...topology.topics.map((t) => t.name)]);
    for (const set of consumers.values()) for (const t of set) logicalTopics.add(t);
    const groupTopics = new Map<string, string[]>();
    for (const [consumer, set] of consumers) {
      groupTopics.set(names.group(consumer), [...[...set].map((t) => names.topic(t)), ...tiers.map((d) => names.retryTopic(consumer, d))]);
    }
    await admin.ensureTopics([...[...logicalTopics].map((t) => names.topic(t)), ...[...groupTopics.values()].flat()]);
    await Promise.all([...groupTopics].map(([group, topics]) => admin.initGroupOffsets(group, topics)));
    for (const t of topology.topics) {
      declared.add(t.name);
      if (t.requireRoute === false) optional.add(t.name);
    }
    for (const set of consumers.values()) {
      for (const t of set) {
        declared.add(t);
        routes.add(t);
      }
    }
  }

  const features: TransportFeatures = { name: 'kafka', orderedByKey: true, brokerDeliveryLimit: false, durable: true };

  return {
    features,
    publisher,
    subscriber,
    events,
    names,
    declare,
    stats: () => ({ ...stats }),
    close: async () => {
      if (closed) return;
      closed = true;
      // Consumers first (their in-flight handlers may still produce retries and dead letters).
      await subscriber.close();
      await Promise.allSettled([producer.disconnect(), admin.disconnect()]);
    },
  };
}
