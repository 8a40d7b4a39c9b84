import type { Db, Tx } from '../db/db.js';

/**
 * Per-hop latency histograms for `npm run bench -- --breakdown`. Off by default: a worker makes one
 * only when SAGAFLOW_LATENCY_PROBE=1, and every hook on the message path is behind `probe?.`, so a
 * normal worker does no timing work at all. The histograms leave the process in the worker's
 * `worker-stopped` stats line and the bench merges those of all processes.
 */

/** The header a probing publisher stamps with its wall-clock publish time (ms, fractional). */
export const PROBE_SENT_HEADER = 'x-sagaflow-probe-sent';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one host. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Log buckets 2 % wide from 1 us: p50/p99 to 2 %, a few hundred buckets for any hop. */
const BASE = 0.001;
const GROWTH = Math.log(1.02);

export interface HistogramSnapshot {
  readonly count: number;
  readonly sum: number;
  /** [bucket, count] pairs; bucket b covers [BASE*1.02^b, BASE*1.02^(b+1)) ms. */
  readonly buckets: readonly (readonly [number, number])[];
}

export type ProbeSnapshot = Record<string, HistogramSnapshot>;

class Histogram {
  count = 0;
  sum = 0;
  readonly buckets = new Map<number, number>();
  add(ms: number): void {
    const b = ms <= BASE ? 0 : Math.floor(Math.log(ms / BASE) / GROWTH);
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + 1);
    this.count++;
    this.sum += ms;
  }
}

export class LatencyProbe {
  readonly #hops = new Map<string, Histogram>();

  record(hop: string, ms: number): void {
    let h = this.#hops.get(hop);
    if (!h) this.#hops.set(hop, (h = new Histogram()));
    h.add(Math.max(0, ms));
  }

  snapshot(): ProbeSnapshot {
    const out: Record<string, HistogramSnapshot> = {};
    for (const [hop, h] of this.#hops) out[hop] = { count: h.count, sum: h.sum, buckets: [...h.buckets] };
    return out;
  }
}

/** Merges snapshots of several processes (the bench's orchestrator and participants). */
export function mergeSnapshots(snaps: readonly ProbeSnapshot[]): ProbeSnapshot {
  const acc = new Map<string, { count: number; sum: number; buckets: Map<number, number> }>();
  for (const s of snaps) {
    for (const [hop, h] of Object.entries(s)) {
      let a = acc.get(hop);
      if (!a) acc.set(hop, (a = { count: 0, sum: 0, buckets: new Map() }));
      a.count += h.count;
      a.sum += h.sum;
      for (const [b, c] of h.buckets) a.buckets.set(b, (a.buckets.get(b) ?? 0) + c);
    }
  }
  const out: Record<string, HistogramSnapshot> = {};
  for (const [hop, a] of acc) out[hop] = { count: a.count, sum: a.sum, buckets: [...a.buckets] };
  return out;
}

/** The p-th percentile (0-100) of a snapshot, as the upper edge of its bucket. */
export function quantile(h: HistogramSnapshot, p: number): number {
  if (h.count === 0) return NaN;
  const rank = Math.ceil((p / 100) * h.count);
  let seen = 0;
  for (const [b, c] of [...h.buckets].sort((x, y) => x[0] - y[0])) {
    seen += c;
    if (seen >= rank) return b === 0 ? BASE : BASE * Math.exp((b + 1) * GROWTH);
  }
  return NaN;
}

/** Where a probed transaction's phases ended (so the caller can time what follows the COMMIT). */
export interface TxMarks {
  committedAt: number;
}

/**
 * A Db whose transactions time connect+BEGIN, each statement (labelled by its first words, the
 * schema left out) and COMMIT. Only the probing worker wraps its Db this way.
 */
export function probedDb(db: Db, probe: LatencyProbe, marks: TxMarks, prefix: string): Db {
  const transaction: Db['transaction'] = async (fn, opts) => {
    const t0 = performance.now();
    let last = t0;
    let first = true;
    // Round trips: a statement issued while none is in flight waits for an answer of its own
    // (pipelined ones share the trip); BEGIN rides with the first statement, COMMIT is one more.
    let inFlight = 0;
    let trips = 1;
    let commitRode = false;
    const result = await db.transaction(async (tx) => {
      const t = performance.now();
      probe.record(`${prefix} tx connect+BEGIN`, t - t0);
      last = t;
      const timedQuery = async (text: string, values: readonly unknown[] | undefined, andCommit: boolean) => {
        const s = performance.now();
        // The gap before a statement is the worker's own CPU (building the next statement).
        if (!first && inFlight === 0) probe.record(`${prefix} tx worker CPU between statements`, s - last);
        if (!first && inFlight === 0) trips++;
        first = false;
        inFlight++;
        if (andCommit) commitRode = true;
        const r = await (andCommit ? tx.queryAndCommit(text, values) : tx.query(text, values)).finally(() => inFlight--);
        last = performance.now();
        probe.record(`${prefix} tx ${statementLabel(text)}${andCommit ? ' (+COMMIT sent with it)' : ''}`, last - s);
        return r as never;
      };
      const timed: Tx = {
        query: (text, values) => timedQuery(text, values, false),
        queryAndCommit: (text, values) => timedQuery(text, values, true),
      };
      return fn(timed);
    }, opts);
    marks.committedAt = performance.now();
    // A COMMIT sent with the last statement shares its round trip.
    probe.record(`${prefix} tx round trips incl. COMMIT (count, not ms)`, commitRode ? trips : trips + 1);
    probe.record(`${prefix} tx COMMIT (+CPU after last statement)`, marks.committedAt - last);
    return result;
  };
  return { ...db, transaction };
}

/** "INSERT INTO "s".inbox ..." -> "INSERT inbox"; enough to tell the statements of a batch apart. */
export function statementLabel(text: string): string {
  const words = text
    .replace(/"[a-z0-9_]+"\./g, '')
    .replace(/\s+/g, ' ')
    .trim()
    .split(' ');
  const verb = (words[0] ?? '').toUpperCase();
  if (verb === 'WITH') return `WITH ${words[1] ?? ''}`.slice(0, 40);
  const table = words.findIndex((w, i) => i > 0 && /^(INTO|FROM|UPDATE)$/i.test(w));
  if (verb === 'UPDATE') return `UPDATE ${words[1] ?? ''}`;
  return table > 0 ? `${verb} ${words[table + 1] ?? ''}`.slice(0, 40) : words.slice(0, 3).join(' ').slice(0, 40);
}
