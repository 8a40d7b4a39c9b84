/**
 * `sagaflow dev --module examples/order` as a user runs it: one child process with no
 * DATABASE_URL (so an embedded PostgreSQL) and the memory transport. The test reads the ready line,
 * publishes an order the way a user would (POST /v1/messages with the printed one-time token: with
 * the memory transport only the dev process itself can carry it), polls the saga until it is
 * completed, sends SIGINT and expects a clean exit with the embedded server's process gone.
 *
 * And the other side of the rule: a production command (`sagaflow migrate`) with no DATABASE_URL
 * and the machine's Postgres out of reach fails naming Postgres, starting no embedded database.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive } from '../../src/local/embedded-postgres.js';
import { waitFor } from '../helpers/wait.js';

const root = new URL('../..', import.meta.url).pathname;
const base = mkdtempSync(join(tmpdir(), 'sf-dev-'));
chmodSync(base, 0o755); // as root the server runs as the postgres user, which must enter it
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(base, { recursive: true, force: true });
});

function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, SAGAFLOW_EMBEDDED_PG_DIR: base, LOG_LEVEL: 'warn', ORDER_EXAMPLE_SCHEMA: 'order_example' };
  delete e.DATABASE_URL;
  delete e.SAGAFLOW_TRANSPORT;
  delete e.SAGAFLOW_SCHEMA;
  return e;
}

interface Ready {
  url: string;
  token: string;
  transport: string;
  database: { embedded: boolean; port: number; dataDir: string; pid: number; cold: boolean; startMs: number };
}

describe('sagaflow dev', () => {
  it('starts everything, runs an order published through its admin API, and stops cleanly on SIGINT', async () => {
    const child = spawn(process.execPath, ['bin/sagaflow.js', 'dev', '--module', 'examples/order', '--port', '0'], { cwd: root, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));

    const readyLine = await waitFor(
      'the dev-ready line',
      () => {
        if (child.exitCode !== null) throw new Error(`dev exited ${child.exitCode}: ${stderr}`);
        return stdout.split('\n').find((l) => l.includes('"event":"dev-ready"'));
      },
      (line) => line !== undefined,
      { timeoutMs: 120_000, intervalMs: 50 },
    );
    const ready = JSON.parse(readyLine!) as Ready;
    console.log(`[dev] ready: ${ready.url}, embedded PostgreSQL on ${ready.database.port} (${ready.database.cold ? 'cold' : 'warm'} ${ready.database.startMs} ms)`);
    expect(ready.transport).toBe('memory');
    expect(ready.database).toMatchObject({ embedded: true, dataDir: join(base, 'slot-1', 'data') });
    expect(stdout).toContain(`embedded PostgreSQL`);
    expect(stdout).toContain(`token for this run only: ${ready.token}`);

    const headers = { authorization: `Bearer ${ready.token}`, 'content-type': 'application/json' };
    const bad = await fetch(`${ready.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify({ type: 'PlaceOrder', payload: { orderId: 'x' } }) });
    expect(bad.status).toBe(400);
    const unknown = await fetch(`${ready.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify({ type: 'NoSuchType', payload: {} }) });
    expect(unknown.status).toBe(400);
    const replyType = await fetch(`${ready.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify({ type: 'StockReserved', payload: {} }) });
    expect(replyType.status).toBe(400);
    const noToken = await fetch(`${ready.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(noToken.status).toBe(401);

    const order = { orderId: 'dev-order-1', customerId: 'c-1', items: [{ sku: 'sku-1', qty: 2 }], amountCents: 1500 };
    const res = await fetch(`${ready.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify({ type: 'PlaceOrder', payload: order }) });
    expect(res.status).toBe(202);
    const { sagaId } = (await res.json()) as { sagaId: string };
    const saga = await waitFor(
      'the saga to complete',
      async () => {
        const r = await fetch(`${ready.url}/v1/sagas/${sagaId}`, { headers });
        return r.status === 200 ? ((await r.json()) as { status: string; steps: { step: string }[] }) : undefined;
      },
      (s) => s?.status === 'completed',
      { timeoutMs: 60_000 },
    );
    expect(saga!.steps.map((s) => s.step)).toEqual(expect.arrayContaining(['reserveStock', 'chargePayment', 'shipOrder']));

    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(0);
    expect(stdout).toContain(`embedded PostgreSQL on port ${ready.database.port} stopped`);
    expect(alive(ready.database.pid)).toBe(false);
    expect(existsSync(join(ready.database.dataDir, 'postmaster.pid'))).toBe(false);
  }, 240_000);

  it.skipIf(process.getuid?.() !== 0)('production commands never start an embedded database', async () => {
    const other = mkdtempSync(join(tmpdir(), 'sf-dev-none-'));
    try {
      const child = spawn('unshare', ['-n', 'bash', '-c', 'ip link set lo up && exec node bin/sagaflow.js migrate'], {
        cwd: root,
        env: { ...env(), SAGAFLOW_EMBEDDED_PG_DIR: other },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
      expect(code).not.toBe(0);
      expect(stderr).toMatch(/Postgres/);
      expect(readdirSync(other)).toEqual([]);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  }, 60_000);
});
