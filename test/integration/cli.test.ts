/**
 * The `sagaflow` command as users run it (`node bin/sagaflow.js ...` in a child process, against
 * this file's own schemas):
 * - `migrate --module examples/order` twice: exit 0, the second run applies nothing;
 * - usage errors (unknown flag, `sagas list --status bogus`, a non-UUID saga id, a non-numeric
 *   dead letter id) exit 2 with one message line and no stack trace;
 * - `publish` with bad JSON, a schema-invalid payload, or a `--file` with one bad line exits 2
 *   (naming the line) and publishes nothing, not even the file's valid lines;
 * - `publish --outbox` of valid orders is picked up by an in-process worker and the sagas run;
 *   `sagas list --json` and `sagas show <id> --json` report them; an unknown id exits 3;
 * - `worker --participants` / `--exclude-participants`: unknown names, both flags, an empty list or
 *   nothing left to run exit 2 naming the module's participants; a `.ts` module outside the project
 *   loads whatever package.json is around it (none, untyped, commonjs, module), in the CLI's own
 *   module graph (an error class it throws is the CLI's).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderParticipants, orderSaga } from '../../examples/order/index.js';
import { makeOrders } from '../../examples/order/run.js';
import { createDb, type Db } from '../../src/db/db.js';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { MemoryTransport } from '../../src/transport/memory.js';
import { createWorker, type Worker } from '../../src/worker/worker.js';
import { databaseUrl, uniqueName } from '../helpers/db.js';
import { closedPort, forward } from '../helpers/ports.js';
import { runProcess, type ProcessRun } from '../helpers/run-process.js';
import { seededRandom } from '../helpers/seed.js';
import { waitFor } from '../helpers/wait.js';

const root = new URL('../..', import.meta.url).pathname;
const schema = uniqueName('sf_cli');
const exampleSchema = uniqueName('sf_cli_ex');
const tmp = mkdtempSync(join(tmpdir(), 'sagaflow-cli-'));
const { random } = seededRandom('cli');
let db: Db;
let worker: Worker | undefined;
let transport: MemoryTransport | undefined;

type Run = ProcessRun;

function cliEnv(over: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl(),
    SAGAFLOW_SCHEMA: schema,
    ORDER_EXAMPLE_SCHEMA: exampleSchema,
    SAGAFLOW_TRANSPORT: 'memory',
    LOG_LEVEL: 'warn',
    ...over,
  };
  delete env.SAGAFLOW_DEBUG;
  return env;
}

function cli(...args: string[]): Promise<Run> {
  return cliWith({}, ...args);
}

/** `sagaflow ...args` with these environment variables changed, run to its end. */
function cliWith(over: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  return runProcess(process.execPath, ['bin/sagaflow.js', ...args], { cwd: root, env: cliEnv(over) });
}

const STACK_LINE = /^\s+at /m;

/**
 * The exit code, a first line matching `message`, no stack trace; with `oneLine`, nothing else
 * but commander's "(run with --help for usage)" hint. (Publish errors list the bad lines below.)
 */
function expectCleanFailure(r: Run, code: number, message: RegExp, opts: { oneLine?: boolean } = {}): void {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stderr).not.toMatch(STACK_LINE);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && l !== '(run with --help for usage)');
  expect(lines[0]).toMatch(message);
  if (opts.oneLine) expect(lines, r.stderr).toHaveLength(1);
}

async function outboxCount(): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".outbox`);
  return rows[0]!.n;
}

async function sagasFor(orderIds: readonly string[]): Promise<{ id: string; status: string; order_id: string }[]> {
  const { rows } = await db.query<{ id: string; status: string; order_id: string }>(
    `SELECT id, status, data->>'orderId' AS order_id FROM "${schema}".sagas WHERE data->>'orderId' = ANY($1)`,
    [orderIds],
  );
  return rows;
}

function orders(n: number, failAt: ('none' | 'shipping')[] = []) {
  return makeOrders(n, { failEvery: 0, skus: 100 }).map((o, i) => ({ ...o, failAt: failAt[i] ?? ('none' as const) }));
}

