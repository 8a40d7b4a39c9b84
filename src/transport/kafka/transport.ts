export type { KafkaTransportOptions } from './settings.js';
import { EventEmitter } from 'node:events';
import { Kafka, Partitioners, type KafkaConfig, type Message, type Producer } from 'kafkajs';
import { errorMessage } from '../../errors.js';
import { KafkaAdmin } from './admin.js';
import { kafkaLogCreator, kafkaLogLevel, type KafkaLogGate } from './log.js';
import { KafkaNames } from './names.js';
import { KafkaPublisher } from './publisher.js';
import { kafkaSettings, type KafkaTransportOptions } from './settings.js';
import { KafkaSubscription, type KafkaSubscriptionStats } from './subscription.js';
import { KafkaTopology } from './topology.js';
import {
  DEFAULT_REDELIVERY,
  type Subscriber,
  type Subscription,
  type Topology,
  type Transport,
  type TransportFeatures,
} from '../contract.js';

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
  const { settings, requestTimeoutMs, maxBatchBytes, defaultPrefetch } = kafkaSettings(opts);
  const events = new EventEmitter();
  const stats = { ...EMPTY_STATS, published: 0 };
  const subscriptions = new Set<KafkaSubscription>();
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
  const topology = new KafkaTopology(admin, names);
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
  const publisher = new KafkaPublisher({ producer, names, topology, maxBatchBytes, stats, isClosed: () => closed });

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
      topology.reading(topics);
      subscriptions.add(sub);
      await sub.start();
      return { close: () => sub.close() };
    },
    close: async () => {
      await Promise.allSettled([...subscriptions].map((s) => s.close()));
    },
  };

  async function declare(t: Topology): Promise<void> {
    if (closed) throw new Error('the Kafka transport is closed');
    await topology.declare(t);
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
