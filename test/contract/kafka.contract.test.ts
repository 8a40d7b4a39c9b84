/**
 * The shared transport contract against the Kafka transport on a real broker (the run's broker from
 * test/helpers/services-setup.ts). Every test gets its own namespace, so its topics and consumer
 * groups are its own; they are deleted afterwards.
 */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { describe, inject } from 'vitest';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { createKafkaTransport } from '../../src/transport/kafka/transport.js';
import { transportContract } from './transport.contract.js';

const brokers = inject('services').kafkaBrokers;
const fileNs = `sfkc-${randomBytes(3).toString('hex')}`;
let n = 0;

function logger(): Logger {
  const level = process.env.TEST_LOG_LEVEL;
  return level ? createLogger({ level, name: 'kafka-contract' }) : silentLogger();
}

/** Deletes the topics and groups of one test's namespace (best effort: the broker is a test broker). */
async function deleteNamespace(prefix: string): Promise<void> {
  const admin = new Kafka({ clientId: 'kafka-contract-cleanup', brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => {});
    if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {});
  } finally {
    await admin.disconnect();
  }
}

describe.skipIf(brokers === '')('kafka', () => {
  transportContract('kafka', async () => {
    const namespace = `${fileNs}-${++n}.`;
    const transport = await createKafkaTransport({
      brokers: brokers.split(','),
      namespace,
      partitions: 3,
      clientId: 'kafka-contract',
      logger: logger(),
      sessionTimeoutMs: 10_000,
    });
    return {
      transport,
      namespace,
      cleanup: async () => {
        await transport.close();
        await deleteNamespace(namespace);
      },
    };
  });
});
