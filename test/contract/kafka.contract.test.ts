/**
 * The shared transport contract against the Kafka transport on a real broker (the run's broker from
 * test/helpers/services-setup.ts). Every test gets its own namespace, so its topics and consumer
 * groups are its own; they are deleted afterwards.
 */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { Registry } from 'prom-client';
import { describe, expect, inject, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.js';
import { watchConsumerLag } from '../../src/observability/worker-hooks.js';
import { waitFor } from '../helpers/wait.js';
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

describe.skipIf(brokers === '')('kafka consumer lag', () => {
  it('the transport reports per-partition lag as it fetches; the metric sums it and ends at 0 once everything is taken', async () => {
    const namespace = `${fileNs}-lag.`;
    const transport = await createKafkaTransport({ brokers: brokers.split(','), namespace, partitions: 3, clientId: 'kafka-lag', logger: logger(), sessionTimeoutMs: 10_000 });
    const registry = new Registry();
    const metrics = new Metrics(registry);
    const stop = watchConsumerLag(transport, metrics);
    const reported: number[] = [];
    transport.events.on('lag', (l: { messages: number }) => reported.push(l.messages));
    try {
      await transport.declare({ topics: [{ name: 'lagged' }], consumers: [{ consumer: 'lag-reader', topics: ['lagged'] }] });
      // Published before anyone reads, ~2 MB per partition: more than one fetch takes (1 MB per
      // partition by default), so the first fetches see records beyond them.
      const body = Buffer.alloc(20_000, 'x');
      for (let b = 0; b < 3; b++) {
        await transport.publisher.publish(
          Array.from({ length: 100 }, (_, j) => {
            const i = b * 100 + j;
            return { topic: 'lagged', id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, key: `k${i}`, type: 't', body };
          }),
        );
      }
      let handled = 0;
      const sub = await transport.subscriber.subscribe(['lagged'], 'lag-reader', async () => {
        handled++;
      }, { prefetch: 16 });
      await waitFor('all 300 records handled', () => handled, (n) => n >= 300, { timeoutMs: 60_000 });
      const gauge = async () => (await registry.getSingleMetric('sagaflow_kafka_consumer_lag_messages')!.get()).values.find((v) => v.labels.topic === 'lagged')?.value;
      await waitFor('the lag gauge at 0', gauge, (v) => v === 0, { timeoutMs: 30_000 });
      expect(Math.max(...reported)).toBeGreaterThan(0);
      await sub.close();
    } finally {
      stop();
      await transport.close();
      await deleteNamespace(namespace);
    }
  }, 120_000);
});
