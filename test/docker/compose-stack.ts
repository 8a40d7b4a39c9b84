/**
 * One run of the compose stack as a user runs it (`up -d --build`), driven from outside like an
 * operator: the services healthy in order (the workers by the image's own HEALTHCHECK, which also
 * fails when their database does not answer), 1,000 orders through the stack's own publisher service in three waves, a participant
 * `docker kill`ed mid-run and brought back by compose, another one crashed mid-run (its worker
 * process SIGKILLed inside the container) and brought back by its restart policy, the outcome read
 * through the admin API, the effects ledger and saga table checked for nothing lost and nothing
 * doubled, then `down -v`. Used by test/docker/compose.test.ts for RabbitMQ and for the Kafka overlay.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { makeOrders } from '../../examples/order/run.js';
import { createDb } from '../../src/db/db.js';
import { checkInvariants } from '../e2e/harness.js';
import { waitFor } from '../helpers/wait.js';
import { docker, freePort, inspect, ok, run, tail, type ComposeCli, type ContainerState } from './docker.js';

export interface StackOptions {
  readonly compose: ComposeCli;
  /** Compose files, first the base. */
  readonly files: readonly string[];
  /** Label for log lines: `rabbitmq`, `kafka`. */
  readonly label: string;
  readonly random: () => number;
}

const ORDERS = 1_000;
const FAIL_EVERY = 10;

export class ComposeStack {
  readonly project = `sfit${randomBytes(4).toString('hex')}`;
  readonly token = randomBytes(18).toString('base64url');
  private env: NodeJS.ProcessEnv = {};
  private ports: Record<string, number> = {};
  private readonly tmp = mkdtempSync(join(tmpdir(), 'sagaflow-compose-'));
  private up = false;
  readonly timings: Record<string, string> = {};

  constructor(private readonly opts: StackOptions) {}

  private log(m: string): void {
    console.log(`[docker compose ${this.opts.label}] ${m}`);
  }

  private time<T>(what: string, t0: number, value: T): T {
    this.timings[what] = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    this.log(`${what}: ${this.timings[what]}`);
    return value;
  }

  /** The compose command line for this stack (project, files) with `args`. */
  compose(args: readonly string[], timeoutMs = 300_000) {
    const { file, prefix } = this.opts.compose;
    return run(file, [...prefix, '-p', this.project, ...this.opts.files.flatMap((f) => ['-f', f]), ...args], { env: this.env, timeoutMs });
  }

  private async composeOk(args: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.compose(args, timeoutMs);
    if (r.code !== 0) throw new Error(`compose ${args.join(' ')} exited ${r.code}:\n${tail(r.stderr + r.stdout, 60)}`);
    return r.stdout;
  }

  async start(): Promise<void> {
    // Every published port on a free loopback port: the machine's own Postgres and RabbitMQ keep theirs.
    for (const name of ['POSTGRES_HOST_PORT', 'RABBITMQ_HOST_PORT', 'RABBITMQ_UI_HOST_PORT', 'ADMIN_HOST_PORT', 'KAFKA_HOST_PORT']) this.ports[name] = await freePort();
    this.env = {
      ...process.env,
      ...Object.fromEntries(Object.entries(this.ports).map(([k, v]) => [k, String(v)])),
      SAGAFLOW_ADMIN_TOKENS: `ci:${this.token}:read`,
    };
    this.up = true;
    const t0 = Date.now();
    await this.composeOk(['up', '-d', '--build'], 900_000);
    this.time('up -d --build', t0, undefined);
  }

  /** Containers of one service, in a stable order. */
  async containers(service: string): Promise<ContainerState[]> {
    const ids = (await docker(['ps', '-a', '-q', '--filter', `label=com.docker.compose.project=${this.project}`, '--filter', `label=com.docker.compose.service=${service}`]))
      .split('\n')
      .filter(Boolean);
    return (await inspect(ids)).sort((a, b) => a.name.localeCompare(b.name));
  }

  async waitHealthy(service: string, count: number, timeoutMs = 300_000): Promise<ContainerState[]> {
    return waitFor(
      `${count} healthy ${service} container(s)`,
      () => this.containers(service),
      (cs) => cs.length === count && cs.every((c) => c.status === 'running' && c.health === 'healthy'),
      { timeoutMs, intervalMs: 1_000 },
    );
  }

