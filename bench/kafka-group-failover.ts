/**
 * `npx tsx bench/kafka-group-failover.ts --client kafkajs|platformatic [--protocol classic|consumer]
 *   [--static] [--session-ms 30000] [--heartbeat-ms 3000] [--rebalance-ms 60000]
 *   [--restart-after-ms=1000] [--broker-prop key=value ...]`   (--restart-after-ms=-1: never)
 *
 * A bare consumer group (no sagaflow) and a kill -9: how long does a group stall, per client and
 * membership protocol? Two consumer PROCESSES (this file with --child) share one group on a
 * 6-partition topic; the parent produces one record per partition every 100 ms, kills one member
 * with SIGKILL after the warm-up, restarts it (same member name, i.e. the same group.instance.id
 * with --static) and prints:
 *
 * - for the dead member's partitions: time from the kill until a record of each was handled again
 *   (by the survivor or the restarted member);
 * - for the survivor's partitions: the longest gap between two handled records after the kill
 *   (~100 ms when it never paused; an eager rebalance shows as the whole stop);
 * - whether the survivor still holds the partitions it held before.
 *
 * Clients: kafkajs (the one sagaflow uses) and @platformatic/kafka, which sagaflow does not depend
 * on: install it for this comparison only (`npm install --no-save @platformatic/kafka@1.35.0`, the
 * newest release that supports Node 20). `--protocol consumer` is the broker-side protocol of
 * KIP-848 (platformatic only); its session timeout is a broker setting
 * (group.consumer.session.timeout.ms, 45 s by default), which --broker-prop can lower on the
 * broker this script starts. It measures; it never fails on a timing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';

const { values: a } = parseArgs({
  options: {
    client: { type: 'string', default: 'kafkajs' },
    protocol: { type: 'string', default: 'classic' },
    static: { type: 'boolean', default: false },
    'session-ms': { type: 'string', default: '30000' },
    'heartbeat-ms': { type: 'string', default: '3000' },
    'rebalance-ms': { type: 'string', default: '60000' },
    'restart-after-ms': { type: 'string', default: '1000' },
    'warmup-s': { type: 'string', default: '10' },
    'after-s': { type: 'string', default: '50' },
    'broker-prop': { type: 'string', multiple: true, default: [] },
    // child mode
    child: { type: 'boolean', default: false },
    member: { type: 'string', default: '' },
    brokers: { type: 'string', default: '' },
    topic: { type: 'string', default: '' },
    group: { type: 'string', default: '' },
  },
  strict: true,
});
const client = a.client as 'kafkajs' | 'platformatic';
if (client !== 'kafkajs' && client !== 'platformatic') throw new Error('--client must be kafkajs or platformatic');
if (a.protocol !== 'classic' && a.protocol !== 'consumer') throw new Error('--protocol must be classic or consumer');
if (a.protocol === 'consumer' && client !== 'platformatic') throw new Error('kafkajs 2.2.4 has no KIP-848 (ConsumerGroupHeartbeat) support');
if (a.static && client !== 'platformatic') throw new Error('kafkajs 2.2.4 cannot send a group.instance.id (see the report)');
const sessionMs = Number(a['session-ms']);
const heartbeatMs = Number(a['heartbeat-ms']);
const rebalanceMs = Number(a['rebalance-ms']);
const PARTITIONS = 6;

/** What this script uses of @platformatic/kafka 1.35 (it is loaded only when asked for). */
interface PkMessage {
  partition: number;
  offset: bigint;
  value: Buffer;
}
interface PkStream {
  on(event: 'data', l: (m: PkMessage) => void): void;
  on(event: 'error', l: (e: Error) => void): void;
}
interface PkConsumer {
  consume(o: Record<string, unknown>): Promise<PkStream>;
  close(force?: boolean): Promise<void>;
  on(event: string, l: (payload: unknown) => void): void;
}

const out = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** The broker's error codes inside @platformatic/kafka's nested errors. */
function describe(err: unknown): string {
  const e = err as { message?: string; errors?: unknown[]; apiId?: string; response?: unknown };
  const inner = (e.errors ?? []).map(describe).join('; ');
  return `${e.apiId ?? ''} ${e.message ?? String(err)}${e.response ? ` ${JSON.stringify(e.response, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).slice(0, 300)}` : ''}${inner ? ` [${inner}]` : ''}`;
}

