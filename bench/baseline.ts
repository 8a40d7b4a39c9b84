/**
 * The raw transport baseline, measured in the same run as the saga benchmark: plain client
 * libraries, no sagaflow code. Publish N persistent messages of the given size with confirms (many
 * in flight; Kafka: acks=all in batches), consume them and ack (Kafka: commit), end to end.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'amqplib';
import { Kafka, logLevel } from 'kafkajs';

export interface BaselineResult {
  readonly messages: number;
  readonly bytes: number;
  readonly msgsPerSec: number;
}

export async function rabbitBaseline(url: string, n: number, bytes: number, queueType: 'quorum' | 'classic'): Promise<BaselineResult> {
  const conn = await connect(url, { noDelay: true });
  conn.on('error', () => {});
  const queue = `bench.baseline.${randomBytes(4).toString('hex')}`;
  try {
    const pub = await conn.createConfirmChannel();
    pub.on('error', () => {});
    await pub.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': queueType } });
    const con = await conn.createChannel();
    con.on('error', () => {});
    await con.prefetch(512);
    const body = randomBytes(bytes);
    let seen = 0;
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    await con.consume(queue, (m) => {
      if (!m) return;
      con.ack(m);
      if (++seen === n) done();
    });
    const t0 = performance.now();
    // Confirms pipelined: up to three windows of 1,000 outstanding, never one await per message.
    const window = 1000;
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < n; i += window) {
      const confirms: Promise<void>[] = [];
      for (let j = i; j < Math.min(n, i + window); j++) {
        confirms.push(
          new Promise<void>((resolve, reject) => {
            pub.sendToQueue(queue, body, { persistent: true, messageId: String(j) }, (err) => (err ? reject(err) : resolve()));
          }),
        );
      }
      pending.push(Promise.all(confirms));
      if (pending.length >= 3) await pending.shift();
    }
    await Promise.all(pending);
    await all;
    const seconds = (performance.now() - t0) / 1000;
    await con.close().catch(() => {});
    await pub.deleteQueue(queue).catch(() => {});
    await pub.close().catch(() => {});
    return { messages: n, bytes, msgsPerSec: n / seconds };
  } finally {
    await conn.close().catch(() => {});
  }
}

export async function kafkaBaseline(brokers: readonly string[], n: number, bytes: number, partitions: number): Promise<BaselineResult> {
  const kafka = new Kafka({ clientId: 'sagaflow-bench-baseline', brokers: [...brokers], logLevel: logLevel.NOTHING });
  const topic = `bench.baseline.${randomBytes(4).toString('hex')}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  const consumer = kafka.consumer({ groupId: `${topic}.group` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
      for (const m of batch.messages) resolveOffset(m.offset);
      const last = batch.messages.at(-1);
      if (last) await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(Number(last.offset) + 1) }]);
      await commitOffsetsIfNecessary();
      seen += batch.messages.length;
      if (seen >= n) done();
    },
  });
  const body = randomBytes(bytes);
  const t0 = performance.now();
  const chunk = 500;
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < n; i += chunk) {
    const messages = Array.from({ length: Math.min(chunk, n - i) }, (_, k) => ({ key: String((i + k) % 997), value: body }));
    inFlight.push(producer.send({ topic, acks: -1, messages }));
    if (inFlight.length >= 8) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await all;
  const seconds = (performance.now() - t0) / 1000;
  await consumer.disconnect();
  await producer.disconnect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => {});
  await admin.disconnect();
  return { messages: n, bytes, msgsPerSec: n / seconds };
}
