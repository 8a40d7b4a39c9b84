/**
 * Start times of the embedded PostgreSQL (src/local/embedded-postgres.ts): cold (a fresh data
 * directory: initdb, then the server) and warm (the kept directory: the server only), each until
 * it accepts a connection, plus the stop. Prints figures; asserts nothing.
 * `npx tsx bench/embedded-postgres.ts [warm runs, default 3]`
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres } from '../src/local/embedded-postgres.js';

const warmRuns = Number(process.argv[2] ?? 3);
const base = mkdtempSync(join(tmpdir(), 'sf-bench-embedded-'));
chmodSync(base, 0o755); // as root the server runs as the postgres user
try {
  const lines: string[] = [];
  for (let i = 0; i <= warmRuns; i++) {
    const pg = await startEmbeddedPostgres({ baseDir: base });
    const t = performance.now();
    await pg.stop();
    lines.push(`${pg.cold ? 'cold' : 'warm'} start ${pg.startMs} ms, stop ${(performance.now() - t).toFixed(0)} ms (PostgreSQL ${pg.version}, port ${pg.port})`);
  }
  console.log(lines.join('\n'));
} finally {
  rmSync(base, { recursive: true, force: true });
}