async function child(): Promise<void> {
  const { member, brokers, topic, group } = a;
  // Records are reported in small batches: one line per record would cost more than the consumer.
  let pending: [number, string, number, number][] = [];
  const flush = setInterval(() => {
    if (pending.length === 0) return;
    out({ t: 'recs', r: pending });
    pending = [];
  }, 20);
  const seen = (partition: number, offset: string, value: Buffer) => {
    pending.push([partition, offset, Number(value.toString()), Date.now()]);
  };
  let close: () => Promise<void>;
  if (client === 'kafkajs') {
    const kafka = new Kafka({ clientId: member, brokers: brokers.split(','), logLevel: logLevel.NOTHING });
    const consumer = kafka.consumer({
      groupId: group,
      sessionTimeout: sessionMs,
      heartbeatInterval: heartbeatMs,
      rebalanceTimeout: rebalanceMs,
      maxWaitTimeInMs: 500,
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => out({ t: 'join', assignment: e.payload.memberAssignment }));
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: false });
    await consumer.run({ eachMessage: async ({ partition, message }) => seen(partition, message.offset, message.value!) });
    close = () => consumer.disconnect();
  } else {
    const spec = '@platformatic/kafka';
    const pk = (await import(spec)) as { Consumer: new (o: Record<string, unknown>) => PkConsumer };
    const consumer = new pk.Consumer({
      clientId: member,
      bootstrapBrokers: brokers.split(','),
      groupId: group,
      ...(a.protocol === 'consumer'
        ? { groupProtocol: 'consumer' }
        : { groupProtocol: 'classic', sessionTimeout: sessionMs, heartbeatInterval: heartbeatMs, rebalanceTimeout: rebalanceMs }),
      ...(a.static ? { groupInstanceId: member } : {}),
      autocommit: 100,
      maxWaitTime: 500,
    });
    consumer.on('consumer:group:join', (p) => out({ t: 'join', assignment: (p as { assignments?: unknown }).assignments ?? null }));
    const stream = await consumer.consume({ topics: [topic], mode: 'committed', fallbackMode: 'latest' }).catch((err: unknown) => {
      throw new Error(`consume() failed: ${describe(err)}`);
    });
    stream.on('data', (m) => seen(m.partition, m.offset.toString(), m.value));
    stream.on('error', (e) => out({ t: 'error', message: e.message }));
    close = () => consumer.close(true);
  }
  out({ t: 'running' });
  const stop = async () => {
    clearInterval(flush);
    await close().catch(() => {});
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
}

interface Handled {
  partition: number;
  offset: string;
  sent: number;
  at: number;
  member: string;
}

class Member {
  proc: ChildProcess | undefined;
  constructor(
    readonly name: string,
    readonly args: string[],
    readonly handled: Handled[],
  ) {}