  /** Sagas with `status`, counted through the admin API (all pages). */
  async countThroughAdmin(status: 'completed' | 'compensated' | 'failed' | 'running' | 'compensating'): Promise<number> {
    let n = 0;
    let cursor: string | null = null;
    do {
      const url = new URL(`http://127.0.0.1:${this.ports.ADMIN_HOST_PORT}/v1/sagas`);
      url.searchParams.set('status', status);
      url.searchParams.set('limit', '500');
      if (cursor) url.searchParams.set('cursor', cursor);
      const res = await fetch(url, { headers: { authorization: `Bearer ${this.token}` }, signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`admin API ${url.pathname}${url.search}: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as { items: unknown[]; nextCursor: string | null };
      n += body.items.length;
      cursor = body.nextCursor;
    } while (cursor);
    return n;
  }

  async adminCounts(): Promise<{ completed: number; compensated: number; failed: number }> {
    const [completed, compensated, failed] = await Promise.all([this.countThroughAdmin('completed'), this.countThroughAdmin('compensated'), this.countThroughAdmin('failed')]);
    return { completed, compensated, failed };
  }

  /** Publishes `orders` through `compose run publisher`, from a file mounted read-only. */
  async publish(orders: readonly object[], wave: string): Promise<void> {
    const file = join(this.tmp, `${wave}.ndjson`);
    writeFileSync(file, orders.map((o) => JSON.stringify(o)).join('\n') + '\n');
    chmodSync(file, 0o644); // the image runs as uid 1000
    const t0 = Date.now();
    const out = await this.composeOk(
      // --no-deps: `run` would otherwise start what the publisher depends on, among them a participant
      // this scenario keeps down on purpose (and migrate again).
      ['run', '--rm', '--no-deps', '-e', 'LOG_LEVEL=warn', '-v', `${file}:/orders.ndjson:ro`, 'publisher', 'publish', 'PlaceOrder', '--module', 'examples/order', '--file', '/orders.ndjson', '--json'],
      300_000,
    );
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { published: number };
    expect(result.published, `${wave} published`).toBe(orders.length);
    this.time(`publish ${wave} (${orders.length} orders)`, t0, undefined);
  }

  /**
   * The whole scenario. Returns when every check passed; the caller's afterAll runs `down -v` in
   * any case (and prints the logs when a check failed).
   */
  async scenario(): Promise<void> {
    const t0 = Date.now();
    await this.start();

    // Start order and one-shots: migrate ran once and succeeded, broker-ready found the broker.
    const oneShots = [...(await this.containers('migrate')), ...(await this.containers('broker-ready'))];
    expect(oneShots.map((c) => [c.status, c.exitCode])).toEqual([
      ['exited', 0],
      ['exited', 0],
    ]);
    const tHealthy = Date.now();
    await this.waitHealthy('orchestrator', 1);
    const participants = await this.waitHealthy('participants', 2);
    await this.waitHealthy('admin', 1);
    this.time('services healthy after up', tHealthy, undefined);
    await this.workersRunTheImageHealthcheck(participants[0]!.id);

    const runId = randomBytes(3).toString('hex');
    const orders = makeOrders(ORDERS, { runId, failEvery: FAIL_EVERY });
    // Three waves, so that each fault lands while orders are in flight.
    const cut1 = 250 + Math.floor(this.opts.random() * 150);
    const cut2 = cut1 + 250 + Math.floor(this.opts.random() * 150);
    const [killed, crashed] = this.opts.random() < 0.5 ? [participants[0]!, participants[1]!] : [participants[1]!, participants[0]!];
    this.log(`waves 0-${cut1 - 1}, ${cut1}-${cut2 - 1}, ${cut2}-${ORDERS - 1}; docker kill ${killed.name}, crash ${crashed.name}`);
    const tRun = Date.now();

    await this.publish(orders.slice(0, cut1), 'wave 1');
    await waitFor('the first orders to end', () => this.adminCounts(), (c) => c.completed + c.compensated >= 50, { timeoutMs: 180_000, intervalMs: 500 });

    // `docker kill`: Docker's restart policy deliberately leaves a container stopped by the user
    // alone, so compose brings it back (`start`), as an operator would.
    await docker(['kill', killed.id]);
    const [afterKill] = await waitFor('the killed participant to stop', () => inspect([killed.id]), (s) => s[0]?.status === 'exited', { timeoutMs: 30_000, intervalMs: 200 });
    expect(afterKill!.exitCode).toBe(137);
    await this.publish(orders.slice(cut1, cut2), 'wave 2');
    expect((await inspect([killed.id]))[0]!.status, 'the killed participant stayed down during wave 2').toBe('exited');
    await this.composeOk(['up', '-d', '--no-deps', 'participants']);
    const back = await this.waitHealthy('participants', 2);
    expect(back.map((c) => c.id).sort(), 'the same two containers, the killed one started again').toEqual(participants.map((c) => c.id).sort());

    // A crash: the worker process SIGKILLed inside the container (what an OOM kill does). The
    // container exits on its own, so its restart policy (unless-stopped) restarts it.
    const before = (await inspect([crashed.id]))[0]!.restartCount;
    await run('docker', ['exec', crashed.id, '/bin/sh', '-c', 'kill -KILL -1']);
    await this.publish(orders.slice(cut2), 'wave 3');
    await waitFor('the restart policy to restart the crashed participant', () => inspect([crashed.id]), (s) => (s[0]?.restartCount ?? 0) > before, {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    await this.waitHealthy('participants', 2);

    const expected = { completed: ORDERS - ORDERS / FAIL_EVERY, compensated: ORDERS / FAIL_EVERY };
    const final = await waitFor('900 completed and 100 compensated sagas, through the admin API', () => this.adminCounts(), (c) => c.completed + c.compensated + c.failed >= ORDERS, {
      timeoutMs: 600_000,
      intervalMs: 2_000,
    });
    this.time('1,000 orders to their end, with the faults', tRun, undefined);
    expect(final).toEqual({ ...expected, failed: 0 });

    // Nothing lost, nothing doubled: the example's effects ledger (no unique key, so a doubled
    // effect would show) and the saga table, read from the stack's own Postgres.
    const db = createDb({ connectionString: `postgres://sagaflow:sagaflow@127.0.0.1:${this.ports.POSTGRES_HOST_PORT}/sagaflow`, max: 2, applicationName: 'sagaflow-compose-check' });
    try {
      const problems = await waitFor(
        'the invariants (outbox drained, every saga terminal)',
        () => checkInvariants(db, { schema: 'sagaflow', exampleSchema: 'order_example' }, { sagas: ORDERS, ...expected }),
        (p) => p.length === 0,
        { timeoutMs: 60_000, intervalMs: 1_000 },
      );
      expect(problems).toEqual([]);
      const { rows } = await db.query<{ kind: string; n: number; orders: number }>(
        'SELECT kind, count(*)::int AS n, count(DISTINCT order_id)::int AS orders FROM order_example.effects GROUP BY kind ORDER BY kind',
      );
      // One effect per step per order: every order reserved and charged, the 900 shipped, the 100 refunded and released.
      expect(rows).toEqual([
        { kind: 'charge', n: ORDERS, orders: ORDERS },
        { kind: 'refund', n: expected.compensated, orders: expected.compensated },
        { kind: 'release', n: expected.compensated, orders: expected.compensated },
        { kind: 'reserve', n: ORDERS, orders: ORDERS },
        { kind: 'ship', n: expected.completed, orders: expected.completed },
      ]);
      const sagas = await db.query<{ n: number; orders: number }>("SELECT count(*)::int AS n, count(DISTINCT data->>'orderId')::int AS orders FROM sagaflow.sagas");
      expect(sagas.rows[0]).toEqual({ n: ORDERS, orders: ORDERS });
    } finally {
      await db.close();
    }
    // migrate ran once: the same container, never started again.
    expect(await this.containers('migrate')).toEqual(oneShots.slice(0, 1));
    this.time('scenario from up to checks', t0, undefined);
  }

  /**
   * The workers' health comes from the image's own HEALTHCHECK (compose declares none for them),
   * and that check fails, with its reason, when the database does not answer: run in the worker's
   * container with the database address pointed at a closed port of the container itself.
   */
  private async workersRunTheImageHealthcheck(worker: string): Promise<void> {
    const fromImage = await docker(['inspect', '-f', '{{json .Config.Healthcheck}}', 'sagaflow:local']);
    const inContainer = await docker(['inspect', '-f', '{{json .Config.Healthcheck}}', worker]);
    expect(JSON.parse(inContainer)).toEqual(JSON.parse(fromImage));
    const check = (JSON.parse(fromImage) as { Test: string[] }).Test;
    expect(check[0]).toBe('CMD-SHELL');
    const down = await run('docker', ['exec', '-e', 'DATABASE_URL=postgres://sagaflow:x@127.0.0.1:1/sagaflow', worker, '/bin/sh', '-c', check[1]!], { timeoutMs: 60_000 });
    expect(down.code, down.stdout).toBe(1);
    expect(down.stderr).toMatch(/unhealthy/);
  }

  /** `down -v`; then nothing of the project is left (containers, volumes, network). */
  async down(): Promise<void> {
    if (!this.up) return;
    const t0 = Date.now();
    await this.composeOk(['down', '-v', '--remove-orphans'], 300_000);
    this.up = false;
    this.time('down -v', t0, undefined);
    const left = await ok('docker', ['ps', '-a', '-q', '--filter', `label=com.docker.compose.project=${this.project}`]);
    const volumes = await ok('docker', ['volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${this.project}`]);
    expect({ containers: left.trim(), volumes: volumes.trim() }).toEqual({ containers: '', volumes: '' });
  }

  /** After a failure: the last log lines of every service, then `down -v` whatever happens. */
  async cleanUp(failed: boolean): Promise<void> {
    try {
      if (failed && this.up) {
        const logs = await this.compose(['logs', '--no-color', '--tail', '40'], 60_000);
        console.log(`[docker compose ${this.opts.label}] logs after the failure:\n${logs.stdout}${logs.stderr}`);
      }
      if (this.up) await this.compose(['down', '-v', '--remove-orphans'], 300_000);
    } finally {
      rmSync(this.tmp, { recursive: true, force: true });
    }
  }
}
