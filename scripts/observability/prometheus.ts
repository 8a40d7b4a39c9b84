/**
 * A local Prometheus (Debian's package `prometheus`, installed by scripts/observability/install.sh)
 * for tests and development: a generated config scraping the targets the caller names every second,
 * its TSDB in a temp dir, the HTTP API on a free loopback port.
 *
 * Prometheus applies new scrape targets on a fixed 5 s tick of its scrape manager (not
 * configurable in 2.42): /-/ready answers within a second, the first scrape follows up to ~5 s
 * later. waitForTargetsUp() waits for that first scrape.
 */
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getJson, httpGet, launchLocalServer, type LocalServer, type LocalServerOptions } from './server-process.js';

export interface ScrapeJob {
  /** Becomes the `job` label of every series scraped from these targets. */
  job: string;
  /** `host:port` of each target; loopback only unless allowNonLoopbackTargets is set. */
  targets: string[];
  /** Default `/metrics`. */
  metricsPath?: string;
  /** Extra labels on every series of this job. */
  labels?: Record<string, string>;
}

export interface PrometheusOptions extends LocalServerOptions {
  scrapeJobs: ScrapeJob[];
  /** scrape_interval (and evaluation_interval). Default 1000 ms, so tests see a new value within seconds. */
  scrapeIntervalMs?: number;
  /** Default: env SAGAFLOW_PROMETHEUS_BIN, else `prometheus` on PATH. */
  binary?: string;
  /**
   * Targets other than loopback are refused by default: tests talk only to this machine. Set it only
   * for hosts the caller created itself (a network namespace, a container on the engine's bridge).
   */
  allowNonLoopbackTargets?: boolean;
}

export interface PrometheusServer extends LocalServer {
  readonly configFile: string;
  query(promql: string, at?: Date): Promise<PromSample[]>;
  targets(): Promise<PromTarget[]>;
  /** Waits until every configured target has been scraped and is `up`; fails quoting the scrape errors. */
  waitForTargetsUp(timeoutMs?: number): Promise<PromTarget[]>;
}

export interface PromSample {
  metric: Record<string, string>;
  value: number;
  /** Evaluation time, seconds since the epoch. */
  timestamp: number;
}

export interface PromTarget {
  job: string;
  scrapeUrl: string;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
  lastScrape: string;
}

export function prometheusBinary(): string {
  return process.env.SAGAFLOW_PROMETHEUS_BIN || 'prometheus';
}

/** The binary's version line, or why there is none (for a test that must say why it skips). */
export function prometheusVersion(binary = prometheusBinary()): { ok: true; version: string } | { ok: false; reason: string } {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) {
    return { ok: false, reason: `cannot run '${binary}' (${r.error.message}); install it with: bash scripts/observability/install.sh` };
  }
  if (r.status !== 0) return { ok: false, reason: `'${binary} --version' exited ${r.status}: ${(r.stderr || r.stdout).trim()}` };
  return { ok: true, version: `${r.stdout}${r.stderr}`.trim().split('\n')[0] ?? '' };
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]):\d{1,5}$/;

/** Prometheus reads YAML, and JSON is YAML: no YAML writer needed. */
export function prometheusConfig(jobs: ScrapeJob[], intervalMs: number): string {
  const interval = `${intervalMs}ms`;
  return (
    JSON.stringify(
      {
        global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
        scrape_configs: jobs.map((j) => ({
          job_name: j.job,
          metrics_path: j.metricsPath ?? '/metrics',
          static_configs: [{ targets: j.targets, labels: j.labels ?? {} }],
        })),
      },
      null,
      2,
    ) + '\n'
  );
}

