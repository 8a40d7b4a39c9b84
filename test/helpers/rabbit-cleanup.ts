import { connect } from 'amqplib';

/** Queues and exchanges a test declared on the shared broker, to delete when the file is done. */
export interface DeclaredNames {
  readonly queues: Set<string>;
  readonly exchanges: Set<string>;
}

/** Deletes them, one channel each (a failed delete closes its channel), ignoring what is already gone. */
export async function deleteDeclared(url: string, declared: DeclaredNames): Promise<void> {
  const conn = await connect(url);
  conn.on('error', () => {});
  for (const [kind, list] of [['queue', declared.queues], ['exchange', declared.exchanges]] as const) {
    for (const name of list) {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await (kind === 'queue' ? ch.deleteQueue(name) : ch.deleteExchange(name)).catch(() => {});
      await ch.close().catch(() => {});
    }
  }
  await conn.close().catch(() => {});
}
