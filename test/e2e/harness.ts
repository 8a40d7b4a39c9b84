/**
 * End-to-end harness: real worker PROCESSES (`node bin/sagaflow.js worker ...`) talking through a
 * real broker and a real Postgres, orders published from the test, faults injected from outside
 * (SIGKILL, broker connection kills), and the invariants checker (docs/guarantees.md) run at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { exampleTables, migrateExample } from '../../examples/order/participants.js';
import { makeOrders, publishOrders } from '../../examples/order/run.js';
import { loadConfig } from '../../src/config.js';
import { createDb, type Db } from '../../src/db/db.js';
import { migrate } from '../../src/db/migrate.js';
import { silentLogger } from '../../src/log.js';
import { createTransport } from '../../src/transport/create.js';
import type { Transport } from '../../src/transport/contract.js';
import { uniqueName } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

export type BrokerKind = 'rabbitmq' | 'kafka';

export interface E2EEnv {
  readonly transport: BrokerKind;
  readonly schema: string;
  readonly exampleSchema: string;
  readonly namespace: string;
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  readonly kafkaBrokers: string;
  readonly logDir: string;
  /** Environment for worker processes (and the in-test publisher). */
  readonly vars: Record<string, string>;
}

const ROOT = new URL('../../', import.meta.url).pathname;

export function e2eEnv(
  transport: BrokerKind,
  extra: Record<string, string> = {},
  // A bench script outside vitest passes its own services.
  services: { databaseUrl: string; amqpUrl: string; kafkaBrokers: string } = inject('services'),
): E2EEnv {
  const schema = uniqueName('sf_e2e');
  const exampleSchema = `${schema}_ex`;
  const namespace = `${schema}.`;
  const vars: Record<string, string> = {
    DATABASE_URL: services.databaseUrl,
    SAGAFLOW_SCHEMA: schema,
    ORDER_EXAMPLE_SCHEMA: exampleSchema,
    SAGAFLOW_TRANSPORT: transport,
    SAGAFLOW_NAMESPACE: namespace,
    AMQP_URL: services.amqpUrl,
    KAFKA_BROKERS: services.kafkaBrokers,
    LOG_LEVEL: 'warn',
    // Short grace: after a SIGKILL the relay of a surviving or restarted worker republishes soon.
    SAGAFLOW_OUTBOX_GRACE_MS: '2000',
    SAGAFLOW_FALLBACK_POLL_MS: '2000',
    SAGAFLOW_RETRY_DELAYS_MS: '100,500,1000',
    SAGAFLOW_DB_POOL: '6',
    ...extra,
  };
  return {
    transport,
    schema,
    exampleSchema,
    namespace,
    databaseUrl: services.databaseUrl,
    amqpUrl: services.amqpUrl,
    kafkaBrokers: services.kafkaBrokers,
    logDir: mkdtempSync(join(tmpdir(), `${schema}-`)),
    vars,
  };
}

export async function prepare(env: E2EEnv): Promise<Db> {
  const db = createDb({ connectionString: env.databaseUrl, max: 4, applicationName: `${env.schema}-checker` });
  await migrate(db, env.schema);
  await migrateExample(db, env.exampleSchema);
  return db;
}

export async function dropSchemas(db: Db, env: E2EEnv): Promise<void> {
  if (process.env.SAGAFLOW_KEEP_SCHEMA === '1') return;
  await db.query(`DROP SCHEMA IF EXISTS "${env.schema}" CASCADE`);
  await db.query(`DROP SCHEMA IF EXISTS "${env.exampleSchema}" CASCADE`);
}

/** An in-test client of the same broker, for publishing orders and declaring topology. */
export async function testTransport(env: E2EEnv): Promise<Transport> {
  const config = loadConfig(env.vars);
  return createTransport(config, silentLogger(), { clientId: `${env.schema}-test` });
}

/**
 * `node bin/sagaflow.js <command> --module examples/order ...` with the test's environment; stderr
 * goes to `logFile`, stdout is left to the caller (it watches for a ready line, then writes it to `log`).
 */
