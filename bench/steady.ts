/**
 * The long run (`--steady`): N sagas published at a fixed rate for the whole run (open loop, like
 * the half-load phase, latency from each saga's scheduled start), reported per window of completed
 * sagas, with the hot tables' sizes at the start, after each window and at the end. With short
 * `SAGAFLOW_RETAIN_*` windows and `--prune-seconds`, the bench runs `prune()` the way a cron job runs
 * `sagaflow prune`, so the run shows whether retention keeps the tables bounded.
 */
import type { Db } from '../src/db/db.js';
import type { OutgoingMessage, Transport } from '../src/transport/contract.js';
import { prune, type PruneResult, type RetentionPolicy } from '../src/ops/retention.js';
import { quoteSchema } from '../src/db/db.js';
import { HOT_TABLES, formatTableSizes, tableSizes, type TableSizes } from './tables.js';

export interface SteadyOptions {
  readonly n: number;
  /** Sagas started per second. */
  readonly rate: number;
  /** Completed sagas per reported window. */
  readonly window: number;
  /** Run prune() every this many seconds; 0: never. */
  readonly pruneSeconds: number;
  readonly retention: RetentionPolicy;
  /**
   * VACUUM the hot tables after each prune round, as an operator must where autovacuum is off:
   * pruned rows only give their space back to a vacuum.
   */
  readonly vacuum: boolean;
}

export interface SteadyDeps {
  readonly db: Db;
  readonly schema: string;
  readonly transport: Transport;
  /** The i-th start command of the run. */
  message(i: number): OutgoingMessage & { key: string };
  /** Start time of each saga by saga id: the bench's events listener reads it. */
  readonly sent: Map<string, number>;
  /** Installs the listener the bench's events subscription calls for every terminal saga. */
  onTerminal(listener: (latencyMs: number) => void): void;
  /** Worker CPU seconds so far. */
  cpu(): number;
  progress(line: string): void;
}

export interface SteadyWindow {
  readonly index: number;
  readonly sagas: number;
  readonly seconds: number;
  readonly sagasPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuSecPer1000: number;
  readonly tables: TableSizes;
}

export interface SteadyResult {
  readonly rate: number;
  readonly sagas: number;
  readonly seconds: number;
  readonly windows: readonly SteadyWindow[];
  readonly start: TableSizes;
  readonly end: TableSizes;
  readonly pruned: PruneResult;
  /** The server's `autovacuum` setting: with it off, pruned rows stay as dead rows and the tables grow in bytes. */
  readonly autovacuum: string;
  /** Largest deviation of a window's throughput / p99 from the run's median window, in percent. */
  readonly spreadPct: { sagasPerSec: number; p99Ms: number };
}