export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const binary = options.binary ?? prometheusBinary();
  const intervalMs = options.scrapeIntervalMs ?? 1000;
  if (!Number.isInteger(intervalMs) || intervalMs < 100) throw new Error(`scrapeIntervalMs must be an integer >= 100, got ${intervalMs}`);
  const jobs = options.scrapeJobs;
  const names = new Set<string>();
  for (const j of jobs) {
    if (names.has(j.job)) throw new Error(`scrape job '${j.job}' is named twice`);
    names.add(j.job);
    for (const t of j.targets) {
      if (!options.allowNonLoopbackTargets && !LOOPBACK.test(t)) {
        throw new Error(`scrape target '${t}' of job '${j.job}' is not a loopback host:port (127.x.x.x, localhost, [::1])`);
      }
    }
  }
  const version = prometheusVersion(binary);
  if (!version.ok) throw new Error(version.reason);

  let configFile = '';
  const base = await launchLocalServer(options, {
    name: 'Prometheus',
    version: version.version,
    tempPrefix: 'sagaflow-prometheus-',
    logName: 'prometheus.log',
    readyTimeoutMs: options.readyTimeoutMs ?? 30_000,
    async prepare(dataDir, port) {
      configFile = join(dataDir, 'prometheus.yml');
      await writeFile(configFile, prometheusConfig(jobs, intervalMs));
      return {
        command: binary,
        args: [
          `--config.file=${configFile}`,
          `--storage.tsdb.path=${join(dataDir, 'tsdb')}`,
          '--storage.tsdb.retention.time=6h',
          // Loopback only: a test backend must never be reachable from the network.
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        // One OS thread for Go code: enough for a few targets, and polite on a shared 2-core machine.
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? dataDir, GOMAXPROCS: '1' },
      };
    },
    async ready(url) {
      const r = await httpGet(`${url}/-/ready`, 2_000);
      return r.status === 200 ? true : `HTTP ${r.status} ${r.body.trim()}`;
    },
  });

  const url = base.url;
  const expectedTargets = jobs.reduce((n, j) => n + j.targets.length, 0);
  return {
    ...base,
    configFile,
    query: (promql, at) => queryPrometheus(url, promql, at),
    targets: () => prometheusTargets(url),
    async waitForTargetsUp(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
        const targets = await prometheusTargets(url);
        if (targets.length >= expectedTargets && targets.every((t) => t.health === 'up')) return targets;
        if (Date.now() > deadline) {
          const seen = targets.map((t) => `${t.job} ${t.scrapeUrl}: ${t.health}${t.lastError ? ` (${t.lastError})` : ''}`);
          throw new Error(
            `Prometheus at ${url}: not all ${expectedTargets} targets up after ${timeoutMs} ms: ${seen.join('; ') || 'no active target yet'}`,
          );
        }
        await new Promise((r) => setTimeout(r, wait));
      }
    },
  };
}

interface ApiResponse<T> {
  status: 'success' | 'error';
  data: T;
  errorType?: string;
  error?: string;
}

/** Instant query (GET /api/v1/query). Vector and scalar results; a query error throws with its message. */
export async function queryPrometheus(url: string, promql: string, at?: Date): Promise<PromSample[]> {
  const params = new URLSearchParams({ query: promql });
  if (at) params.set('time', (at.getTime() / 1000).toFixed(3));
  const endpoint = `${url}/api/v1/query?${params.toString()}`;
  const { status, body } = await httpGet(endpoint);
  let parsed: ApiResponse<{ resultType: string; result: unknown }>;
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    throw new Error(`Prometheus query ${promql}: HTTP ${status}, not JSON: ${body.slice(0, 200)}`);
  }
  if (parsed.status !== 'success') throw new Error(`Prometheus query ${promql}: ${parsed.errorType}: ${parsed.error}`);
  const { resultType, result } = parsed.data;
  if (resultType === 'scalar') {
    const [ts, v] = result as [number, string];
    return [{ metric: {}, value: Number(v), timestamp: ts }];
  }
  if (resultType !== 'vector') throw new Error(`Prometheus query ${promql}: unexpected result type ${resultType}`);
  return (result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => ({
    metric: s.metric,
    value: Number(s.value[1]),
    timestamp: s.value[0],
  }));
}

/** Active scrape targets (GET /api/v1/targets?state=active). */
export async function prometheusTargets(url: string): Promise<PromTarget[]> {
  const r = await getJson<ApiResponse<{ activeTargets: Array<{ labels: Record<string, string> } & Omit<PromTarget, 'job'>> }>>(
    `${url}/api/v1/targets?state=active`,
  );
  return r.data.activeTargets.map((t) => ({
    job: t.labels.job ?? '',
    scrapeUrl: t.scrapeUrl,
    health: t.health,
    lastError: t.lastError,
    lastScrape: t.lastScrape,
  }));
}