export function spawnSagaflow(env: E2EEnv, args: readonly string[], extraVars: Record<string, string>, logFile: string) {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(process.execPath, [join(ROOT, 'bin/sagaflow.js'), args[0]!, '--module', join(ROOT, 'examples/order'), ...args.slice(1)], {
    cwd: ROOT,
    env: { ...process.env, ...env.vars, ...extraVars },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.pipe(log);
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, log, exit };
}

export class WorkerProcess {
  child: ChildProcess | undefined;
  readonly logFile: string;
  starts = 0;
  #exit: Promise<number | null> | undefined;

  constructor(
    readonly env: E2EEnv,
    readonly role: 'all' | 'orchestrator' | 'participants',
    readonly name: string,
    readonly extraVars: Record<string, string> = {},
    /** More `sagaflow worker` flags, e.g. `--exclude-participants payment`. */
    readonly extraArgs: readonly string[] = [],
  ) {
    this.logFile = join(env.logDir, `${name}.log`);
  }

  /** Starts the process and resolves when it printed its ready line (fails if it exits first). */
  async start(timeoutMs = 60_000): Promise<void> {
    this.starts++;
    const { child, log, exit } = spawnSagaflow(this.env, ['worker', '--role', this.role, '--name', this.name, ...this.extraArgs], this.extraVars, this.logFile);
    this.child = child;
    this.#exit = exit;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready within ${timeoutMs} ms; log: ${this.logFile}`)), timeoutMs);
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        log.write(chunk);
        if (out.includes('"worker-ready"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited with ${code} before it was ready; log tail:\n${this.tail()}`));
      });
    });
  }

  /** SIGKILL: no draining, no acks, no cleanup - a crash. */
  async kill(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.#exit;
  }

  /** SIGTERM and wait: the graceful path; resolves with the exit code. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return this.child?.exitCode ?? null;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), timeoutMs);
    const code = await this.#exit!;
    clearTimeout(timer);
    return code;
  }

  tail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}

export async function placeOrders(
  env: E2EEnv,
  transport: Transport,
  n: number,
  opts: { duplicate?: boolean; failEvery?: number; runId?: string } = {},
): Promise<string[]> {
  const orders = makeOrders(n, { runId: opts.runId ?? env.schema, failEvery: opts.failEvery ?? 10 });
  if (!opts.duplicate) return publishOrders(transport.publisher, orders, { schema: env.schema });
  // Forced duplicates: publish the identical messages twice (same ids, same bytes).
  const sent: Parameters<Transport['publisher']['publish']>[0][number][] = [];
  const recording = { publish: async (m: readonly (typeof sent)[number][]) => {
    sent.push(...m);
    await transport.publisher.publish(m);
  }, close: async () => {} };
  const ids = await publishOrders(recording, orders, { schema: env.schema });
  await transport.publisher.publish(sent);
  return ids;
}

export interface Counts {
  running: number;
  compensating: number;
  completed: number;
  compensated: number;
  failed: number;
}

export async function statusCounts(db: Db, env: Pick<E2EEnv, 'schema'>): Promise<Counts> {
  const { rows } = await db.query<{ status: keyof Counts; n: number }>(`SELECT status, count(*)::int AS n FROM "${env.schema}".sagas GROUP BY status`);
  const c: Counts = { running: 0, compensating: 0, completed: 0, compensated: 0, failed: 0 };
  for (const r of rows) c[r.status] = r.n;
  return c;
}

export async function waitAllTerminal(db: Db, env: E2EEnv, n: number, timeoutMs = 240_000, onProgress?: (c: Counts) => void): Promise<Counts> {
  return waitFor(
    `${n} sagas to end`,
    async () => {
      const c = await statusCounts(db, env);
      onProgress?.(c);
      return c;
    },
    (c) => c.completed + c.compensated + c.failed >= n && c.running === 0 && c.compensating === 0,
    { timeoutMs, intervalMs: 250 },
  );
}

/**
 * The invariants checker (docs/guarantees.md) for the order example: every saga terminal; every participant
 * effect applied exactly once as its outcome requires (never twice); compensations in reverse
 * order; saga versions contiguous with the transitions taken; nothing left in the outbox; no dead letters.
 */