beforeAll(() => {
  db = createDb({ connectionString: databaseUrl(), max: 4, applicationName: `sf-cli-test-${schema}` });
});

afterAll(async () => {
  await worker?.stop();
  await transport?.close();
  await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await db.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('sagaflow CLI', () => {
  it('migrate --module examples/order twice: exit 0, the second run applies nothing', async () => {
    const known = loadMigrations().map((m) => m.version);
    const first = await cli('migrate', '--module', 'examples/order');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`schema ${schema} is at migration ${known.at(-1)} (applied ${known.join(', ')})`);
    expect(first.stdout).toContain('module examples/order tables are ready');

    const second = await cli('migrate', '--module', 'examples/order');
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`schema ${schema} is at migration ${known.at(-1)} (nothing to apply)`);
    expect(second.stderr).toBe('');

    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".schema_migrations`);
    expect(rows[0]!.n).toBe(known.length);
    const ex = await db.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`"${exampleSchema}".effects`]);
    expect(ex.rows[0]!.t).not.toBeNull();
  });

  it('usage errors exit 2 with one message line and no stack trace', async () => {
    const [badFlag, badStatus, badId, badTransport, badDlShow, badDlRedrive, badDlDiscard] = await runAll(
      [
        ['migrate', '--bogus'],
        ['sagas', 'list', '--status', 'bogus'],
        ['sagas', 'show', 'not-a-uuid'],
        ['--transport', 'pigeon', 'sagas', 'list'],
        ['dead-letters', 'show', 'abc'],
        ['dead-letters', 'redrive', '12x'],
        ['dead-letters', 'discard', '-1', '--reason', 'x'],
      ],
      {},
    );
    const oneLine = { oneLine: true };
    expectCleanFailure(badFlag, 2, /^error: unknown option '--bogus'$/, oneLine);
    expectCleanFailure(badStatus, 2, /^sagaflow: --status must be one of running, compensating, completed, compensated, failed, got bogus$/, oneLine);
    expectCleanFailure(badId, 2, /^sagaflow: saga id must be a UUID/, oneLine);
    expectCleanFailure(badTransport, 2, /^sagaflow: invalid configuration: SAGAFLOW_TRANSPORT/, oneLine);
    // A malformed dead letter id is bad usage (2), not an unknown one (3).
    expectCleanFailure(badDlShow, 2, /^sagaflow: dead letter id must be a positive integer .*got "abc"$/, oneLine);
    expectCleanFailure(badDlRedrive, 2, /^sagaflow: dead letter id must be a positive integer/, oneLine);
    expect(badDlDiscard.code, badDlDiscard.stderr).toBe(2);
    for (const r of [badFlag, badStatus, badId, badTransport, badDlShow, badDlRedrive, badDlDiscard]) expect(r.stdout).toBe('');
  });

  it('publish refuses bad JSON, schema-invalid payloads and a file with one bad line, and publishes nothing', async () => {
    const good = orders(3);
    const file = join(tmp, 'orders.ndjson');
    // Line 3 of 4 is invalid: the valid lines around it must not be published either.
    writeFileSync(file, [good[0], good[1], { ...good[2], items: 'none' }, good[2]].map((o) => JSON.stringify(o)).join('\n') + '\n');
    const before = await outboxCount();
    const [badJson, invalid, badFile] = await Promise.all([
      cli('publish', 'PlaceOrder', '--module', 'examples/order', '--outbox', '--data', '{"orderId": '),
      cli('publish', 'PlaceOrder', '--module', 'examples/order', '--outbox', '--data', JSON.stringify({ ...good[0], amountCents: 'free' })),
      cli('publish', 'PlaceOrder', '--module', 'examples/order', '--outbox', '--file', file),
    ]);
    expectCleanFailure(badJson, 2, /^sagaflow: PlaceOrder: 1 invalid message\(s\), nothing published:$/);
    expect(badJson.stderr).toMatch(/not JSON/);
    expectCleanFailure(invalid, 2, /^sagaflow: PlaceOrder: 1 invalid message\(s\), nothing published:$/);
    expect(invalid.stderr).toMatch(/amountCents/);
    expectCleanFailure(badFile, 2, /^sagaflow: PlaceOrder: 1 invalid message\(s\), nothing published:$/);
    expect(badFile.stderr).toMatch(/^\s+line 3: items/m);
    expect(badFile.stderr).not.toMatch(/line [124]:/);
    expect(await outboxCount()).toBe(before);
    expect(await sagasFor(good.map((o) => o.orderId))).toEqual([]);
  });

  it('publish --outbox feeds an in-process worker; sagas list / show report the sagas; an unknown id exits 3', async () => {
    transport = new MemoryTransport();
    worker = createWorker({
      db,
      transport,
      module: { sagas: [orderSaga], participants: orderParticipants(exampleSchema) },
      options: { schema, random, relay: { fallbackPollMs: 0 } },
    });
    await worker.start();

    const list = orders(3, ['none', 'shipping', 'none']);
    const file = join(tmp, 'good.ndjson');
    writeFileSync(file, list.map((o) => JSON.stringify(o)).join('\n'));
    const pub = await cli('publish', 'PlaceOrder', '--module', 'examples/order', '--outbox', '--file', file, '--json');
    expect(pub.code, pub.stderr).toBe(0);
    const out = JSON.parse(pub.stdout.trim()) as { type: string; published: number; messages: { sagaId: string; messageId: string }[] };
    expect(out).toMatchObject({ type: 'PlaceOrder', published: 3 });
    const ids = out.messages.map((m) => m.sagaId);

    const rows = await waitFor(
      'the published sagas to end',
      () => sagasFor(list.map((o) => o.orderId)),
      (rs) => rs.length === 3 && rs.every((r) => r.status === 'completed' || r.status === 'compensated'),
      { timeoutMs: 20_000 },
    );
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(ids));
    const statusOf = new Map(rows.map((r) => [r.order_id, r.status]));
    expect(list.map((o) => statusOf.get(o.orderId))).toEqual(['completed', 'compensated', 'completed']);
    const compensatedId = rows.find((r) => r.status === 'compensated')!.id;

    const [all, compensated, show, unknown] = await Promise.all([
      cli('sagas', 'list', '--json', '--limit', '50'),
      cli('sagas', 'list', '--status', 'compensated', '--json'),
      cli('sagas', 'show', compensatedId, '--json'),
      cli('sagas', 'show', '00000000-0000-4000-8000-000000000000', '--json'),
    ]);
    expect(all.code, all.stderr).toBe(0);
    const listed = JSON.parse(all.stdout) as { id: string; type: string; status: string; version: number }[];
    for (const r of rows) expect(listed.find((l) => l.id === r.id)).toMatchObject({ type: 'order', status: r.status });

    expect(compensated.code, compensated.stderr).toBe(0);
    expect((JSON.parse(compensated.stdout) as { id: string }[]).map((l) => l.id)).toEqual([compensatedId]);

    expect(show.code, show.stderr).toBe(0);
    const shown = JSON.parse(show.stdout) as {
      id: string;
      status: string;
      version: number;
      data: { orderId: string };
      steps: { seq: number; step: string; kind: string; status: string }[];
    };
    expect(shown).toMatchObject({ id: compensatedId, status: 'compensated', version: 6, data: { orderId: list[1]!.orderId } });
    expect(shown.steps.map((s) => `${s.seq}:${s.step}/${s.kind}=${s.status}`)).toEqual([
      '1:reserveStock/forward=succeeded',
      '2:chargePayment/forward=succeeded',
      '3:shipOrder/forward=failed',
      '4:chargePayment/compensation=succeeded',
      '5:reserveStock/compensation=succeeded',
    ]);

    expectCleanFailure(unknown, 3, /^sagaflow: no saga 00000000-0000-4000-8000-000000000000$/, { oneLine: true });
    expect(unknown.stdout).toBe('');
  });
});