  start(): Promise<void> {
    const proc = spawn(process.execPath, [...process.execArgv, new URL(import.meta.url).pathname, '--child', '--member', this.name, ...this.args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.proc = proc;
    let buf = '';
    return new Promise((resolve, reject) => {
      proc.once('exit', (code) => reject(new Error(`${this.name} exited with ${code}`)));
      proc.stdout!.on('data', (c: Buffer) => {
        const lines = (buf + c.toString()).split('\n');
        buf = lines.pop()!;
        for (const line of lines) {
          const m = JSON.parse(line) as { t: string; r?: [number, string, number, number][] };
          if (m.t === 'running') resolve();
          for (const [partition, offset, sent, at] of m.r ?? []) this.handled.push({ partition, offset, sent, at, member: this.name });
        }
      });
    });
  }

  async kill(): Promise<void> {
    const p = this.proc!;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

/** Which member handled each partition last in [from, to). */
function owners(handled: readonly Handled[], from: number, to: number): Map<number, string> {
  const o = new Map<number, string>();
  for (const h of handled) if (h.at >= from && h.at < to) o.set(h.partition, h.member);
  return o;
}

async function parent(): Promise<void> {
  let broker: { brokers: string; stop(): Promise<void> } | undefined;
  let brokers = process.env.KAFKA_BROKERS ?? '';
  if (!brokers) {
    const { startKafkaBroker } = await import('../scripts/kafka/broker.js');
    const overrides = Object.fromEntries(a['broker-prop'].map((kv) => kv.split('=', 2) as [string, string]));
    broker = await startKafkaBroker({ partitions: PARTITIONS, overrides });
    brokers = broker.brokers;
  }
  const id = randomBytes(3).toString('hex');
  const topic = `failover-${id}`;
  const group = `failover-${id}`;
  const kafka = new Kafka({ clientId: 'failover-parent', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const producer = kafka.producer();
  const handled: Handled[] = [];
  const args = ['--client', client, '--protocol', a.protocol!, '--session-ms', String(sessionMs), '--heartbeat-ms', String(heartbeatMs), '--brokers', brokers, '--topic', topic, '--group', group, ...(a.static ? ['--static'] : [])];
  const members = [new Member('m0', args, handled), new Member('m1', args, handled)];
  let producing = true;
  try {
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
    await producer.connect();
    const produced = (async () => {
      while (producing) {
        const sent = Date.now();
        await producer.send({ topic, messages: Array.from({ length: PARTITIONS }, (_, partition) => ({ partition, value: String(sent) })) });
        await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - sent))));
      }
    })();
    await members[0]!.start();
    await members[1]!.start();
    // Warm-up: both members hold partitions and every partition flows.
    const warmStart = Date.now();
    for (;;) {
      const now = Date.now();
      const o = owners(handled, now - 1000, now);
      if (o.size === PARTITIONS && new Set(o.values()).size === 2 && now - warmStart > Number(a['warmup-s']) * 1000) break;
      if (now - warmStart > 120_000) throw new Error(`the group did not settle within 120 s: ${JSON.stringify([...o])}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const killAt = Date.now();
    const before = owners(handled, killAt - 2000, killAt);
    await members[0]!.kill();
    const restartAfter = Number(a['restart-after-ms']);
    let restartedAt = 0;
    if (restartAfter >= 0) {
      await new Promise((r) => setTimeout(r, restartAfter));
      await members[0]!.start();
      restartedAt = Date.now();
    }
    await new Promise((r) => setTimeout(r, Math.max(0, killAt + Number(a['after-s']) * 1000 - Date.now())));
    producing = false;
    await produced;
    const end = Date.now();
    const after = owners(handled, end - 2000, end);

    const dead = [...before].filter(([, m]) => m === 'm0').map(([p]) => p);
    const alive = [...before].filter(([, m]) => m === 'm1').map(([p]) => p);
    const resumed = dead.map((p) => {
      const first = handled.filter((h) => h.partition === p && h.at > killAt).reduce((min, h) => Math.min(min, h.at), Infinity);
      return first - killAt;
    });
    const gaps = alive.map((p) => {
      const ats = handled.filter((h) => h.partition === p && h.at >= killAt - 500 && h.member === 'm1').map((h) => h.at).sort((x, y) => x - y);
      let gap = 0;
      for (let i = 1; i < ats.length; i++) gap = Math.max(gap, ats[i]! - ats[i - 1]!);
      return gap;
    });
    const kept = alive.every((p) => after.get(p) === 'm1');
    const result = {
      client,
      protocol: a.protocol,
      static: a.static,
      sessionMs: a.protocol === 'consumer' ? 'broker' : sessionMs,
      rebalanceMs,
      heartbeatMs: a.protocol === 'consumer' ? 'broker' : heartbeatMs,
      brokerProps: a['broker-prop'],
      restartAfterMs: restartAfter,
      restartedReadyAfterMs: restartedAt ? restartedAt - killAt : null,
      deadPartitions: dead,
      deadPartitionsConsumedAgainMs: Math.max(...resumed),
      survivorLongestGapMs: Math.max(...gaps),
      survivorKeptItsPartitions: kept,
      ownersAfter: Object.fromEntries(after),
    };
    process.stdout.write(
      `${client} ${a.protocol}${a.static ? ' static' : ''} session ${result.sessionMs} heartbeat ${result.heartbeatMs} rebalance ${rebalanceMs}` +
        ` restart ${restartAfter < 0 ? 'never' : `after ${restartAfter} ms`}: ` +
        `dead member's partitions ${JSON.stringify(dead)} consumed again ${(result.deadPartitionsConsumedAgainMs / 1000).toFixed(1)} s after the kill; ` +
        `survivor's longest pause ${(result.survivorLongestGapMs / 1000).toFixed(1)} s; survivor kept its partitions: ${kept ? 'yes' : 'no'}\n${JSON.stringify(result)}\n`,
    );
  } finally {
    producing = false;
    await Promise.allSettled(members.map((m) => m.stop()));
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await Promise.allSettled([admin.disconnect(), producer.disconnect()]);
    await broker?.stop();
  }
}

(a.child ? child() : parent()).catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
