/**
 * The first command of the README on a machine with only Node: `npm run demo` with no DATABASE_URL
 * starts an embedded PostgreSQL from the npm package and still ends with 180/20/0.
 *
 * The machine's own PostgreSQL must be out of the demo's reach, or the test would prove nothing:
 * the demo runs in a fresh network namespace (`unshare -n`, only `lo` up), where 127.0.0.1:5432
 * answers nothing (checked first, inside the namespace) and only the embedded server listens. The
 * embedded one is proved used by its port and data directory in the demo's output and by the data
 * directory it left behind. Two runs: the first cold (initdb), the second warm.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = new URL('../..', import.meta.url).pathname;
const base = mkdtempSync(join(tmpdir(), 'sf-embedded-demo-'));
const isRoot = process.getuid?.() === 0;
// As root the server runs as the postgres user, which must be able to enter the base directory.
chmodSync(base, 0o755);

afterAll(() => rmSync(base, { recursive: true, force: true }));

function demoInNamespace(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, SAGAFLOW_EMBEDDED_PG_DIR: base, SAGAFLOW_TRANSPORT: 'memory', LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  const script = [
    'ip link set lo up',
    // The machine's PostgreSQL must not answer here; the probe's result is printed for the test.
    'if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then echo "probe: 127.0.0.1:5432 REACHABLE" >&2; exit 97; fi',
    'echo "probe: 127.0.0.1:5432 unreachable" >&2',
    'exec node_modules/.bin/tsx examples/order/demo.ts --orders 200 --quiet',
  ].join(' && ');
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['-n', 'bash', '-c', script], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe.skipIf(!isRoot)('npm run demo without DATABASE_URL (machine PostgreSQL unreachable)', () => {
  it('uses the embedded PostgreSQL, cold then warm, and ends 180/20/0 both times', async () => {
    const starts: { cold: boolean; ms: number }[] = [];
    for (const expectCold of [true, false]) {
      const run = await demoInNamespace();
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain('probe: 127.0.0.1:5432 unreachable');
      const m = /embedded PostgreSQL \S+ on 127\.0\.0\.1:(\d+), data in (\S+) \((cold|warm) start (\d+) ms/.exec(run.stderr);
      expect(m, run.stderr).not.toBeNull();
      const [, port, dataDir, kind, ms] = m!;
      expect(Number(port)).not.toBe(5432);
      expect(dataDir).toBe(join(base, 'slot-1', 'data'));
      expect(kind).toBe(expectCold ? 'cold' : 'warm');
      // The demo's tables are in that data directory, and the server was stopped at exit.
      expect(existsSync(join(dataDir!, 'PG_VERSION'))).toBe(true);
      expect(existsSync(join(dataDir!, 'postmaster.pid'))).toBe(false);
      const summary = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
      expect(summary).toMatchObject({ orders: 200, completed: 180, compensated: 20, failed: 0 });
      starts.push({ cold: kind === 'cold', ms: Number(ms) });
      console.log(`[embedded-demo] ${kind} start ${ms} ms on port ${port}; ${run.stdout.trim()}`);
    }
    expect(starts.map((s) => s.cold)).toEqual([true, false]);
  }, 320_000);
});
