/**
 * The embedded demo as a user runs it (`npx tsx examples/order/demo.ts --orders 200 --quiet`, a
 * child process with its own schemas): its summary line reports 180 completed and 20 compensated
 * orders (every 10th fails at shipping), and the example's `effects` ledger proves each effect was
 * applied exactly once: a completed order has one reserve, charge and ship and no release or
 * refund; a compensated one has one reserve, release, charge and refund and no ship.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db/db.js';
import { databaseUrl, uniqueName } from '../helpers/db.js';

const root = new URL('../..', import.meta.url).pathname;
const schema = uniqueName('sf_demo');
const exampleSchema = uniqueName('sf_demo_ex');
let db: Db;

beforeAll(() => {
  db = createDb({ connectionString: databaseUrl(), max: 2, applicationName: `sf-demo-test-${schema}` });
});

afterAll(async () => {
  await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await db.close();
});

function runDemo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl(),
    SAGAFLOW_SCHEMA: schema,
    ORDER_EXAMPLE_SCHEMA: exampleSchema,
    SAGAFLOW_TRANSPORT: 'memory',
    LOG_LEVEL: 'warn',
  };
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('npx', ['tsx', 'examples/order/demo.ts', ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

describe('examples/order/demo.ts', () => {
  it('200 orders: 180 completed, 20 compensated, 0 failed, and every effect applied exactly once', async () => {
    const run = await runDemo(['--orders', '200', '--quiet']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    const summary = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    console.log(`[demo] ${lines.at(-1)} (process ran ${run.ms} ms)`);
    expect(summary).toMatchObject({ orders: 200, completed: 180, compensated: 20, failed: 0 });

    const { rows: sagas } = await db.query<{ order_id: string; status: string }>(
      `SELECT data->>'orderId' AS order_id, status FROM "${schema}".sagas WHERE saga_type = 'order'`,
    );
    expect(sagas).toHaveLength(200);
    const { rows: effects } = await db.query<{ order_id: string; kind: string; n: number }>(
      `SELECT order_id, kind, count(*)::int AS n FROM "${exampleSchema}".effects GROUP BY order_id, kind`,
    );
    const ledger = new Map<string, Record<string, number>>();
    for (const e of effects) ledger.set(e.order_id, { ...ledger.get(e.order_id), [e.kind]: e.n });
    // No effect for an order the demo did not place.
    expect([...ledger.keys()].every((o) => sagas.some((s) => s.order_id === o))).toBe(true);

    const want: Record<string, Record<string, number>> = {
      completed: { reserve: 1, charge: 1, ship: 1 },
      compensated: { reserve: 1, release: 1, charge: 1, refund: 1 },
    };
    let checked = 0;
    for (const s of sagas) {
      expect(Object.keys(want)).toContain(s.status);
      expect(ledger.get(s.order_id) ?? {}, `${s.order_id} (${s.status})`).toEqual(want[s.status]);
      checked++;
    }
    expect(checked).toBe(200);
    // The compensated ones are exactly the orders told to fail at shipping (every 10th).
    const compensated = sagas.filter((s) => s.status === 'compensated').map((s) => Number(s.order_id.split('-').at(-1)));
    expect(compensated.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i * 10 + 9));
  });
});
