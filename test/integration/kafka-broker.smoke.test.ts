/**
 * Smoke test of the local Kafka broker (scripts/kafka/broker.ts) with the project's client, kafkajs
 * 2.2.4: proves the chosen Kafka 4.x release speaks a protocol kafkajs understands (topic creation,
 * acks=-1 produce, classic consumer groups with explicit commits, offset fetch) and that data
 * survives a broker crash (SIGKILL) and restart on the same data dir.
 *
 * With env KAFKA_BROKERS set (e.g. from `npm run kafka:start`) it uses that broker instead of
 * starting one; the crash/restart test is skipped then, as it needs a broker it owns.
 */
import { randomUUID } from 'node:crypto';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Kafka, Partitioners, logLevel, type Admin, type EachBatchPayload } from 'kafkajs';
import { startKafkaBroker, type KafkaBroker } from '../../scripts/kafka/broker.js';

const external = process.env.KAFKA_BROKERS;
let broker: KafkaBroker | undefined;
let brokers: string;

function client(clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers: brokers.split(','),
    // kafkajs logs every retry and rebalance at INFO; failures still surface as rejected promises.
    logLevel: logLevel.WARN,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2_000 },
  });
}

/** Poll `probe` until it returns true, with a deadline: no fixed sleeps. */
async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

async function createTopic(admin: Admin, topic: string, numPartitions: number): Promise<void> {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  expect(created).toBe(true);
}

async function produce(topic: string, count: number, prefix: string): Promise<void> {
  const producer = client(`${prefix}-producer`).producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  try {
    const messages = Array.from({ length: count }, (_, i) => ({ key: `key-${i}`, value: `${prefix}-value-${i}` }));
    // acks -1: the broker answers only once the record is in every in-sync replica (here: the one).
    const results = await producer.send({ topic, acks: -1, messages });
    expect(results.every((r) => r.errorCode === 0)).toBe(true);
  } finally {
    await producer.disconnect();
  }
}

interface Consumed {
  partition: number;
  offset: string;
  key: string;
  value: string;
}

/**
 * Consume `expected` messages of `topic` from the beginning with consumer group `groupId`, committing
 * explicitly after each batch (autoCommit off), then disconnect.
 */
async function consumeAll(topic: string, groupId: string, expected: number): Promise<Consumed[]> {
  const consumer = client(`${groupId}-consumer`).consumer({
    groupId,
    allowAutoTopicCreation: false,
    // Leave quickly on disconnect; the test only has one member.
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
  });
  const received: Consumed[] = [];
  let done!: () => void;
  const allReceived = new Promise<void>((resolve) => (done = resolve));
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat }: EachBatchPayload) => {
        for (const message of batch.messages) {
          received.push({
            partition: batch.partition,
            offset: message.offset,
            key: message.key?.toString() ?? '',
            value: message.value?.toString() ?? '',
          });
          resolveOffset(message.offset);
        }
        const last = batch.messages[batch.messages.length - 1];
        if (last) {
          // The committed offset is the NEXT offset to read, hence +1.
          await consumer.commitOffsets([
            { topic: batch.topic, partition: batch.partition, offset: (BigInt(last.offset) + 1n).toString() },
          ]);
        }
        await heartbeat();
        if (received.length >= expected) done();
      },
    });
    const deadline = new Promise<never>((_, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${received.length}/${expected} messages after 60 s`)),
        60_000,
      );
      void allReceived.finally(() => clearTimeout(timer));
    });
    await Promise.race([allReceived, deadline]);
  } finally {
    await consumer.disconnect();
  }
  return received;
}

beforeAll(async () => {
  if (external) {
    brokers = external;
  } else {
    broker = await startKafkaBroker();
    brokers = broker.brokers;
  }
}, 240_000); // a cold cache downloads ~45 MB of jars with Maven first

afterAll(async () => {
  await broker?.stop();
}, 60_000);

describe('local Kafka broker with kafkajs 2.2.4', () => {
  it('creates a topic, produces with acks=-1, consumes with a group and commits offsets explicitly', async () => {
    const id = randomUUID().slice(0, 8);
    const topic = `smoke-${id}`;
    const groupId = `smoke-group-${id}`;
    const admin = client(`smoke-admin-${id}`).admin();
    await admin.connect();
    try {
      await createTopic(admin, topic, 3);
      const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
      expect(metadata.topics[0]?.partitions).toHaveLength(3);

      await produce(topic, 100, id);
      const received = await consumeAll(topic, groupId, 100);

      expect(received).toHaveLength(100);
      const values = new Set(received.map((m) => m.value));
      for (let i = 0; i < 100; i++) expect(values.has(`${id}-value-${i}`)).toBe(true);
      // Keyed messages: one key always lands on one partition, and 100 keys spread over all 3.
      const partitionOfKey = new Map<string, number>();
      for (const m of received) {
        expect(partitionOfKey.get(m.key) ?? m.partition).toBe(m.partition);
        partitionOfKey.set(m.key, m.partition);
      }
      expect(new Set(received.map((m) => m.partition)).size).toBe(3);

      // The committed offsets equal each partition's end offset (high watermark).
      const ends = await admin.fetchTopicOffsets(topic);
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      expect(committed?.topic).toBe(topic);
      const byPartition = new Map(committed?.partitions.map((p) => [p.partition, p.offset]));
      expect(byPartition.size).toBe(3);
      let total = 0;
      for (const end of ends) {
        expect(byPartition.get(end.partition)).toBe(end.high);
        total += Number(end.high);
      }
      expect(total).toBe(100);
    } finally {
      await admin.disconnect();
    }
  }, 120_000);

  it.skipIf(external !== undefined)(
    'keeps topics and messages across kill() and restart() on the same data dir',
    async () => {
      const b = broker;
      if (!b) throw new Error('no broker started by this test file');
      const id = randomUUID().slice(0, 8);
      const topic = `restart-${id}`;
      const admin = client(`restart-admin-${id}`).admin();
      await admin.connect();
      try {
        await createTopic(admin, topic, 2);
      } finally {
        await admin.disconnect();
      }
      await produce(topic, 20, id);

      const pidBefore = b.pid;
      await b.kill(); // SIGKILL: no controlled shutdown, no flush beyond what acks=-1 guaranteed
      await b.restart();
      expect(b.pid).not.toBe(pidBefore);
      expect(b.brokers).toBe(brokers); // same port: clients keep their bootstrap address

      const admin2 = client(`restart-admin2-${id}`).admin();
      await admin2.connect();
      try {
        expect(await admin2.listTopics()).toContain(topic);
        // Partition leadership is re-established shortly after the broker is ready.
        await waitFor('the high watermarks after restart', async () => {
          const offsets = await admin2.fetchTopicOffsets(topic).catch(() => []);
          return offsets.length === 2 && offsets.reduce((sum, o) => sum + Number(o.high), 0) === 20;
        });
      } finally {
        await admin2.disconnect();
      }
      const received = await consumeAll(topic, `restart-group-${id}`, 20);
      expect(new Set(received.map((m) => m.value))).toEqual(
        new Set(Array.from({ length: 20 }, (_, i) => `${id}-value-${i}`)),
      );
    },
    120_000,
  );
});