/** Runs each argument list (at most `n` at once: every run is a Node process with tsx). */
async function runAll<const L extends readonly (readonly string[])[]>(lists: L, over: NodeJS.ProcessEnv, n = 3): Promise<{ -readonly [K in keyof L]: Run }> {
  const out: Run[] = new Array<Run>(lists.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < lists.length) {
        const i = next++;
        out[i] = await cliWith(over, ...lists[i]!);
      }
    }),
  );
  return out as { -readonly [K in keyof L]: Run };
}

interface Background {
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** `sagaflow ...args` in the background: resolves with the first stdout match of `ready` once it prints it. */
function background(args: readonly string[], over: NodeJS.ProcessEnv, ready: RegExp): Promise<{ match: RegExpExecArray; proc: Background }> {
  const child = spawn(process.execPath, ['bin/sagaflow.js', ...args], { cwd: root, env: cliEnv(over), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const killer = setTimeout(() => child.kill('SIGKILL'), 50_000);
  const proc: Background = {
    stdout: () => stdout,
    stderr: () => stderr,
    stop: async () => {
      child.kill('SIGTERM');
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      const match = ready.exec(stdout);
      if (match) resolve({ match, proc });
    });
    void exited.then((code) => reject(new Error(`sagaflow ${args.join(' ')} exited ${code} before it was ready: ${stderr}`)));
  });
}

/** `sagaflow serve` in the background: resolves with its URL once it listens. */
async function serve(over: NodeJS.ProcessEnv): Promise<Background & { url: string }> {
  const { match, proc } = await background(['serve', '--module', 'examples/order', '--port', '0'], over, /"event":"admin-listening","url":"([^"]+)"/);
  return { ...proc, url: match[1]! };
}

