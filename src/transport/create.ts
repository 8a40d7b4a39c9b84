import { DependencyError, SagaflowError, type Dependency } from '../errors.js';
import { redactUrl, type Logger } from '../log.js';
import { withFaults } from './faults.js';
import { MemoryTransport } from './memory.js';
import type { Transport } from './contract.js';
import type { GroupTiming } from './kafka/group-timing.js';

/**
 * What choosing and connecting a transport needs from the configuration. Declared here, not taken
 * from config.ts, so the transport layer does not import the composition root above it (the
 * process configuration satisfies it structurally).
 */
export interface TransportConfig {
  readonly transport: 'memory' | 'rabbitmq' | 'kafka';
  readonly amqpUrl: string;
  readonly kafkaBrokers: readonly string[];
  readonly namespace: string;
  readonly rabbitQueueType: 'classic' | 'quorum';
  readonly prefetch: number;
  readonly kafkaPartitions: number;
  readonly kafkaGroup: Readonly<GroupTiming>;
  readonly faults: { readonly duplicatePublish: boolean };
}

/**
 * Builds the configured transport. The broker clients are imported only when chosen, so a
 * memory-transport process never loads amqplib or kafkajs.
 */
export async function createTransport(config: TransportConfig, logger: Logger, overrides: { clientId?: string } = {}): Promise<Transport> {
  const transport = await connect(config, logger, overrides);
  if (config.faults.duplicatePublish) logger.warn('fault injection: every message is published twice');
  return withFaults(transport, config.faults);
}

async function connect(config: TransportConfig, logger: Logger, overrides: { clientId?: string }): Promise<Transport> {
  switch (config.transport) {
    case 'memory':
      return new MemoryTransport();
    case 'rabbitmq': {
      const { createRabbitMqTransport } = await import('./rabbitmq/transport.js');
      return createRabbitMqTransport({
        url: config.amqpUrl,
        namespace: config.namespace,
        queueType: config.rabbitQueueType,
        prefetch: config.prefetch,
        logger,
      }).catch(unreachable(config));
    }
    case 'kafka': {
      const { createKafkaTransport } = await import('./kafka/transport.js');
      return createKafkaTransport({
        brokers: config.kafkaBrokers,
        namespace: config.namespace,
        partitions: config.kafkaPartitions,
        ...config.kafkaGroup,
        clientId: overrides.clientId ?? 'sagaflow',
        logger,
      }).catch(unreachable(config));
    }
  }
}

/** The configured broker as an operator knows it: its name, address (password masked) and the variable that sets it. */
export function brokerAddress(config: TransportConfig): { dependency: Dependency; address: string; setting: string } | null {
  switch (config.transport) {
    case 'memory':
      return null;
    case 'rabbitmq':
      return { dependency: 'RabbitMQ', address: redactUrl(config.amqpUrl), setting: 'AMQP_URL' };
    case 'kafka':
      return { dependency: 'Kafka', address: config.kafkaBrokers.join(','), setting: 'KAFKA_BROKERS' };
  }
}

/** A broker that cannot be reached, in one line (see DependencyError): not a bare `connect ECONNREFUSED ...`. */
export function brokerUnreachable(config: TransportConfig, cause: unknown): Error {
  const b = brokerAddress(config);
  return cause instanceof SagaflowError || !b ? (cause as Error) : new DependencyError(b.dependency, b.address, b.setting, cause);
}

function unreachable(config: TransportConfig): (err: unknown) => never {
  return (err) => {
    throw brokerUnreachable(config, err);
  };
}
