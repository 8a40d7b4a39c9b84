import type { KafkaConfig, RetryOptions } from 'kafkajs';
import type { Logger } from '../../log.js';
import { groupTiming } from './group-timing.js';
import type { SubscriptionSettings } from './subscription.js';

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

/** The options with their defaults applied: what the subscriptions, the publisher and the clients use. */
export function kafkaSettings(opts: KafkaTransportOptions): {
  settings: Omit<SubscriptionSettings, 'prefetch'>;
  requestTimeoutMs: number;
  maxBatchBytes: number;
  defaultPrefetch: number;
} {
  const timing = groupTiming({
    sessionTimeoutMs: opts.sessionTimeoutMs,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
    rebalanceTimeoutMs: opts.rebalanceTimeoutMs,
  });
  return {
    requestTimeoutMs: opts.requestTimeoutMs ?? 30_000,
    maxBatchBytes: opts.maxBatchBytes ?? 512 * 1024,
    defaultPrefetch: opts.prefetch ?? 256,
    settings: {
      maxInFlightPerPartition: opts.maxInFlightPerPartition ?? 1_000,
      ...timing,
      maxWaitTimeMs: opts.maxWaitTimeMs ?? 500,
      commitIntervalMs: opts.commitIntervalMs ?? 100,
      maxConsumerRecreates: opts.maxConsumerRecreates ?? 5,
      joinTimeoutMs: Math.max(60_000, 2 * timing.sessionTimeoutMs),
      consumerRetry: { retries: 8, initialRetryTime: 200, maxRetryTime: 5_000, ...opts.consumerRetry },
      ...(opts.restartOnFailure ? { restartOnFailure: opts.restartOnFailure } : {}),
    },
  };
}
