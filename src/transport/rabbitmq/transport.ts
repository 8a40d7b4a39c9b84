export type { RabbitMqTransportOptions } from './settings.js';
import { EventEmitter } from 'node:events';
import { ConnectionManager } from './connection.js';
import { Names } from './names.js';
import { ConfirmPublisher, type RawMessage } from './publisher.js';
import { rabbitSettings, type RabbitMqTransportOptions } from './settings.js';
import { RabbitSubscription } from './subscription.js';
import { TopologyRegistry } from './topology.js';
import {
  DEFAULT_REDELIVERY,
  PublishError,
  standardHeaders,
  type OutgoingMessage,
  type Publisher,
  type Subscriber,
  type Subscription,
  type Topology,
  type Transport,
  type TransportFeatures,
} from '../contract.js';

export interface RabbitMqStats {
  readonly reconnects: number;
  /** Acks not sent because the delivering channel had closed (the broker redelivers those). */
  readonly acksDropped: number;
  readonly consumerRestarts: number;
  /** Failed messages whose copy the broker refused, recorded in Postgres through the DeadLetterSink. */
  readonly recordedDirectly: number;
}

/**
 * The RabbitMQ transport plus what operators and tests observe. `events` emits 'connected',
 * 'disconnected', 'reconnected', 'blocked', 'unblocked', 'consumer-cancelled' and
 * 'consumer-restored'; never 'error' (an 'error' event without a listener would kill the process).
 */
export interface RabbitMqTransport extends Transport {
  readonly events: EventEmitter;
  readonly connectionName: string;
  /** The names actually used on the broker for a topic / consumer (namespace applied). */
  readonly names: Names;
  stats(): RabbitMqStats;
  /** Every exchange and queue declared through this transport so far. */
  declaredNames(): { exchanges: string[]; queues: string[] };
}

/**
 * Connects (failing fast if the broker is unreachable at start) and returns the transport.
 *
 * Topology: a durable fanout exchange per topic; a durable queue per consumer bound to its topics'
 * exchanges; `<consumer>.retry.<ms>ms` queues that hold a failed message for a delay and then
 * dead-letter it back to the consumer queue; the dead-letter exchange/queue for DEAD_LETTER_TOPIC.
 * See rabbitmq/names.ts and rabbitmq/topology.ts.
 */
export async function createRabbitMqTransport(opts: RabbitMqTransportOptions): Promise<RabbitMqTransport> {
  const settings = rabbitSettings(opts);
  const { namespace, queueType, confirmTimeoutMs, reconnect, defaultPrefetch, connectionName } = settings;
  const logger = opts.logger.child({ component: 'rabbitmq' });
  const events = new EventEmitter();
  const names = new Names(namespace);
  const stats = { acksDropped: 0, consumerRestarts: 0, recordedDirectly: 0 };
  const subscriptions = new Set<RabbitSubscription>();
  let closed = false;

  const connection = new ConnectionManager({
    url: settings.url,
    heartbeatSec: settings.heartbeatSec,
    connectionName,
    reconnect,
    logger,
    events,
    onReconnected: async () => {
      // Everything is durable, so after a mere connection loss the broker still has it; but after a
      // broker reset or an operator's delete it may not. Re-declaring is idempotent and cheap.
      try {
        await topology.redeclareAll();
      } finally {
        for (const s of subscriptions) s.kick();
      }
    },
  });
  const publisher = new ConfirmPublisher({ connection, logger, channels: settings.publisherChannels, confirmTimeoutMs });
  const topology = new TopologyRegistry({
    names,
    queueType,
    deliveryLimit: settings.deliveryLimit,
    connection,
    logger,
    timeoutMs: confirmTimeoutMs,
    onExchange: (name) => publisher.markExchange(name),
  });
  await connection.start();

  function toRaw(m: OutgoingMessage): RawMessage {
    return {
      id: m.id,
      exchange: names.exchange(m.topic),
      // Fanout ignores it; it shows in x-death records and the management UI.
      routingKey: m.topic,
      body: m.body,
      options: {
        persistent: true,
        // mandatory: an unroutable message comes back as basic.return instead of being confirmed
        // and dropped; topics declared requireRoute: false accept "nobody listens".
        mandatory: !topology.isOptionalTopic(m.topic),
        // The envelope's own content type (CloudEvents structured mode or legacy JSON) as the AMQP
        // property, where the CloudEvents AMQP binding reads it.
        contentType: m.headers?.['content-type'] ?? 'application/json',
        messageId: m.id,
        type: m.type,
        headers: standardHeaders(m),
      },
    };
  }

  const pub: Publisher = {
    publish: async (messages) => {
      if (closed) {
        throw new PublishError('the RabbitMQ transport is closed', { code: 'CHANNEL_CLOSED', retryable: true, failedIds: messages.map((m) => m.id) });
      }
      await publisher.send(messages.map(toRaw));
    },
    close: () => publisher.close(),
  };

  const sub: Subscriber = {
    subscribe: async (topics, consumer, handler, subOpts): Promise<Subscription> => {
      if (closed) throw new Error('the RabbitMQ transport is closed');
      const s = new RabbitSubscription(
        { connection, topology, publisher, names, logger, events, reconnect, timeoutMs: confirmTimeoutMs, stats },
        topics,
        consumer,
        handler,
        subOpts?.prefetch ?? defaultPrefetch,
        subOpts?.retry ?? DEFAULT_REDELIVERY,
        subOpts?.deadLetterSink,
      );
      await s.start();
      subscriptions.add(s);
      // The Subscription handed out stays valid across reconnects; closing it forgets it here.
      return {
        close: async () => {
          subscriptions.delete(s);
          await s.close();
        },
      };
    },
    close: async () => {
      const all = [...subscriptions];
      subscriptions.clear();
      await Promise.allSettled(all.map((s) => s.close()));
    },
  };

  const features: TransportFeatures = {
    name: 'rabbitmq',
    // One queue, many consumers and a prefetch window: no per-key order.
    orderedByKey: false,
    // Only quorum queues have x-delivery-limit; a classic queue redelivers a crashing message forever.
    brokerDeliveryLimit: queueType === 'quorum',
    durable: true,
  };

  return {
    features,
    publisher: pub,
    subscriber: sub,
    events,
    connectionName,
    names,
    declare: (t: Topology) => topology.declare(t),
    declaredNames: () => topology.declaredNames(),
    stats: () => ({ reconnects: connection.reconnects, ...stats }),
    close: async () => {
      if (closed) return;
      closed = true;
      // While disconnected there is nothing to drain: stop reconnecting first, so that waiting
      // publishes fail at once (CHANNEL_CLOSED) instead of holding close() until a reconnect.
      if (!connection.connected) await connection.close();
      // Consumers first (their in-flight handlers may still publish retries), then publishes.
      await sub.close();
      await publisher.close();
      await connection.close();
    },
  };
}
