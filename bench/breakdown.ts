/**
 * `npm run bench -- --breakdown`: where a saga's latency goes, hop by hop, and which process burns
 * the CPU. The workers run with SAGAFLOW_LATENCY_PROBE=1: they time each hop of a message's life
 * (broker publish -> delivery, the wait for a batch slot, connect+BEGIN, every statement of the
 * transaction, COMMIT, what follows the COMMIT, the publish confirm, the handler as a whole, the
 * turn to the ack) into histograms and print them in their `worker-stopped` line; the publish time
 * travels in a header (wall clock, sub-millisecond; all processes share this host's clock). CPU of
 * every process comes from /proc/<pid>/stat: the workers, the Postgres processes serving this run
 * (backends whose last query names the bench schema, plus the background processes), the broker
 * (beam.smp / the Kafka JVM) and the bench itself.
 */
import { readFileSync, readdirSync } from 'node:fs';
import type { Db } from '../src/db/db.js';
import { PROBE_SENT_HEADER, mergeSnapshots, quantile, wallMs, type ProbeSnapshot } from '../src/observability/latency-probe.js';
import type { OutgoingMessage } from '../src/transport/contract.js';
import type { BenchWorker } from './procs.js';

const TICKS = 100; // USER_HZ on Linux

/** The env var that turns the workers' probe on. */
export const PROBE_VARS = { SAGAFLOW_LATENCY_PROBE: '1' } as const;

/** A start command stamped with its publish time, so its first hop is measured too. */
export function stamped<M extends OutgoingMessage>(m: M): M {
  return { ...m, headers: { ...m.headers, [PROBE_SENT_HEADER]: String(wallMs()) } };
}

function procCpu(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS;
  } catch {
    return undefined;
  }
}

/** Pids whose command line matches (the broker: beam.smp for RabbitMQ, the Kafka JVM). */
function pidsMatching(test: (cmdline: string) => boolean): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (test(readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' '))) out.push(Number(d));
    } catch {
      // gone already
    }
  }
  return out;
}

type CpuSample = Map<string, Map<number, number>>;

export class Breakdown {
  #start: { wall: number; cpu: CpuSample } | undefined;
  #cpuPct = new Map<string, number>();

  constructor(
    private readonly deps: { transport: string; db: Db; schema: string; workers: () => readonly BenchWorker[] },
  ) {}

  async #groups(): Promise<Map<string, number[]>> {
    const g = new Map<string, number[]>();
    for (const w of this.deps.workers()) if (w.child?.pid) g.set(w.role === 'orchestrator' ? 'orchestrator' : 'participants', [...(g.get(w.role === 'orchestrator' ? 'orchestrator' : 'participants') ?? []), w.child.pid]);
    const { rows } = await this.deps.db.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend' OR query LIKE $1 OR application_name = 'sagaflow-bench'`,
      [`%"${this.deps.schema}"%`],
    );
    g.set('postgres', rows.map((r) => r.pid));
    g.set('broker', this.deps.transport === 'kafka' ? pidsMatching((c) => c.startsWith('java ') && /kafka/i.test(c)) : pidsMatching((c) => c.includes('beam.smp')));
    g.set('bench', [process.pid]);
    return g;
  }

  async #sample(): Promise<CpuSample> {
    const s: CpuSample = new Map();
    for (const [name, pids] of await this.#groups()) s.set(name, new Map(pids.map((p) => [p, procCpu(p) ?? 0])));
    return s;
  }

  /** Call once the phase's workers run. */
  async begin(): Promise<void> {
    this.#start = { wall: performance.now(), cpu: await this.#sample() };
  }

  /** Call at the end of the phase, before the workers stop (their /proc entries go with them). */
  async end(): Promise<void> {
    const start = this.#start;
    if (!start) return;
    const seconds = (performance.now() - start.wall) / 1000;
    const now = await this.#sample();
    this.#cpuPct.clear();
    for (const [name, pids] of now) {
      let used = 0;
      // A Postgres backend that appeared during the phase counts from zero.
      for (const [pid, cpu] of pids) used += cpu - (start.cpu.get(name)?.get(pid) ?? 0);
      this.#cpuPct.set(name, (100 * used) / seconds);
    }
  }

  /** Prints the tables to stderr (stdout keeps its one JSON line); call after the workers stopped. */
  report(label: string, sagas: number): { hops: Record<string, { count: number; p50: number; p99: number; mean: number }>; cpuPct: Record<string, number> } {
    const merged = mergeSnapshots(this.deps.workers().map((w) => (w.stats as { latency?: ProbeSnapshot } | undefined)?.latency ?? {}));
    const hops: Record<string, { count: number; p50: number; p99: number; mean: number }> = {};
    const lines = [`\nlatency breakdown, ${label} (${sagas} sagas; per hop: p50 / p99 / mean ms, and the hop's total per saga)`];
    lines.push(`${'hop'.padEnd(58)} ${'count'.padStart(7)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'mean'.padStart(8)} ${'ms/saga'.padStart(8)}`);
    for (const hop of Object.keys(merged).sort(hopOrder)) {
      const h = merged[hop]!;
      const row = { count: h.count, p50: quantile(h, 50), p99: quantile(h, 99), mean: h.sum / h.count };
      hops[hop] = row;
      const perSaga = hop.includes('not ms') ? '' : ((row.mean * row.count) / sagas).toFixed(2);
      lines.push(`${hop.padEnd(58)} ${String(row.count).padStart(7)} ${fmt(row.p50)} ${fmt(row.p99)} ${fmt(row.mean)} ${perSaga.padStart(8)}`);
    }
    const cpuPct = Object.fromEntries([...this.#cpuPct].map(([k, v]) => [k, Math.round(v)]));
    lines.push(`CPU % of one core, ${label}: ${Object.entries(cpuPct).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    process.stderr.write(`${lines.join('\n')}\n`);
    return { hops, cpuPct };
  }
}

function fmt(ms: number): string {
  return (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2)).padStart(8);
}

/** Orchestrator hops first, participants next, each in the order of a message's life. */
const ORDER: readonly [string, number][] = [
  ['broker', 0], ['wait', 1], ['batch size', 2], ['round trips', 2], ['connect', 3], ['worker CPU', 4], ['after COMMIT', 7], ['COMMIT', 6], ['tx ', 5],
  ['delivered ->', 8], ['resolved', 9], ['publish ->', 10],
];
function hopOrder(a: string, b: string): number {
  const rank = (h: string) => (h.startsWith('saga') ? 0 : h.startsWith('participant') ? 100 : 200) + (ORDER.find(([k]) => h.includes(k))?.[1] ?? 50);
  return rank(a) - rank(b) || a.localeCompare(b);
}
