/**
 * The committed JSON Schemas (docs/schemas) hold for real traffic: a saga runs on real RabbitMQ and
 * real Kafka, a plain client of each broker (amqplib, kafkajs: no sagaflow code on the reading side)
 * captures a command, its reply and a domain event off the wire, and ajv validates each body with
 * the schema a foreign client would use. The content type must be the CloudEvents structured one.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from 'amqplib';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import orderModule, { PlaceOrder, migrateExample, orderSaga } from '../../examples/order/index.js';
import { createClient } from '../../src/client.js';
import { silentLogger } from '../../src/log.js';
import type { Transport } from '../../src/transport/contract.js';
import { createKafkaTransport } from '../../src/transport/kafka/transport.js';
import { createRabbitMqTransport } from '../../src/transport/rabbitmq/transport.js';
import { createWorker } from '../../src/worker/worker.js';
import { createTestDb, uniqueName, type TestDb } from '../helpers/db.js';
import { schemaValidator } from '../helpers/json-schema.js';
import { waitFor } from '../helpers/wait.js';

const { amqpUrl, kafkaBrokers } = inject('services');
let t: TestDb;
const exampleSchema = uniqueName('sf_capture_ex');

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_capture' });
  await migrateExample(t.db, exampleSchema, 50);
});
afterAll(async () => {
  await t.db.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await t.drop();
});

interface Captured {
  readonly topic: string;
  readonly body: Buffer;
  readonly contentType: string | undefined;
}

const STRUCTURED = 'application/cloudevents+json; charset=utf-8';
const envelopeSchema = schemaValidator('cloudevent.schema.json');

/** Runs one order through a worker on `transport` and returns what `captured` saw. */
async function runOrder(transport: Transport, captured: readonly Captured[]): Promise<{ command: Captured; reply: Captured; event: Captured }> {
  const worker = createWorker({
    db: t.db,
    transport,
    module: orderModule({ env: { ORDER_EXAMPLE_SCHEMA: exampleSchema } }),
    logger: silentLogger(),
    options: { schema: t.schema, events: 'all', outboxGraceMs: 60_000 },
  });
  await worker.start();
  try {
    const client = createClient({ schema: t.schema, publisher: transport.publisher });
    const orderId = `capture-${randomUUID().slice(0, 8)}`;
    const { sagaId } = await client.startSaga(
      orderSaga,
      PlaceOrder.schema.parse({ orderId, customerId: 'c-1', items: [{ sku: 'sku-1', qty: 1 }], amountCents: 100 }),
    );
    const attrs = (c: Captured) => JSON.parse(c.body.toString()) as { type?: string; sagaid?: string };
    const found = (type: string) => captured.find((c) => attrs(c).type === type && attrs(c).sagaid === sagaId);
    await waitFor('a command, its reply and the completion event on the wire', () => [found('ReserveStock'), found('StockReserved'), found('SagaCompleted')], (xs) => xs.every(Boolean), {
      timeoutMs: 90_000,
    });
    return { command: found('ReserveStock')!, reply: found('StockReserved')!, event: found('SagaCompleted')! };
  } finally {
    await worker.stop();
  }
}

function expectValid(m: { command: Captured; reply: Captured; event: Captured }): void {
  for (const c of [m.command, m.reply, m.event]) {
    expect(c.contentType).toBe(STRUCTURED);
    expect(envelopeSchema(JSON.parse(c.body.toString()))).toEqual([]);
  }
  expect(m.command.topic).toMatch(/stock$/);
  expect(m.reply.topic).toMatch(/orders$/);
  expect(schemaValidator('messages/ReserveStock.schema.json')(JSON.parse(m.command.body.toString()))).toEqual([]);
  expect(schemaValidator('messages/StockReserved.schema.json')(JSON.parse(m.reply.body.toString()))).toEqual([]);
}

describe('real messages validate against docs/schemas', () => {
  it('RabbitMQ', { timeout: 150_000 }, async () => {
    const namespace = `sfcap-${randomBytes(3).toString('hex')}.`;
    const transport = await createRabbitMqTransport({ url: amqpUrl, namespace, logger: silentLogger() });
    const captured: Captured[] = [];
    const conn = await connect(amqpUrl);
    conn.on('error', () => {});
    try {
      const ch = await conn.createChannel();
      const topics = ['stock', 'orders', 'sagaflow.events'];
      // The worker declares the exchanges; a foreign reader binds its own queue to them.
      for (const x of topics) await ch.assertExchange(`${namespace}${x}`, 'fanout', { durable: true });
      const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
      for (const x of topics) await ch.bindQueue(queue, `${namespace}${x}`, '');
      await ch.consume(queue, (m) => m && captured.push({ topic: m.fields.exchange, body: m.content, contentType: m.properties.contentType as string | undefined }), { noAck: true });
      expectValid(await runOrder(transport, captured));
    } finally {
      await conn.close().catch(() => {});
      const names = (transport as unknown as { declaredNames?: () => { exchanges: string[]; queues: string[] } }).declaredNames?.();
      await transport.close();
      if (names) {
        const c2 = await connect(amqpUrl);
        c2.on('error', () => {});
        const ch = await c2.createChannel();
        ch.on('error', () => {});
        for (const q of names.queues) await ch.deleteQueue(q).catch(() => {});
        for (const x of names.exchanges) await ch.deleteExchange(x).catch(() => {});
        await c2.close().catch(() => {});
      }
    }
  });

  it.skipIf(kafkaBrokers === '')('Kafka', { timeout: 150_000 }, async () => {
    const namespace = `sfcap-${randomBytes(3).toString('hex')}.`;
    const brokers = kafkaBrokers.split(',');
    const transport = await createKafkaTransport({ brokers, namespace, partitions: 2, clientId: 'wire-capture', logger: silentLogger(), sessionTimeoutMs: 10_000 });
    const captured: Captured[] = [];
    const kafka = new Kafka({ clientId: 'wire-capture-reader', brokers, logLevel: logLevel.NOTHING });
    const topics = ['stock', 'orders', 'sagaflow.events'].map((x) => `${namespace}${x}`);
    const admin = kafka.admin();
    await admin.connect();
    const consumer = kafka.consumer({ groupId: `${namespace}capture`, sessionTimeout: 10_000 });
    try {
      // Created here so the reader can subscribe before the worker starts (the worker's declare is idempotent).
      await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 2, replicationFactor: 1 })), waitForLeaders: true });
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ topic, message }) => {
          if (message.value) captured.push({ topic, body: message.value, contentType: message.headers?.['content-type']?.toString() });
        },
      });
      expectValid(await runOrder(transport, captured));
    } finally {
      await consumer.disconnect().catch(() => {});
      await transport.close();
      const all = (await admin.listTopics()).filter((x) => x.startsWith(namespace));
      await admin.deleteTopics({ topics: all }).catch(() => {});
      await admin.disconnect();
    }
  });
});
