import { randomBytes } from 'node:crypto';
import { connect } from 'amqplib';
import { inject } from 'vitest';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { createRabbitMqTransport } from '../../src/transport/rabbitmq/transport.js';
import { transportContract } from './transport.contract.js';

const url = inject('services').amqpUrl;
// One namespace per test (the file's random part + a counter): tests never see each other's queues,
// and a crashed run leaves only objects under this file's prefix.
const fileNs = `sfct-${randomBytes(3).toString('hex')}`;
let n = 0;

function logger(): Logger {
  const level = process.env.TEST_LOG_LEVEL;
  return level ? createLogger({ level, name: 'rabbitmq-contract' }) : silentLogger();
}

/** Deletes what a transport declared (exchanges, consumer, retry and dead-letter queues). */
async function deleteDeclared(names: { exchanges: string[]; queues: string[] }): Promise<void> {
  const conn = await connect(url);
  conn.on('error', () => {});
  try {
    for (const q of names.queues) {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await ch.deleteQueue(q).catch(() => {});
      await ch.close().catch(() => {});
    }
    for (const x of names.exchanges) {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await ch.deleteExchange(x).catch(() => {});
      await ch.close().catch(() => {});
    }
  } finally {
    await conn.close().catch(() => {});
  }
}

for (const queueType of ['quorum', 'classic'] as const) {
  transportContract(`rabbitmq (${queueType} queues)`, async () => {
    const namespace = `${fileNs}-${queueType[0]}${++n}`;
    const transport = await createRabbitMqTransport({ url, namespace, queueType, logger: logger(), confirmTimeoutMs: 10_000 });
    return {
      transport,
      namespace,
      cleanup: async () => {
        const names = transport.declaredNames();
        await transport.close();
        await deleteDeclared(names);
      },
    };
  });
}
