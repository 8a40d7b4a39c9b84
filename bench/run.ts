/**
 * `npm run bench -- --transport rabbitmq|kafka|memory --sagas N [--json]`
 *
 * The reference workload (docs/performance.md): the order saga (reserve stock, charge, ship; every
 * 10th order fails at shipping and is compensated), with the orchestrator and the participants in
 * separate worker processes (memory: one process, it cannot cross processes). Prints a table and,
 * last, one JSON line. It measures; it never fails on a timing.
 *
 * Phases: raw transport baseline (plain amqplib / kafkajs, same message size) -> warm-up ->
 * saturation (N sagas published as fast as possible; completed sagas/s, latency, commits per
 * saga from pg_stat_database, broker messages per saga, worker CPU) -> open-loop fixed arrival
 * rate at ~50% of saturation (latency p50/p99, scheduled-time based, no coordinated omission).
 *
 * `--orchestrators N --participants M` runs N + M worker processes (scaling out; `--waits` samples
 * Postgres lock waits meanwhile). `--steady --rate R` replaces the burst by the long run of
 * bench/steady.ts: N sagas at R/s, figures per `--window` sagas, hot table sizes (docs/performance.md).
 * `--vacuum` vacuums the hot tables every 30 s of the burst (after each prune round with --steady),
 * standing in for autovacuum where the server has it off.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { exampleTables, migrateExample } from '../examples/order/participants.js';
import { makeOrders } from '../examples/order/run.js';
import orderModule from '../examples/order/index.js';
import { PlaceOrder } from '../examples/order/messages.js';
import { createClient } from '../src/client.js';
import { sagaIdFor } from '../src/saga/engine.js';
import { loadConfig, type Config } from '../src/config.js';
import { createDb, type Db } from '../src/db/db.js';
import { migrate } from '../src/db/migrate.js';
import { silentLogger } from '../src/log.js';
import { createTransport } from '../src/transport/create.js';
import { MemoryTransport } from '../src/transport/memory.js';
import type { Transport } from '../src/transport/contract.js';
import { createWorker, workerOptionsFrom, type Worker } from '../src/worker/worker.js';
import { kafkaBaseline, rabbitBaseline, type BaselineResult } from './baseline.js';
import { WaitSampler, type WaitSummary } from './pg-waits.js';
import { benchFleet, type BenchWorker } from './procs.js';
import { formatSteady, steadyRun } from './steady.js';
import { vacuumLoop } from './tables.js';
import { Breakdown, PROBE_VARS, stamped } from './breakdown.js';

const TERMINAL = new Set(['SagaCompleted', 'SagaCompensated', 'SagaFailed']);

const { values: a } = parseArgs({
  options: {
    transport: { type: 'string', default: 'rabbitmq' },
    sagas: { type: 'string', default: '20000' },
    json: { type: 'boolean', default: false },
    rate: { type: 'string' },
    'half-load-seconds': { type: 'string', default: '15' },
    participants: { type: 'string', default: '1' },
    orchestrators: { type: 'string', default: '1' },
    // Sample Postgres wait events and ungranted locks of the workers during saturation (pg-waits.ts).
    waits: { type: 'boolean', default: false },
    // The long run (steady.ts): --sagas N at --rate R for the whole run, reported per --window.
    steady: { type: 'boolean', default: false },
    window: { type: 'string', default: '20000' },
    'prune-seconds': { type: 'string', default: '20' },
    vacuum: { type: 'boolean', default: false },
    batch: { type: 'string', default: '64' },
    prefetch: { type: 'string', default: '512' },
    concurrency: { type: 'string', default: '2' },
    'db-pool': { type: 'string', default: '8' },
    events: { type: 'string', default: 'terminal' },
    partitions: { type: 'string', default: '6' },
    'baseline-messages': { type: 'string', default: '20000' },
    'skip-baseline': { type: 'boolean', default: false },
    'skip-half-load': { type: 'boolean', default: false },
    'queue-type': { type: 'string', default: 'quorum' },
    breakdown: { type: 'boolean', default: false },
    // resilience: at most K commands in flight per participant, replies on a queue of their own (0: neither)
    bulkhead: { type: 'string', default: '0' },
  },
  strict: true,
});

const transportName = a.transport as 'memory' | 'rabbitmq' | 'kafka';
if (!['memory', 'rabbitmq', 'kafka'].includes(transportName)) throw new Error(`--transport must be memory, rabbitmq or kafka`);
const N = Number(a.sagas);
const id = randomBytes(4).toString('hex');
const schema = `bench_${id}`;
const exampleSchema = `bench_${id}_ex`;
const namespace = `bench_${id}.`;
let lastProgress = 0;
/** A progress line at most once a second; rewritten in place on a terminal, appended otherwise. */
const progress = (s: string) => {
  const now = Date.now();
  if (now - lastProgress < (process.stderr.isTTY ? 1000 : 5000)) return;
  lastProgress = now;
  process.stderr.write(process.stderr.isTTY ? `\r\x1b[K[bench ${transportName}] ${s}` : `[bench ${transportName}] ${s}\n`);
};
const note = (s: string) => process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}[bench ${transportName}] ${s}\n`);

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function xactCommits(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()');
  return Number(rows[0]!.n);
}

/** Stats reach pg_stat_database when backends flush them; wait until the counter stops moving. */
async function settledCommits(db: Db): Promise<number> {
  let last = await xactCommits(db);
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await xactCommits(db);
    if (now === last) return now;
    last = now;
  }
  return last;
}

interface Phase {
  sagas: number;
  seconds: number;
  sagasPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

async function main(): Promise<void> {
  let kafkaBroker: { brokers: string; stop(): Promise<void> } | undefined;
  let kafkaBrokers = process.env.KAFKA_BROKERS ?? '';
  if (transportName === 'kafka' && !kafkaBrokers) {
    const { startKafkaBroker } = await import('../scripts/kafka/broker.js');
    note('no KAFKA_BROKERS: starting the project broker');
    kafkaBroker = await startKafkaBroker({ partitions: Number(a.partitions) });
    kafkaBrokers = kafkaBroker.brokers;
  }
  const vars: Record<string, string> = {
    DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    SAGAFLOW_SCHEMA: schema,
    ORDER_EXAMPLE_SCHEMA: exampleSchema,
    SAGAFLOW_TRANSPORT: transportName,
    SAGAFLOW_NAMESPACE: namespace,
    AMQP_URL: process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    KAFKA_BROKERS: kafkaBrokers || '127.0.0.1:9092',
    LOG_LEVEL: 'warn',
    SAGAFLOW_EVENTS: a.events!,
    SAGAFLOW_MAX_BATCH: a.batch!,
    SAGAFLOW_PREFETCH: a.prefetch!,
    SAGAFLOW_CONCURRENT_BATCHES: a.concurrency!,
    SAGAFLOW_DB_POOL: a['db-pool']!,
    SAGAFLOW_KAFKA_PARTITIONS: a.partitions!,
    SAGAFLOW_RABBITMQ_QUEUE_TYPE: a['queue-type']!,
    // Retention windows reach the workers (their inbox pruning) and the long run's prune().
    ...Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('SAGAFLOW_RETAIN_') && e[1] !== undefined)),
    ...(a.breakdown ? PROBE_VARS : {}),
    ...(Number(a.bulkhead) > 0 ? { ORDER_BULKHEAD: a.bulkhead!, SAGAFLOW_REPLY_QUEUE: 'separate' } : {}),
  };
  const config: Config = loadConfig(vars);
  const db = createDb({ connectionString: config.databaseUrl, max: 2, applicationName: 'sagaflow-bench' });
  await migrate(db, schema);
  await migrateExample(db, exampleSchema);

  // The message size of the baseline: a typical saga message (a ReserveStock-sized envelope).
  const sample = createClient({ schema }).build(PlaceOrder, makeOrders(1)[0]!, {});
  const messageBytes = sample.body.length;
  let baseline: BaselineResult | undefined;
  if (!a['skip-baseline'] && transportName !== 'memory') {
    progress('raw transport baseline...');
    baseline =
      transportName === 'rabbitmq'
        ? await rabbitBaseline(config.amqpUrl, Number(a['baseline-messages']), messageBytes, config.rabbitQueueType)
        : await kafkaBaseline(config.kafkaBrokers, Number(a['baseline-messages']), messageBytes, config.kafkaPartitions);
    note(`baseline: ${Math.round(baseline.msgsPerSec)} msgs/s (${messageBytes}-byte messages, publish with confirms + consume/ack)`);
  }

  // The bench's own client of the broker: publishes orders, listens to terminal events.
  const memory = transportName === 'memory' ? new MemoryTransport() : undefined;
  const transport: Transport = memory ?? (await createTransport(config, silentLogger(), { clientId: 'sagaflow-bench' }));
  const mod = orderModule({ env: vars });
  const sent = new Map<string, number>();
  const latencies: number[] = [];
  let terminal = 0;
  let onTerminal: ((latencyMs: number) => void) | undefined;
  await transport.declare({ topics: [{ name: config.eventsTopic, requireRoute: false }], consumers: [{ consumer: 'bench.events', topics: [config.eventsTopic] }] });
  await transport.subscriber.subscribe([config.eventsTopic], 'bench.events', async (d) => {
    if (!TERMINAL.has(d.type ?? '')) return;
    const sagaId = d.key!;
    const t0 = sent.get(sagaId);
    if (t0 === undefined) return;
    sent.delete(sagaId);
    latencies.push(performance.now() - t0);
    terminal++;
    onTerminal?.(performance.now() - t0);
  }, { prefetch: 1000 });

  const workers: BenchWorker[] = [];
  const breakdown = a.breakdown && !memory ? new Breakdown({ transport: transportName, db, schema, workers: () => workers }) : undefined;
  let inProcess: { worker: Worker; db: Db } | undefined;
  async function startWorkers(): Promise<void> {
    if (memory) {
      const wdb = createDb({ connectionString: config.databaseUrl, max: config.dbPool, applicationName: 'sagaflow-bench-worker' });
      const worker = createWorker({
        db: wdb,
        transport: memory,
        module: mod,
        options: workerOptionsFrom(config),
      });
      await worker.start();
      inProcess = { worker, db: wdb };
      return;
    }
    workers.length = 0;
    workers.push(...benchFleet(vars, { orchestrators: Number(a.orchestrators), participants: Number(a.participants) }));
    await Promise.all(workers.map((w) => w.start()));
  }
  async function stopWorkers(): Promise<{ published: number }> {
    if (inProcess) {
      const s = inProcess.worker.stats();
      await inProcess.worker.stop();
      await inProcess.db.close();
      inProcess = undefined;
      return { published: s.published + s.relayed };
    }
    await Promise.all(workers.map((w) => w.stop()));
    return { published: workers.reduce((n, w) => n + (w.stats?.published ?? 0) + (w.stats?.relayed ?? 0), 0) };
  }
  const processes = (): string => (memory ? 'one process (memory transport)' : `orchestrator x${a.orchestrators}, participants x${a.participants}`);
  const cpu = (): number => (memory ? (process.cpuUsage().user + process.cpuUsage().system) / 1e6 : workers.reduce((s, w) => s + w.cpuSeconds(), 0));

  // Postgres CPU of the workers' backends: the backends whose current or last statement names the
  // bench's schema, found while the phase runs, their CPU read from /proc at first sight and at the end.
  const backends = new Map<number, number>();
  const procCpu = (pid: number): number => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return NaN;
    }
  };
  async function spotBackends(): Promise<void> {
    const { rows } = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND position($1 in query) > 0`, [`"${schema}"`]);
    for (const { pid } of rows) if (!backends.has(pid)) backends.set(pid, procCpu(pid));
  }
  const backendCpu = (): number => [...backends].reduce((sum, [pid, first]) => sum + (procCpu(pid) - first || 0), 0);

  async function awaitTerminal(target: number, label: string, started: number): Promise<number> {
    const deadline = Date.now() + 120_000 + target * 20;
    let lastTerminal = performance.now();
    let lastCount = -1;
    while (terminal < target) {
      if (terminal !== lastCount) {
        lastCount = terminal;
        lastTerminal = performance.now();
      }
      progress(`${label}: ${terminal}/${target} sagas ended (${((performance.now() - started) / 1000).toFixed(1)} s)`);
      if (label === 'saturation') await spotBackends().catch(() => undefined);
      if (Date.now() > deadline) throw new Error(`${label}: only ${terminal}/${target} sagas ended before the deadline`);
      await new Promise((r) => setTimeout(r, 200));
    }
    void lastTerminal;
    return performance.now();
  }

  async function saturate(n: number, label: string, runId: string): Promise<Phase> {
    terminal = 0;
    latencies.length = 0;
    const orders = makeOrders(n, { runId });
    const started = performance.now();
    const client = createClient({ schema, publisher: transport.publisher });
    const chunk = 500;
    for (let i = 0; i < n; i += chunk) {
      const now = performance.now();
      const msgs = orders.slice(i, i + chunk).map((o) => startMessage(client, o));
      for (const m of msgs) sent.set(m.key, now);
      await transport.publisher.publish(msgs);
    }
    const ended = await awaitTerminal(n, label, started);
    const seconds = (ended - started) / 1000;
    const sorted = [...latencies].sort((x, y) => x - y);
    return { sagas: n, seconds, sagasPerSec: n / seconds, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
  }

  async function openLoop(rate: number, seconds: number, runId: string): Promise<Phase> {
    terminal = 0;
    latencies.length = 0;
    const n = Math.max(1, Math.round(rate * seconds));
    const orders = makeOrders(n, { runId });
    const client = createClient({ schema, publisher: transport.publisher });
    const started = performance.now();
    let next = 0;
    const publishes: Promise<void>[] = [];
    while (next < n) {
      const due = Math.min(n, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      if (due > next) {
        const msgs = orders.slice(next, due).map((o, k) => {
          const m = startMessage(client, o);
          // Latency counts from the scheduled arrival, so a slow publish cannot hide queueing.
          sent.set(m.key, started + ((next + k) / rate) * 1000);
          return m;
        });
        next = due;
        publishes.push(transport.publisher.publish(msgs));
      }
      progress(`half load (${Math.round(rate)}/s): ${next}/${n} published, ${terminal} ended`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(publishes);
    const ended = await awaitTerminal(n, `half load (${Math.round(rate)}/s)`, started);
    const sorted = [...latencies].sort((x, y) => x - y);
    return { sagas: n, seconds: (ended - started) / 1000, sagasPerSec: n / ((ended - started) / 1000), p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
  }

  try {
    await startWorkers();
    progress('warm-up...');
    await saturate(Math.min(500, N), 'warm-up', `${id}-w`);
    if (a.steady) {
      if (!a.rate) throw new Error('--steady needs --rate (sagas started per second, just under saturation)');
      const client = createClient({ schema, publisher: transport.publisher });
      const orders = makeOrders(N, { runId: `${id}-l` });
      const r = await steadyRun(
        { db, schema, transport, sent, cpu, progress, message: (i) => startMessage(client, orders[i]!), onTerminal: (l) => (onTerminal = l) },
        { n: N, rate: Number(a.rate), window: Number(a.window), pruneSeconds: Number(a['prune-seconds']), retention: config.retention, vacuum: a.vacuum! },
      );
      if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
      if (!a.json) process.stdout.write(formatSteady(r));
      process.stdout.write(`${JSON.stringify({ transport: transportName, processes: processes(), steady: r })}\n`);
      return;
    }
    // pg_stat_database counts every commit in this database, ours and the workers'; the delta over
    // the saturation phase, read after the workers exited (which flushes their stats), is per saga.
    await stopWorkers();
    const commits0 = await settledCommits(db);
    await startWorkers();
    await breakdown?.begin();
    const cpu0 = cpu();
    const sampler = a.waits ? new WaitSampler(db, schema) : undefined;
    sampler?.start();
    // --vacuum: the autovacuum a production server runs, for a server that has it off (a long burst
    // otherwise measures the dead rows piling up, not the worker).
    const vacuum = a.vacuum ? vacuumLoop(db, schema, 30_000) : undefined;
    const sat = await saturate(N, 'saturation', `${id}-s`);
    const vacuumed = await vacuum?.stop();
    if (vacuumed) note(`--vacuum: the hot tables were vacuumed ${vacuumed.rounds} times during saturation (every 30 s)${vacuumed.failed.length > 0 ? `; failed: ${vacuumed.failed.join('; ')}` : ''}`);
    const cpuUsed = cpu() - cpu0;
    const pgCpuUsed = backendCpu();
    const waits: WaitSummary | undefined = await sampler?.stop();
    await breakdown?.end();
    const { published } = await stopWorkers();
    const duplicates = workers.reduce((n, w) => n + (w.stats?.duplicates ?? 0), 0);
    breakdown?.report('saturation', N);
    const commits = (await settledCommits(db)) - commits0;
    note(`saturation: ${N} sagas in ${sat.seconds.toFixed(1)} s = ${Math.round(sat.sagasPerSec)} sagas/s`);
    if (waits) note(`Postgres waits during saturation: ${JSON.stringify(waits)}`);
    let half: Phase | undefined;
    if (!a['skip-half-load']) {
      await startWorkers();
      const rate = a.rate ? Number(a.rate) : sat.sagasPerSec / 2;
      await breakdown?.begin();
      half = await openLoop(rate, Number(a['half-load-seconds']), `${id}-h`);
      await breakdown?.end();
      await stopWorkers();
      breakdown?.report(`open loop at ${Math.round(rate)}/s`, half.sagas);
      note(`half load: ${half.sagas} sagas at ${Math.round(rate)}/s, p50 ${half.p50Ms.toFixed(1)} ms, p99 ${half.p99Ms.toFixed(1)} ms`);
    }
    const t = exampleTables(exampleSchema);
    const twice = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (SELECT 1 FROM ${t.effects} GROUP BY order_id, kind HAVING count(*) > 1) x`);
    const timedOut = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".saga_steps WHERE status = 'timed_out'`);
    const messagesPerSaga = (published + N) / N; // worker publishes + the PlaceOrder the bench sent
    const result = {
      transport: transportName,
      sagas: N,
      sagasPerSec: Math.round(sat.sagasPerSec),
      p50Ms: round(sat.p50Ms),
      p99Ms: round(sat.p99Ms),
      p50MsAtHalfLoad: half ? round(half.p50Ms) : null,
      p99MsAtHalfLoad: half ? round(half.p99Ms) : null,
      halfLoadRate: half ? Math.round(half.sagas / Number(a['half-load-seconds'])) : null,
      commitsPerSaga: round(commits / N, 2),
      messagesPerSaga: round(messagesPerSaga, 2),
      cpuSecPer1000: round((cpuUsed / N) * 1000, 2),
      postgresCpuSecPer1000: round((pgCpuUsed / N) * 1000, 2),
      baselineMsgsPerSec: baseline ? Math.round(baseline.msgsPerSec) : null,
      fractionOfBaseline: baseline ? round((sat.sagasPerSec * messagesPerSaga) / baseline.msgsPerSec, 3) : null,
      messageBytes,
      effectsAppliedTwice: twice.rows[0]!.n,
      stepTimeoutsFired: timedOut.rows[0]!.n,
      bulkhead: Number(a.bulkhead) || null,
      processes: processes(),
      inboxDuplicates: memory ? null : duplicates,
      ...(waits ? { waits } : {}),
      settings: { batch: Number(a.batch), prefetch: Number(a.prefetch), concurrency: Number(a.concurrency), dbPool: Number(a['db-pool']), events: a.events },
    };
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    if (!a.json) {
      const rows: [string, unknown][] = [
        ['transport', result.transport],
        ['processes', result.processes],
        ['sagas (saturation)', N],
        ['completed sagas/s', result.sagasPerSec],
        ['latency p50 / p99 at saturation (ms)', `${result.p50Ms} / ${result.p99Ms}`],
        ['latency p50 / p99 at ~50% load (ms)', half ? `${result.p50MsAtHalfLoad} / ${result.p99MsAtHalfLoad} (${result.halfLoadRate}/s)` : 'skipped'],
        ['Postgres commits per saga', result.commitsPerSaga],
        ['broker messages per saga', result.messagesPerSaga],
        ['worker CPU s per 1,000 sagas', result.cpuSecPer1000],
        ['Postgres CPU s per 1,000 sagas (workers\' backends)', result.postgresCpuSecPer1000],
        ['raw transport baseline (msgs/s)', result.baselineMsgsPerSec ?? 'n/a'],
        ['fraction of baseline', result.fractionOfBaseline ?? 'n/a'],
        ['effects applied twice', result.effectsAppliedTwice],
        ['step timeouts fired', result.stepTimeoutsFired],
        ['inbox duplicates (saturation)', result.inboxDuplicates ?? 'n/a'],
      ];
      for (const [k, v] of rows) process.stdout.write(`${k.padEnd(40)} ${String(v)}\n`);
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await stopWorkers().catch(() => undefined);
    await transport.close().catch(() => undefined);
    await cleanupBroker(config, transportName).catch((err: unknown) => note(`cleanup: ${(err as Error).message}`));
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await db.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`).catch(() => undefined);
    await db.close();
    await kafkaBroker?.stop();
  }
}

/** A PlaceOrder whose key is its saga id (what the terminal event carries). */
function startMessage(client: ReturnType<typeof createClient>, o: ReturnType<typeof makeOrders>[number]) {
  const messageId = randomUUID();
  const m = client.build(PlaceOrder, o, { messageId, sagaId: sagaIdFor(messageId), correlationId: o.orderId });
  return a.breakdown ? stamped(m) : m;
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Deletes the bench's namespace from the broker. */
async function cleanupBroker(config: Config, kind: string): Promise<void> {
  if (kind === 'rabbitmq') {
    const { execFileSync } = await import('node:child_process');
    const amqp = await import('amqplib');
    const list = (what: string) =>
      (JSON.parse(execFileSync('rabbitmqctl', [what, 'name', '--formatter', 'json', '-q'], { encoding: 'utf8' })) as { name: string }[])
        .map((x) => x.name)
        .filter((n) => n.startsWith(namespace));
    const conn = await amqp.connect(config.amqpUrl);
    const ch = await conn.createChannel();
    for (const q of list('list_queues')) await ch.deleteQueue(q);
    for (const x of list('list_exchanges')) await ch.deleteExchange(x);
    await conn.close();
  } else if (kind === 'kafka') {
    const { Kafka, logLevel } = await import('kafkajs');
    const admin = new Kafka({ brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(namespace));
    if (topics.length) await admin.deleteTopics({ topics });
    await admin.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`\nbench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
