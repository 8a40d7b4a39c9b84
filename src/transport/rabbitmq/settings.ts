import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log.js';
import type { ReconnectPolicy } from './connection.js';
import type { QueueType } from './topology.js';

export interface RabbitMqTransportOptions {
  readonly url: string;
  /** Prefix of every exchange and queue name, the dead-letter and retry ones included. Default ''. */
  readonly namespace?: string;
  /** Default 'quorum' (replicated, delivery limit, at-least-once dead-lettering). */
  readonly queueType?: QueueType;
  /** Unacked deliveries per consumer unless subscribe() says otherwise. Default 512. */
  readonly prefetch?: number;
  readonly logger: Logger;
  /** AMQP heartbeat in seconds. Default 10. In amqplib 2.x, 0 disables heartbeats. */
  readonly heartbeatSec?: number;
  /** Longest wait for a publish confirm (and for a connection while disconnected). Default 15,000. */
  readonly confirmTimeoutMs?: number;
  /** Reconnect backoff. Default { initialDelayMs: 100, maxDelayMs: 10_000 }. */
  readonly reconnect?: ReconnectPolicy;
  /** Confirm channels used round-robin by publish(). Default 2. */
  readonly publisherChannels?: number;
  /** Quorum `x-delivery-limit`: a backstop against crash loops where the handler never settles. Default 20. */
  readonly deliveryLimit?: number;
  /** Shown by `rabbitmqctl list_connections client_properties`; default `sagaflow[:<namespace>]:<pid>:<random>`. */
  readonly connectionName?: string;
}

/** The options with their defaults applied: what the connection, topology, publisher and subscriptions use. */
export interface RabbitMqSettings {
  readonly url: string;
  readonly namespace: string;
  readonly queueType: QueueType;
  readonly defaultPrefetch: number;
  readonly heartbeatSec: number;
  readonly confirmTimeoutMs: number;
  readonly reconnect: ReconnectPolicy;
  readonly publisherChannels: number;
  readonly deliveryLimit: number;
  readonly connectionName: string;
}

export function rabbitSettings(opts: RabbitMqTransportOptions): RabbitMqSettings {
  const namespace = opts.namespace ?? '';
  return {
    url: opts.url,
    namespace,
    queueType: opts.queueType ?? 'quorum',
    defaultPrefetch: opts.prefetch ?? 512,
    heartbeatSec: opts.heartbeatSec ?? 10,
    confirmTimeoutMs: opts.confirmTimeoutMs ?? 15_000,
    reconnect: opts.reconnect ?? { initialDelayMs: 100, maxDelayMs: 10_000 },
    publisherChannels: opts.publisherChannels ?? 2,
    deliveryLimit: opts.deliveryLimit ?? 20,
    // Unique per process and per transport, so an operator can tell the connections apart.
    connectionName: opts.connectionName ?? `sagaflow${namespace ? `:${namespace}` : ''}:${process.pid}:${randomBytes(4).toString('hex')}`,
  };
}
