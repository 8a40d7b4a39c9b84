import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { withFaults } from './faults.js';
import { MemoryTransport } from './memory.js';
import type { Transport } from './contract.js';

/**
 * Builds the configured transport. The broker clients are imported only when chosen, so a
 * memory-transport process never loads amqplib or kafkajs.
 */
export async function createTransport(config: Config, logger: Logger, overrides: { clientId?: string } = {}): Promise<Transport> {
  const transport = await connect(config, logger, overrides);
  if (config.faults.duplicatePublish) logger.warn('fault injection: every message is published twice');
  return withFaults(transport, config.faults);
}

async function connect(config: Config, logger: Logger, overrides: { clientId?: string }): Promise<Transport> {
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
      });
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
      });
    }
  }
}