export async function steadyRun(d: SteadyDeps, o: SteadyOptions): Promise<SteadyResult> {
  const autovacuum = (await d.db.query<{ autovacuum: string }>('SHOW autovacuum')).rows[0]!.autovacuum;
  const start = await tableSizes(d.db, d.schema);
  const windows: SteadyWindow[] = [];
  const pending: Promise<void>[] = [];
  let current: number[] = [];
  let done = 0;
  let windowIndex = 0;
  const t0 = performance.now();
  let windowStart = t0;
  let cpuAtWindow = d.cpu();

  const closeWindow = (): void => {
    const now = performance.now();
    const sorted = current.sort((x, y) => x - y);
    const cpuNow = d.cpu();
    const partial = {
      index: windowIndex++,
      sagas: sorted.length,
      seconds: (now - windowStart) / 1000,
      p50Ms: pct(sorted, 50),
      p99Ms: pct(sorted, 99),
      cpuSecPer1000: ((cpuNow - cpuAtWindow) / sorted.length) * 1000,
    };
    windowStart = now;
    cpuAtWindow = cpuNow;
    current = [];
    pending.push(
      tableSizes(d.db, d.schema).then((tables) => {
        windows.push({ ...partial, sagasPerSec: partial.sagas / partial.seconds, tables });
      }),
    );
  };
  d.onTerminal((ms) => {
    current.push(ms);
    done++;
    if (current.length >= o.window || done === o.n) closeWindow();
  });

  const pruned: PruneResult = { sagas: 0, saga_steps: 0, inbox: 0, dead_letters: 0, audit_log: 0 };
  let pruning: Promise<void> | undefined;
  const pruneTimer =
    o.pruneSeconds > 0
      ? setInterval(() => {
          pruning ??= prune(d.db, d.schema, { policy: o.retention })
            .then(async (r) => {
              for (const k of Object.keys(r) as (keyof PruneResult)[]) pruned[k] += r[k];
              if (o.vacuum) for (const t of HOT_TABLES) await d.db.query(`VACUUM ${quoteSchema(d.schema)}.${t}`);
            })
            // A failed round is said, never hidden: the table sizes below would otherwise mislead.
            .catch((err: unknown) => void process.stderr.write(`[bench steady] prune round failed: ${err instanceof Error ? err.message : String(err)}\n`))
            .finally(() => (pruning = undefined));
        }, o.pruneSeconds * 1000)
      : undefined;

  // Open loop: whatever is due by the clock is published, however the last publish went.
  const publishes: Promise<void>[] = [];
  let published = 0;
  while (published < o.n) {
    const due = Math.min(o.n, Math.floor(((performance.now() - t0) / 1000) * o.rate) + 1);
    const batch: OutgoingMessage[] = [];
    for (; published < due; published++) {
      const m = d.message(published);
      d.sent.set(m.key, t0 + (published / o.rate) * 1000);
      batch.push(m);
    }
    if (batch.length > 0) publishes.push(d.transport.publisher.publish(batch));
    d.progress(`steady ${o.rate}/s: ${published}/${o.n} published, ${done} ended, ${windows.length} windows`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(publishes);
  const deadline = Date.now() + 120_000;
  while (done < o.n) {
    if (Date.now() > deadline) throw new Error(`steady run: only ${done}/${o.n} sagas ended within 2 minutes of the last publish`);
    d.progress(`steady ${o.rate}/s: all published, ${done}/${o.n} ended`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(pruneTimer);
  await pruning;
  await Promise.all(pending);
  windows.sort((x, y) => x.index - y.index);
  const end = await tableSizes(d.db, d.schema);
  // The last window may be short (N not a multiple of the window): judged with the others only if full.
  const full = windows.filter((w) => w.sagas === o.window);
  const judged = full.length > 0 ? full : windows;
  return {
    rate: o.rate,
    sagas: o.n,
    seconds,
    windows,
    start,
    end,
    pruned,
    autovacuum,
    spreadPct: { sagasPerSec: spread(judged.map((w) => w.sagasPerSec)), p99Ms: spread(judged.map((w) => w.p99Ms)) },
  };
}

/** A table of the windows and of the table sizes, for the terminal. */
export function formatSteady(r: SteadyResult): string {
  const rows = r.windows.map(
    (w) =>
      `${String(w.index + 1).padStart(6)} ${String(w.sagas).padStart(7)} ${w.seconds.toFixed(1).padStart(8)} ${w.sagasPerSec.toFixed(0).padStart(9)} ` +
      `${w.p50Ms.toFixed(0).padStart(8)} ${w.p99Ms.toFixed(0).padStart(8)} ${w.cpuSecPer1000.toFixed(2).padStart(9)}\n`,
  );
  const snaps = [{ label: 'start', sizes: r.start }, ...r.windows.map((w) => ({ label: `after window ${w.index + 1}`, sizes: w.tables })), { label: 'end', sizes: r.end }];
  return (
    `steady run: ${r.sagas} sagas at ${r.rate}/s in ${r.seconds.toFixed(1)} s\n` +
    `window   sagas  seconds  sagas/s  p50 ms  p99 ms  cpu/1000\n${rows.join('')}` +
    `largest deviation from the median window: throughput ${r.spreadPct.sagasPerSec}%, p99 ${r.spreadPct.p99Ms}%\n` +
    `pruned: ${JSON.stringify(r.pruned)}\n` +
    (r.autovacuum === 'on' ? '' : `autovacuum is ${r.autovacuum} on this server: pruned rows stay dead until a VACUUM (--vacuum runs one after each prune)\n`) +
    `hot tables (rows / total size / dead rows):\n${formatTableSizes(snaps)}`
  );
}

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Largest |x - median| / median over the values, in percent. */
function spread(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const median = s[Math.floor(s.length / 2)]!;
  return Math.round((Math.max(...xs.map((x) => Math.abs(x - median))) / median) * 1000) / 10;
}