export async function checkInvariants(db: Db, env: Pick<E2EEnv, 'schema' | 'exampleSchema'>, expect: { sagas: number; completed: number; compensated: number }): Promise<string[]> {
  const problems: string[] = [];
  const s = `"${env.schema}"`;
  const t = exampleTables(env.exampleSchema);
  const c = await statusCounts(db, env);
  if (c.completed !== expect.completed || c.compensated !== expect.compensated || c.failed !== 0 || c.running + c.compensating !== 0) {
    problems.push(`status counts ${JSON.stringify(c)}, expected ${JSON.stringify(expect)}`);
  }
  const twice = await db.query<{ order_id: string; kind: string; n: number }>(
    `SELECT order_id, kind, count(*)::int AS n FROM ${t.effects} GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 10`,
  );
  if (twice.rows.length) problems.push(`effects applied more than once: ${JSON.stringify(twice.rows)}`);
  const wrong = await db.query<{ status: string; kinds: string; n: number }>(
    `WITH per_saga AS (
       SELECT sg.status, coalesce(string_agg(e.kind, ',' ORDER BY e.kind), '') AS kinds
       FROM ${s}.sagas sg LEFT JOIN ${t.effects} e ON e.order_id = sg.data->>'orderId'
       GROUP BY sg.id, sg.status)
     SELECT status, kinds, count(*)::int AS n FROM per_saga GROUP BY 1, 2 ORDER BY 1, 2`,
  );
  for (const r of wrong.rows) {
    const want = r.status === 'completed' ? 'charge,reserve,ship' : r.status === 'compensated' ? 'charge,refund,release,reserve' : undefined;
    if (r.kinds !== want) problems.push(`${r.n} ${r.status} saga(s) with effects [${r.kinds}], expected [${want}]`);
  }
  const order = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${s}.sagas sg WHERE sg.status = 'compensated' AND NOT EXISTS (
       SELECT 1 FROM ${s}.saga_steps a JOIN ${s}.saga_steps b ON a.saga_id = b.saga_id
       WHERE a.saga_id = sg.id AND a.kind = 'compensation' AND a.step_name = 'chargePayment' AND a.status = 'succeeded'
         AND b.kind = 'compensation' AND b.step_name = 'reserveStock' AND b.status = 'succeeded' AND a.seq < b.seq)`,
  );
  if (order.rows[0]!.n > 0) problems.push(`${order.rows[0]!.n} compensated saga(s) not undone in reverse order`);
  const versions = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${s}.sagas sg
     WHERE sg.version <> 1 + (SELECT count(*) FROM ${s}.saga_steps st WHERE st.saga_id = sg.id AND st.status <> 'running')
                          -- an attempt held at a closed gate is a transition that starts no step row
                          + coalesce((sg.state->>'holds')::int, 0)
       -- a retry starts an attempt without finishing one; such sagas are checked by the engine tests
       AND NOT EXISTS (SELECT 1 FROM ${s}.saga_steps st WHERE st.saga_id = sg.id AND st.attempt > 1)`,
  );
  if (versions.rows[0]!.n > 0) problems.push(`${versions.rows[0]!.n} saga(s) whose version does not match their finished step attempts (lost or doubled transition)`);
  const outbox = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.outbox`);
  if (outbox.rows[0]!.n > 0) problems.push(`${outbox.rows[0]!.n} outbox row(s) never published`);
  const dead = await db.query<{ reason_code: string; n: number }>(`SELECT reason_code, count(*)::int AS n FROM ${s}.dead_letters GROUP BY 1`);
  if (dead.rows.length) problems.push(`dead letters: ${JSON.stringify(dead.rows)}`);
  return problems;
}

/** Waits until the outbox is empty (the fast path and the relay caught up). */
export async function waitOutboxDrained(db: Db, env: E2EEnv, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    'the outbox to drain',
    async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.schema}".outbox`)).rows[0]!.n,
    (n) => n === 0,
    { timeoutMs, intervalMs: 200 },
  );
}

