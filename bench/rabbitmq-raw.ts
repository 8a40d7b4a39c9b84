/**
 * Quick RabbitMQ throughput figure: N persistent 200-byte messages on one topic, published with
 * confirms (many in flight) and consumed with prefetch 512 and ack-after-handler, measured end to
 * end (first publish -> last handled). Two rows per queue type:
 * - raw:       plain amqplib (confirm channel, one consumer), the broker's baseline on this machine;
 * - transport: the same traffic through createRabbitMqTransport (publish() in batches of 500).
 *
 *   npx tsx bench/rabbitmq-raw.ts [count=20000] [amqpUrl]
 *
 * Prints figures only; it never fails on a timing. Everything it declares is deleted at the end.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'amqplib';
import { silentLogger } from '../src/log.js';
import { createRabbitMqTransport } from '../src/transport/rabbitmq/transport.js';
import type { OutgoingMessage } from '../src/transport/contract.js';

const count = Number(process.argv[2] ?? 20_000);
const url = process.argv[3] ?? process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const body = Buffer.alloc(200, 'x');
const PREFETCH = 512;
const BATCH = 500;

interface Row {
  name: string;
  publishPerSec: number;
  endToEndPerSec: number;
  /** CPU seconds of this (client) process per 1,000 messages, publish and consume together. */
  cpuPer1000: number;
}

function cpuSince(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return ((u.user + u.system) / 1e6 / count) * 1000;
}

async function raw(queueType: 'classic' | 'quorum'): Promise<Row> {
  const conn = await connect(`${url}?heartbeat=10`, { noDelay: true });
  conn.on('error', () => {});
  const q = `bench-raw-${randomBytes(3).toString('hex')}`;
  const pub = await conn.createConfirmChannel();
  await pub.assertQueue(q, { durable: true, arguments: { 'x-queue-type': queueType } });
  const con = await conn.createChannel();
  await con.prefetch(PREFETCH);
  let handled = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  await con.consume(q, (m) => {
    if (!m) return;
    con.ack(m);
    if (++handled === count) done();
  });
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  let confirmedAt = 0;
  // Confirms pipelined: a window of BATCH messages, then waitForConfirms for that window.
  for (let i = 0; i < count; i += BATCH) {
    for (let j = i; j < Math.min(count, i + BATCH); j++) {
      if (!pub.sendToQueue(q, body, { persistent: true, messageId: `m${j}` })) await new Promise((r) => pub.once('drain', r));
    }
    await pub.waitForConfirms();
  }
  confirmedAt = performance.now();
  await all;
  const t1 = performance.now();
  const cpuPer1000 = cpuSince(cpu);
  await pub.deleteQueue(q);
  await conn.close();
  return { name: `raw amqplib, ${queueType}`, publishPerSec: count / ((confirmedAt - t0) / 1000), endToEndPerSec: count / ((t1 - t0) / 1000), cpuPer1000 };
}

async function transport(queueType: 'classic' | 'quorum'): Promise<Row> {
  const namespace = `bench-${randomBytes(3).toString('hex')}`;
  const t = await createRabbitMqTransport({ url, namespace, queueType, prefetch: PREFETCH, logger: silentLogger() });
  await t.declare({ topics: [{ name: 'bench' }], consumers: [{ consumer: 'bench', topics: ['bench'] }] });
  let handled = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const sub = await t.subscriber.subscribe(['bench'], 'bench', async () => {
    if (++handled === count) done();
  });
  const messages: OutgoingMessage[] = Array.from({ length: count }, (_, i) => ({ topic: 'bench', id: `m${i}`, key: `k${i % 100}`, type: 'bench.Msg', body }));
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  // A few publish() calls in flight, as the outbox dispatcher and relay produce them.
  const inflight = new Set<Promise<void>>();
  for (let i = 0; i < count; i += BATCH) {
    const p = t.publisher.publish(messages.slice(i, i + BATCH)).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 4) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const confirmedAt = performance.now();
  await all;
  const t1 = performance.now();
  const cpuPer1000 = cpuSince(cpu);
  await sub.close();
  const names = t.declaredNames();
  await t.close();
  const conn = await connect(url);
  const ch = await conn.createChannel();
  for (const q of names.queues) await ch.deleteQueue(q);
  for (const x of names.exchanges) await ch.deleteExchange(x);
  await conn.close();
  return { name: `transport, ${queueType}`, publishPerSec: count / ((confirmedAt - t0) / 1000), endToEndPerSec: count / ((t1 - t0) / 1000), cpuPer1000 };
}

const rows: Row[] = [];
for (const qt of ['classic', 'quorum'] as const) {
  rows.push(await raw(qt));
  rows.push(await transport(qt));
}
console.log(`${count} x 200-byte persistent messages, one topic/queue, prefetch ${PREFETCH}, confirms in flight`);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(26)} publish+confirm ${Math.round(r.publishPerSec).toString().padStart(6)} msg/s   ` +
      `end to end ${Math.round(r.endToEndPerSec).toString().padStart(6)} msg/s   client CPU ${r.cpuPer1000.toFixed(3)} s/1000 msgs`,
  );
}
