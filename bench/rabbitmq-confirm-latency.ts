/**
 * Latency of one durable message on RabbitMQ, quorum queue against classic queue: a persistent
 * message published alone on a confirm channel, timed to its confirm and to its delivery to a
 * consumer (prefetch 1, acked at once). The two queue types take turns message by message, so a
 * busy machine slows both alike and the comparison holds even when the absolute figures do not.
 *
 *   npx tsx bench/rabbitmq-confirm-latency.ts [messages per type=300] [amqpUrl]
 *
 * Prints figures only; it never fails on a timing. Its queues are deleted at the end.
 */
import { randomBytes } from 'node:crypto';
import { connect, type ConsumeMessage } from 'amqplib';

const count = Number(process.argv[2] ?? 300);
const url = process.argv[3] ?? process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const body = Buffer.alloc(400, 'x');
const TYPES = ['quorum', 'classic'] as const;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const conn = await connect(url);
  const pub = await conn.createConfirmChannel();
  const sub = await conn.createChannel();
  await sub.prefetch(1);
  const id = randomBytes(4).toString('hex');
  const waiting = new Map<string, (t: number) => void>();
  const queues = new Map<string, string>();
  for (const type of TYPES) {
    const q = `latency-probe-${id}-${type}`;
    queues.set(type, q);
    await pub.assertQueue(q, { durable: true, arguments: { 'x-queue-type': type } });
    await sub.consume(q, (m: ConsumeMessage | null) => {
      if (!m) return;
      sub.ack(m);
      waiting.get(m.properties.messageId as string)?.(performance.now());
    });
  }
  const confirm: Record<string, number[]> = { quorum: [], classic: [] };
  const deliver: Record<string, number[]> = { quorum: [], classic: [] };
  try {
    for (let i = 0; i < count * TYPES.length; i++) {
      const type = TYPES[i % TYPES.length]!;
      const messageId = `${type}-${i}`;
      const delivered = new Promise<number>((resolve) => waiting.set(messageId, resolve));
      const t0 = performance.now();
      const confirmed = new Promise<number>((resolve, reject) =>
        pub.sendToQueue(queues.get(type)!, body, { persistent: true, messageId }, (err) => (err ? reject(err as Error) : resolve(performance.now()))),
      );
      const [tc, td] = await Promise.all([confirmed, delivered]);
      waiting.delete(messageId);
      confirm[type]!.push(tc - t0);
      deliver[type]!.push(td - t0);
    }
  } finally {
    for (const q of queues.values()) await pub.deleteQueue(q).catch(() => undefined);
    await conn.close();
  }
  process.stdout.write(`${'queue type'.padEnd(12)} ${'confirm p50'.padStart(12)} ${'p99'.padStart(8)} ${'delivery p50'.padStart(13)} ${'p99'.padStart(8)}   (ms, ${count} messages each, one at a time)\n`);
  for (const type of TYPES) {
    const c = confirm[type]!.sort((a, b) => a - b);
    const d = deliver[type]!.sort((a, b) => a - b);
    process.stdout.write(`${type.padEnd(12)} ${pct(c, 50).toFixed(2).padStart(12)} ${pct(c, 99).toFixed(2).padStart(8)} ${pct(d, 50).toFixed(2).padStart(13)} ${pct(d, 99).toFixed(2).padStart(8)}\n`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
