/**
 * One member of a Kafka consumer group in a process of its own, so a test can kill it with
 * SIGKILL (no LeaveGroup, no commit: a crash). Run as `node --import tsx test/helpers/kafka-member.ts`
 * with MEMBER_BROKERS, MEMBER_NAMESPACE, MEMBER_TOPIC, MEMBER_CONSUMER and MEMBER_PARTITIONS set.
 * The consumer-group timing is the transport's default unless SAGAFLOW_KAFKA_* variables say
 * otherwise (read through loadConfig, as the worker does).
 *
 * stdout: `{"ready":true}` once subscribed, then a `{"handled":[[id, key, at]]}` line per handled
 * record (`at`: when the handler ran, ms since the epoch). SIGTERM closes the transport (graceful:
 * the group is left) and exits 0.
 */
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { createKafkaTransport } from '../../src/transport/kafka/transport.js';

const env = process.env;
const need = (name: string): string => {
  const v = env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const transport = await createKafkaTransport({
  brokers: need('MEMBER_BROKERS').split(','),
  namespace: need('MEMBER_NAMESPACE'),
  partitions: Number(need('MEMBER_PARTITIONS')),
  clientId: 'kafka-member',
  logger: silentLogger(),
  ...loadConfig(env).kafkaGroup,
});
await transport.subscriber.subscribe([need('MEMBER_TOPIC')], need('MEMBER_CONSUMER'), async (d) => {
  // Written before the handler resolves, i.e. before its offset can be committed: a record this
  // process handled is always reported, even if it is killed right after (stdout to a pipe is
  // synchronous on Linux, and what is in the pipe outlives the writer).
  process.stdout.write(`${JSON.stringify({ handled: [[d.id ?? '?', d.key ?? '', Date.now()]] })}\n`);
});
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.once('SIGTERM', () => {
  void transport.close().finally(() => process.exit(0));
});