describe('sagaflow CLI with a dependency down', () => {
  const ORDER = JSON.stringify(orders(1)[0]);
  const UNKNOWN = '00000000-0000-4000-8000-000000000001';
  const MODULE = ['--module', 'examples/order'];
  const SECRET = 'hunter2-cli';

  /** One line on stderr (at the default log level), no stack, no password, exit 1. */
  function expectOneLine(r: Run, what: string, line: RegExp): void {
    expect(r.code, `${what}: ${r.stderr}`).toBe(1);
    expect(r.stderr, what).not.toMatch(STACK_LINE);
    expect(r.stderr, what).not.toContain(SECRET);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines, `${what}: ${r.stderr}`).toHaveLength(1);
    expect(lines[0], what).toMatch(line);
  }

  it('Postgres down: every command that needs it says so in one line naming Postgres, its address and DATABASE_URL', async () => {
    const port = await closedPort();
    const commands: string[][] = [
      ['migrate'],
      ['health'],
      ['worker', ...MODULE],
      ['publish', 'PlaceOrder', ...MODULE, '--outbox', '--data', ORDER],
      ['sagas', 'list'],
      ['sagas', 'show', UNKNOWN],
      ['replay', UNKNOWN, ...MODULE],
      ['replay', '--status', 'failed', ...MODULE],
      ['cancel', UNKNOWN, '--reason', 'test', ...MODULE],
      ['dead-letters', 'list'],
      ['dead-letters', 'show', '1'],
      ['dead-letters', 'redrive', '1'],
      ['dead-letters', 'discard', '1', '--reason', 'test'],
      ['audit'],
    ];
    const runs = await runAll(commands, { DATABASE_URL: `postgres://postgres:${SECRET}@127.0.0.1:${port}/postgres`, LOG_LEVEL: 'info' });
    const line = new RegExp(
      `^sagaflow: (unhealthy: )?cannot connect to Postgres at postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${port}/postgres: connection refused \\(ECONNREFUSED\\); check DATABASE_URL$`,
    );
    runs.forEach((r, i) => expectOneLine(r, commands[i]!.join(' '), line));
  }, 300_000);

  it('a malformed DATABASE_URL is bad configuration (exit 2) naming the variable, not "Invalid URL"', async () => {
    const r = await cliWith({ DATABASE_URL: `postgres://po stgres:${SECRET}@:::bad` }, 'sagas', 'list');
    expectCleanFailure(r, 2, /^sagaflow: invalid configuration: DATABASE_URL: must be a postgres:\/\/ .*URL with a host/, { oneLine: true });
    expect(r.stderr).not.toContain(SECRET);
  });

  it('RabbitMQ down: worker, publish and health --broker say so in one line naming RabbitMQ, its address and AMQP_URL', async () => {
    await migrate(db, schema);
    const port = await closedPort();
    const commands = [['worker', ...MODULE], ['publish', 'PlaceOrder', ...MODULE, '--data', ORDER], ['health', '--broker']];
    const runs = await runAll(commands, { SAGAFLOW_TRANSPORT: 'rabbitmq', AMQP_URL: `amqp://guest:${SECRET}@127.0.0.1:${port}`, LOG_LEVEL: 'info' });
    const line = new RegExp(`^sagaflow: (unhealthy: )?cannot connect to RabbitMQ at amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port}: connection refused \\(ECONNREFUSED\\); check AMQP_URL$`);
    runs.forEach((r, i) => expectOneLine(r, commands[i]!.join(' '), line));
  });

  it("Kafka down: one line naming Kafka and KAFKA_BROKERS, none of kafkajs' retry warnings, within the connect deadline", async () => {
    await migrate(db, schema);
    const port = await closedPort();
    const commands = [['worker', ...MODULE], ['publish', 'PlaceOrder', ...MODULE, '--data', ORDER], ['health', '--broker']];
    const started = Date.now();
    const runs = await runAll(commands, { SAGAFLOW_TRANSPORT: 'kafka', KAFKA_BROKERS: `127.0.0.1:${port}`, LOG_LEVEL: 'info' });
    const line = new RegExp(`^sagaflow: (unhealthy: )?cannot connect to Kafka at 127\\.0\\.0\\.1:${port}: (connection refused \\(ECONNREFUSED\\)|no answer within 5 s); check KAFKA_BROKERS$`);
    runs.forEach((r, i) => expectOneLine(r, commands[i]!.join(' '), line));
    console.log(`[cli] three commands with Kafka down ended in ${Date.now() - started} ms (each a process; the connect gives up after its retries)`);
  });

  it('serve with Postgres down: /healthz 200, /readyz and the API 503 until the database answers, then 200', async () => {
    await migrate(db, schema);
    const port = await closedPort();
    const token = 'ops:cli-serve-token-0123456789:admin';
    // The real database's URL (its credentials), pointed at a port where nothing answers yet.
    const real = new URL(databaseUrl());
    const down = new URL(databaseUrl());
    down.host = `127.0.0.1:${port}`;
    const s = await serve({ DATABASE_URL: down.toString(), SAGAFLOW_ADMIN_TOKENS: token });
    let proxy: { close(): Promise<void> } | undefined;
    try {
      const auth = { authorization: 'Bearer cli-serve-token-0123456789' };
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      const notReady = await fetch(`${s.url}/readyz`);
      expect(notReady.status).toBe(503);
      expect(((await notReady.json()) as { error: { message: string } }).error.message).toBe('not ready: the database is unavailable');
      expect((await fetch(`${s.url}/v1/sagas?limit=1`, { headers: auth })).status).toBe(503);
      // The reason with the address is in the log, once (not once per check).
      await waitFor('the not-ready line', () => s.stderr(), (e) => /admin API not ready/.test(e), { timeoutMs: 10_000 });
      expect(s.stderr()).toMatch(new RegExp(`cannot connect to Postgres at postgres://[^ ]*127\\.0\\.0\\.1:${port}/[^ ]*: connection refused`));

      // The database comes up on that address (a forwarder to the real one).
      proxy = await forward(port, { host: real.hostname, port: Number(real.port || 5432) });
      await waitFor('serve to become ready', async () => (await fetch(`${s.url}/readyz`)).status, (st) => st === 200, { timeoutMs: 20_000 });
      expect((await fetch(`${s.url}/v1/sagas?limit=1`, { headers: auth })).status).toBe(200);
      expect(s.stderr().match(/admin API not ready/g)).toHaveLength(1);
      if (real.password) expect(s.stderr()).not.toContain(real.password);
    } finally {
      expect(await s.stop()).toBe(0);
      await proxy?.close();
    }
  });
});

