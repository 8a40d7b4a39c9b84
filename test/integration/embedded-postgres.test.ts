/**
 * The embedded PostgreSQL's failure modes: where its data goes (root's closed home is avoided), a
 * directory the server's user cannot enter (a clear error, no half-made cluster), and a development
 * process killed with SIGKILL, whose server outlives it: the next start stops that orphan and takes
 * its data directory over instead of failing on the lock or leaking a server per crash.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, embeddedBaseDir, startEmbeddedPostgres } from '../../src/local/embedded-postgres.js';

const root = new URL('../..', import.meta.url).pathname;
const isRoot = process.getuid?.() === 0;
const dirs: string[] = [];
function tempDir(mode: number): string {
  const d = mkdtempSync(join(tmpdir(), 'sf-embedded-'));
  chmodSync(d, mode);
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('embedded PostgreSQL', () => {
  it('keeps its data under the user cache, or SAGAFLOW_EMBEDDED_PG_DIR; as root not under a home others cannot enter', () => {
    expect(embeddedBaseDir({ SAGAFLOW_EMBEDDED_PG_DIR: '/srv/pg' })).toBe('/srv/pg');
    expect(embeddedBaseDir({ XDG_CACHE_HOME: '/tmp/cache' }, false)).toBe('/tmp/cache/sagaflow/postgres');
    const closed = tempDir(0o700);
    expect(embeddedBaseDir({ XDG_CACHE_HOME: join(closed, 'cache') }, true)).toBe('/var/cache/sagaflow/postgres');
  });

  it.skipIf(!isRoot)('as root, refuses a directory the postgres user cannot enter, saying what to do', async () => {
    const closed = tempDir(0o700);
    await expect(startEmbeddedPostgres({ baseDir: closed })).rejects.toThrow(/cannot reach .*SAGAFLOW_EMBEDDED_PG_DIR/);
  });

  it('a server left running by a SIGKILLed process is stopped and its data directory reused', async () => {
    const base = tempDir(0o755);
    const script = `const { startEmbeddedPostgres } = await import(${JSON.stringify(join(root, 'src/local/embedded-postgres.ts'))});
      const pg = await startEmbeddedPostgres({ baseDir: ${JSON.stringify(base)} });
      console.log(JSON.stringify({ pid: pg.pid, dataDir: pg.dataDir }));
      setInterval(() => {}, 1000);`;
    const file = join(tempDir(0o755), 'owner.mts');
    writeFileSync(file, script);
    // node itself (not the tsx wrapper, which runs the script in a child): SIGKILL hits the owner.
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const first = await new Promise<{ pid: number; dataDir: string }>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line) as { pid: number; dataDir: string });
      });
      child.on('close', (code) => reject(new Error(`child exited ${code}: ${err}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    expect(alive(first.pid)).toBe(true); // the orphan

    const second = await startEmbeddedPostgres({ baseDir: base });
    try {
      expect(second.dataDir).toBe(first.dataDir);
      expect(second.cold).toBe(false);
      expect(alive(first.pid)).toBe(false);
    } finally {
      await second.stop();
    }
    expect(alive(second.pid)).toBe(false);
  }, 120_000);
});
