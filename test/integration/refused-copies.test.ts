/**
 * A failed message whose retry or dead-letter copy the broker refuses for good, on the real brokers
 * and Postgres: it ends as ONE `dead_letters` row with its true reason, recorded through the
 * DeadLetterSink, and the original is acked / its offset committed. Before: RabbitMQ requeued it
 * every ~2 ms for ever ("could not publish the dead letter; requeueing"), Kafka retried the copy
 * every 30 s and pinned the partition's committed offset.
 */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DeadLetterRecorder } from '../../src/dead-letters/recorder.js';
import { PermanentError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { DEAD_LETTER_TOPIC, type DeadLetterSink, type Delivery, type OutgoingMessage, type Transport } from '../../src/transport/contract.js';
import { createKafkaTransport } from '../../src/transport/kafka/transport.js';
import { KafkaNames } from '../../src/transport/kafka/names.js';
import { createRabbitMqTransport } from '../../src/transport/rabbitmq/transport.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

const services = inject('services');
let t: TestDb;
let sink: DeadLetterSink;

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_refused' });
  const recorder = new DeadLetterRecorder(t.schema);
  sink = { record: async (d) => void (await recorder.record(t.db, d)) };
});
afterAll(async () => {
  await t?.drop();
});

interface Row {
  message_id: string;
  consumer: string;
  topic: string;
  reason_code: string;
  error: string;
  body_bytes: number;
  times_seen: number;
}

async function deadLetterRows(consumer: string): Promise<Row[]> {
  const { rows } = await t.db.query<Row>(
    `SELECT message_id, consumer, topic, reason_code, error, length(body) AS body_bytes, times_seen FROM "${t.schema}".dead_letters WHERE consumer = $1`,
    [consumer],
  );
  return rows;
}

function message(topic: string, id: string, extra: Partial<OutgoingMessage> = {}): OutgoingMessage {
  return { topic, id, key: `key-${id}`, type: 'test.Message', body: Buffer.from(JSON.stringify({ id })), ...extra };
}

/** Subscribes a consumer whose handler fails `failing` with `error`, counting every delivery. */
async function failingConsumer(transport: Transport, topic: string, consumer: string, failing: string, error: () => Error) {
  const seen: Delivery[] = [];
  const sub = await transport.subscriber.subscribe(
    [topic],
    consumer,
    async (d) => {
      seen.push(d);
      if (d.id === failing) throw error();
    },
    { retry: { maxAttempts: 3, delaysMs: [50] }, deadLetterSink: sink },
  );
  return { seen, sub, count: (id: string) => seen.filter((d) => d.id === id).length };
}

describe('RabbitMQ: a header table over 64 KiB', () => {
  for (const queueType of ['classic', 'quorum'] as const) {
    it(`(${queueType}) a failing message whose copy cannot be encoded ends as one dead_letters row with its reason, delivered once`, async () => {
      const s = randomBytes(4).toString('hex');
      const transport = await createRabbitMqTransport({ url: services.amqpUrl, namespace: `sfrc-${s}-`, queueType, logger: silentLogger() });
      const topic = `orders.${s}`;
      const consumer = `c.${s}`;
      try {
        await transport.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
        // A handler error is retryable: the RETRY copy (two headers more) no longer fits amqplib's
        // 64 KiB table, and neither would the dead letter.
        const c = await failingConsumer(transport, topic, consumer, `big-${s}`, () => new Error('inventory service said no'));
        await transport.publisher.publish([message(topic, `big-${s}`, { headers: { 'x-big': 'h'.repeat(65_536 - 150) } })]);
        const rows = await waitFor('the dead_letters row', () => deadLetterRows(consumer), (r) => r.length > 0, { timeoutMs: 30_000 });
        await transport.publisher.publish([message(topic, `after-${s}`)]);
        await waitFor('the next message handled', () => c.count(`after-${s}`), (n) => n === 1);
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ message_id: `big-${s}`, consumer, topic, reason_code: 'HANDLER_ERROR', times_seen: 1 });
        expect(rows[0]!.error).toContain('inventory service said no');
        expect(rows[0]!.error).toContain('MESSAGE_TOO_LARGE');
        // No loop: one delivery, nothing redelivered, nothing on the dead-letter queue either.
        expect(c.count(`big-${s}`)).toBe(1);
        expect(transport.stats().recordedDirectly).toBe(1);
        await c.sub.close();
        await transport.close();
      } finally {
        await transport.close();
      }
    });
  }
});

describe.skipIf(services.kafkaBrokers === '')('Kafka: a record whose copy exceeds the size limit', () => {
  it('is recorded in dead_letters with its reason and its offset is committed (the partition is not pinned)', async () => {
    const s = randomBytes(4).toString('hex');
    const namespace = `sfrk-${s}.`;
    const names = new KafkaNames(namespace);
    const topic = `orders.${s}`;
    const consumer = `c.${s}`;
    const brokers = services.kafkaBrokers.split(',');
    // The broker's limit made small (topic-level max.message.bytes) so the test is cheap: the record
    // fits, its copies with added headers do not. Created before declare(), which leaves existing
    // topics as they are.
    const limit = 20_000;
    const admin = new Kafka({ clientId: 'refused-copies', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const config = [{ name: 'max.message.bytes', value: String(limit) }];
    await admin.createTopics({
      waitForLeaders: true,
      topics: [names.topic(topic), names.topic(DEAD_LETTER_TOPIC), names.retryTopic(consumer, 50)].map((name) => ({
        topic: name,
        numPartitions: 1,
        replicationFactor: 1,
        configEntries: config,
      })),
    });
    const transport = await createKafkaTransport({ brokers, namespace, partitions: 1, clientId: 'refused-copies', logger: silentLogger(), sessionTimeoutMs: 10_000 });
    try {
      await transport.declare({ topics: [{ name: topic }], consumers: [{ consumer, topics: [topic] }] });
      const c = await failingConsumer(transport, topic, consumer, `big-${s}`, () => new PermanentError('SCHEMA_INVALID', 'amount must be a string'));
      const body = Buffer.from(JSON.stringify({ id: `big-${s}`, pad: 'p'.repeat(limit - 400) }));
      await transport.publisher.publish([message(topic, `big-${s}`, { body })]);
      const rows = await waitFor('the dead_letters row', () => deadLetterRows(consumer), (r) => r.length > 0, { timeoutMs: 30_000 });
      await transport.publisher.publish([message(topic, `after-${s}`)]);
      await waitFor('the next record handled', () => c.count(`after-${s}`), (n) => n === 1, { timeoutMs: 30_000 });
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ message_id: `big-${s}`, consumer, topic, reason_code: 'SCHEMA_INVALID', body_bytes: body.length, times_seen: 1 });
      expect(rows[0]!.error).toContain('MESSAGE_TOO_LARGE');
      expect(c.count(`big-${s}`)).toBe(1);
      expect(transport.stats().recordedDirectly).toBe(1);
      await c.sub.close();
      // Both records are committed: the group's offset is at the end of the partition.
      const [committed] = await admin.fetchOffsets({ groupId: names.group(consumer), topics: [names.topic(topic)] });
      const [end] = await admin.fetchTopicOffsets(names.topic(topic));
      expect(committed!.partitions[0]!.offset).toBe(end!.high);
    } finally {
      await transport.close();
      const topics = (await admin.listTopics()).filter((x) => x.startsWith(namespace));
      await admin.deleteGroups([names.group(consumer)]).catch(() => {});
      await admin.deleteTopics({ topics }).catch(() => {});
      await admin.disconnect();
    }
  });
});