describe('sagaflow worker: a subset of the participants, modules anywhere on disk', () => {
  const MODULE = ['worker', '--module', 'examples/order'];
  const KNOWN = "the module's participants are: stock, payment, shipping";

  it('--participants / --exclude-participants: unknown names, both flags, or nothing left to run exit 2 naming the known participants', async () => {
    const runs = await runAll(
      [
        [...MODULE, '--participants', 'payment,paymnt'],
        [...MODULE, '--exclude-participants', 'x, y'],
        [...MODULE, '--participants', 'payment', '--exclude-participants', 'stock'],
        [...MODULE, '--role', 'orchestrator', '--participants', 'payment'],
        [...MODULE, '--role', 'participants', '--exclude-participants', 'stock,payment,shipping'],
        [...MODULE, '--participants', ' , '],
      ],
      {},
    );
    const oneLine = { oneLine: true };
    expectCleanFailure(runs[0], 2, new RegExp(`^sagaflow: --participants: unknown participant paymnt; ${KNOWN}$`), oneLine);
    expectCleanFailure(runs[1], 2, new RegExp(`^sagaflow: --exclude-participants: unknown participants x, y; ${KNOWN}$`), oneLine);
    expectCleanFailure(runs[2], 2, /^sagaflow: --participants and --exclude-participants cannot be combined$/, oneLine);
    expectCleanFailure(runs[3], 2, /^sagaflow: --participants makes no sense with --role orchestrator/, oneLine);
    expectCleanFailure(runs[4], 2, /^sagaflow: --exclude-participants leaves no participant to run with --role participants$/, oneLine);
    expectCleanFailure(runs[5], 2, /^sagaflow: --participants: the participant list is empty$/, oneLine);
  });

  /**
   * A TypeScript module outside the project, importing a helper next to it: with no package.json
   * around it, one without "type", one saying "commonjs" and one saying "module". Each worker runs
   * the orchestrator and every participant but payment (the one another service replaces).
   */
  it('a .ts module outside the project loads whatever package.json is around it; --exclude-participants payment runs the others', async () => {
    await migrate(db, schema);
    const example = join(root, 'examples/order/index.ts');
    const layouts: Record<string, string | undefined> = { bare: undefined, untyped: '{"name":"x"}', commonjs: '{"type":"commonjs"}', module: '{"type":"module"}' };
    const files = Object.entries(layouts).map(([name, pkg]) => {
      const dir = join(tmp, `outside-${name}`);
      mkdirSync(dir, { recursive: true });
      if (pkg) writeFileSync(join(dir, 'package.json'), pkg);
      writeFileSync(join(dir, 'order-parts.ts'), `export { orderParticipants, orderSaga } from ${JSON.stringify(example)};\n`);
      writeFileSync(
        join(dir, 'module.ts'),
        [
          "import { orderParticipants, orderSaga } from './order-parts.ts';",
          'const schemaName: string = process.env.ORDER_EXAMPLE_SCHEMA!;',
          'export default () => ({ sagas: [orderSaga], participants: orderParticipants(schemaName) });',
        ].join('\n'),
      );
      return join(dir, 'module.ts');
    });
    for (const file of files) {
      const { match, proc } = await background(['worker', '--module', file, '--exclude-participants', 'payment'], {}, /^(\{"event":"worker-ready".*)$/m);
      expect(JSON.parse(match[1]!), file).toMatchObject({ role: 'all', participants: ['stock', 'shipping'] });
      expect(await proc.stop(), proc.stderr()).toBe(0);
    }
  });

  it("a module outside the project shares the worker's classes: the SagaflowError it throws is recognised as one (exit 2, not 1)", async () => {
    // tsx's tsImport would load the file in a module graph of its own, with its own copy of
    // sagaflow's classes: the CLI would see an unknown error (exit 1) instead of a usage error.
    const dir = join(tmp, 'outside-identity');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"type":"commonjs"}');
    writeFileSync(
      join(dir, 'module.ts'),
      `import { UsageError } from ${JSON.stringify(join(root, 'src/errors.ts'))};\nexport default (): never => { throw new UsageError('refused by the module itself'); };\n`,
    );
    const r = await cli('worker', '--module', join(dir, 'module.ts'));
    expectCleanFailure(r, 2, /^sagaflow: refused by the module itself$/, { oneLine: true });
  });
});