export function unhandledErrors(workers: readonly WorkerProcess[]): string[] {
  return workers.flatMap((w) => w.log().split('\n').filter((l) => /Unhandled 'error' event|UnhandledPromiseRejection|uncaughtException/.test(l)));
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `sagaflow <args>` as a user would, with the test's environment. */
export function runCli(env: E2EEnv, args: readonly string[], extraVars: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/sagaflow.js'), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env.vars, ...extraVars },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sagaflow ${args.join(' ')} did not finish within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** rabbitmqctl with a deadline; its output as text. */
export function rabbitmqctl(args: readonly string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('rabbitmqctl', [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`rabbitmqctl ${args.join(' ')} exited ${code}: ${err.slice(0, 500)}`));
    });
  });
}

/** Closes, broker side, every connection of this test's namespace (the workers' and the test's own). */
export async function closeRabbitConnections(env: E2EEnv): Promise<number> {
  const list = JSON.parse(await rabbitmqctl(['list_connections', 'pid', 'client_properties', '--formatter', 'json', '-q'])) as {
    pid: string;
    client_properties: unknown;
  }[];
  const ours = list.filter((c) => JSON.stringify(c.client_properties).includes(env.namespace));
  for (const c of ours) await rabbitmqctl(['close_connection', c.pid, 'sagaflow e2e fault injection']).catch(() => undefined);
  return ours.length;
}

/** Messages waiting in this namespace's queues (dead-letter and retry queues included). */
export async function rabbitQueueDepths(env: E2EEnv): Promise<Record<string, number>> {
  const list = JSON.parse(await rabbitmqctl(['list_queues', 'name', 'messages', '--formatter', 'json', '-q'])) as { name: string; messages: number }[];
  return Object.fromEntries(list.filter((q) => q.name.startsWith(env.namespace)).map((q) => [q.name.slice(env.namespace.length), q.messages]));
}

/** Deletes the namespace's queues and exchanges so the broker does not fill up with test leftovers. */
export async function cleanupRabbit(env: E2EEnv): Promise<void> {
  const amqp = await import('amqplib');
  const conn = await amqp.connect(env.amqpUrl);
  try {
    const queues = JSON.parse(await rabbitmqctl(['list_queues', 'name', '--formatter', 'json', '-q'])) as { name: string }[];
    const exchanges = JSON.parse(await rabbitmqctl(['list_exchanges', 'name', '--formatter', 'json', '-q'])) as { name: string }[];
    const ch = await conn.createChannel();
    for (const q of queues.filter((x) => x.name.startsWith(env.namespace))) await ch.deleteQueue(q.name);
    for (const x of exchanges.filter((e) => e.name.startsWith(env.namespace))) await ch.deleteExchange(x.name);
    await ch.close();
  } finally {
    await conn.close();
  }
}

/** The Kafka names of this test's namespace (the transport's rule: prefix + name). */
export function kafkaName(env: E2EEnv, name: string): string {
  return `${env.namespace}${name}`;
}

/**
 * docs/fault-matrix.md K8: a consumer group's committed offset is never ahead of what the database recorded
 * as processed. For every partition of `topic`, every message below the group's committed offset
 * must be in the consumer's inbox (or its dead letters). The inbox is read AFTER the offsets, and
 * only grows, so a check taken mid-run is valid too.
 */
export async function offsetsBehindInbox(env: E2EEnv, brokers: string, db: Db, consumer: string, topic: string): Promise<{ committed: number; checked: number; problems: string[] }> {
  const { Kafka, logLevel } = await import('kafkajs');
  const kafka = new Kafka({ clientId: `${env.schema}-offsets`, brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const group = kafkaName(env, consumer);
  const kTopic = kafkaName(env, topic);
  const problems: string[] = [];
  try {
    const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [kTopic] });
    const committed = new Map(offsets!.partitions.map((p) => [p.partition, Number(p.offset)]));
    const high = new Map((await admin.fetchTopicOffsets(kTopic)).map((p) => [p.partition, Number(p.high)]));
    for (const [p, o] of committed) if (o > (high.get(p) ?? 0)) problems.push(`${consumer} partition ${p}: committed ${o} beyond the log end ${high.get(p)}`);
    const processed = new Set(
      (
        await db.query<{ id: string }>(
          `SELECT message_id::text AS id FROM "${env.schema}".inbox WHERE consumer = $1
           UNION SELECT message_id FROM "${env.schema}".dead_letters WHERE consumer = $1`,
          [consumer],
        )
      ).rows.map((r) => r.id),
    );
    const wanted = [...committed].filter(([, o]) => o > 0);
    const total = wanted.reduce((n, [, o]) => n + o, 0);
    let checked = 0;
    if (total > 0) {
      const reader = kafka.consumer({ groupId: `${group}.offset-check.${Date.now()}` });
      await reader.connect();
      await reader.subscribe({ topic: kTopic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`reading ${kTopic} for the offset check timed out at ${checked}/${total}`)), 60_000);
        reader
          .run({
            eachMessage: async ({ partition, message }) => {
              const limit = committed.get(partition) ?? 0;
              if (Number(message.offset) >= limit) return;
              const id = message.headers?.['x-sagaflow-id']?.toString();
              if (!id || !processed.has(id)) problems.push(`${consumer} partition ${partition} offset ${message.offset}: committed but message ${id} is not in the inbox`);
              if (++checked >= total) {
                clearTimeout(timer);
                resolve();
              }
            },
          })
          .catch(reject);
      });
      await reader.disconnect();
    }
    return { committed: total, checked, problems };
  } finally {
    await admin.disconnect();
  }
}

/** Deletes this namespace's Kafka topics and groups. */
export async function cleanupKafka(env: E2EEnv, brokers: string): Promise<void> {
  const { Kafka, logLevel } = await import('kafkajs');
  const admin = new Kafka({ clientId: `${env.schema}-cleanup`, brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(env.namespace));
    if (topics.length) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect();
  }
}

/**
 * The poison scenario both brokers run: after `before` orders, a ReleaseStock with the wrong
 * reservation id for a reserved order (the stock participant refuses to paper over it and throws,
 * every time) is sent, then `after` more orders. Resolves with the dead letter once recorded, and
 * checks the reservation was left alone and every order still ended.
 */
export async function poisonCommand(
  env: E2EEnv,
  db: Db,
  transport: Transport,
  counts: { before: number; after: number },
): Promise<{ reason_code: string; attempts: number; consumer: string; error: string }> {
  const { ReleaseStock } = await import('../../examples/order/messages.js');
  const { createClient } = await import('../../src/client.js');
  await placeOrders(env, transport, counts.before);
  await waitAllTerminal(db, env, counts.before);
  const t = exampleTables(env.exampleSchema);
  const victim = (await db.query<{ order_id: string }>(`SELECT order_id FROM ${t.reservations} WHERE status = 'reserved' LIMIT 1`)).rows[0]!;
  const client = createClient({ schema: env.schema, publisher: transport.publisher });
  const { messageId } = await client.send(ReleaseStock, { orderId: victim.order_id, reservationId: 'not-the-right-one' });
  // Orders placed after the poison flow past it while it is retried.
  await placeOrders(env, transport, counts.after, { runId: `${env.schema}-after` });
  const dead = await waitFor(
    'the poison command in the dead letters',
    async () =>
      (
        await db.query<{ reason_code: string; attempts: number; consumer: string; error: string }>(
          `SELECT reason_code, attempts, consumer, error FROM "${env.schema}".dead_letters WHERE message_id = $1`,
          [messageId],
        )
      ).rows[0],
    (r) => r !== undefined,
    { timeoutMs: 90_000 },
  );
  const still = await db.query(`SELECT 1 FROM ${t.reservations} WHERE order_id = $1 AND status = 'reserved'`, [victim.order_id]);
  if (still.rowCount !== 1) throw new Error('the poison command released the reservation');
  await waitAllTerminal(db, env, counts.before + counts.after);
  return dead!;
}

/** Stops a RabbitMQ run's processes and removes what it left (queues, schemas); returns their exit codes. */
export async function tearDownRabbitRun(run: { env: E2EEnv; db: Db; transport: Transport; workers: readonly WorkerProcess[] }): Promise<(number | null)[]> {
  const codes = await Promise.all(run.workers.map((w) => w.stop()));
  await run.transport.close();
  await cleanupRabbit(run.env).catch(() => undefined);
  await dropSchemas(run.db, run.env);
  await run.db.close();
  return codes;
}
