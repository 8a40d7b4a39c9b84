/**
 * Command line for the local observability backends (no Docker): Prometheus (Debian's package,
 * `bash scripts/observability/install.sh`) and Zipkin's server (jar fetched with Maven once).
 *
 *   npx tsx scripts/observability/cli.ts fetch          # download the Zipkin jar now (CI warm-up)
 *   npx tsx scripts/observability/cli.ts start [--target [job=]host:port ...] [--scrape-interval-ms N]
 *        # starts both in the background; stdout: PROMETHEUS_URL=... and ZIPKIN_URL=... lines
 *   npx tsx scripts/observability/cli.ts start --only zipkin|prometheus
 *   npx tsx scripts/observability/cli.ts status | stop
 *   npx tsx scripts/observability/cli.ts query 'up'     # instant query against the running Prometheus
 *   npx tsx scripts/observability/cli.ts trace <traceId>  # one trace from the running Zipkin, as JSON
 *   npx tsx scripts/observability/cli.ts measure [--runs N] [--cold]
 *        # start/stop each backend N times (Zipkin with and without its CDS archive, in turn) and
 *        # print the start times; --cold first fetches the Zipkin jar into an empty cache AND an
 *        # empty Maven repository (a new machine), trains the archive and starts it once
 *
 * Pids, ports and data dirs are kept in `~/.cache/sagaflow/observability-run/state.json` (env
 * SAGAFLOW_OBSERVABILITY_STATE names another file), so start is idempotent and stop finds them.
 * Progress and errors go to stderr.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { positiveInt, readJsonFile, runCli, writeJsonFileAtomic } from '../cli-support.js';
import { sagaflowCacheRoot, stopProcess, withLock } from '../kafka/broker.js';
import { prometheusVersion, queryPrometheus, startPrometheus, type ScrapeJob } from './prometheus.js';
import { isServerProcess } from './server-process.js';
import { ZIPKIN_HEAP_MB, ensureZipkinCdsArchive, ensureZipkinJar, fetchZipkinTrace, startZipkin, zipkinVersion } from './zipkin.js';

type Backend = 'prometheus' | 'zipkin';

interface Running {
  pid: number;
  url: string;
  dataDir: string;
  logFile: string;
  startedAt: string;
}

type State = Partial<Record<Backend, Running>>;

const stateFile = process.env.SAGAFLOW_OBSERVABILITY_STATE || join(sagaflowCacheRoot(), 'observability-run', 'state.json');
const ENV_NAME: Record<Backend, string> = { prometheus: 'PROMETHEUS_URL', zipkin: 'ZIPKIN_URL' };

function info(message: string): void {
  process.stderr.write(`[observability] ${message}\n`);
}

function readState(): State {
  return readJsonFile<State>(stateFile) ?? {};
}

function writeState(state: State): void {
  if (state.prometheus || state.zipkin) writeJsonFileAtomic(stateFile, state);
  else rmSync(stateFile, { force: true });
}

/** Both servers have their data dir in their command line: guards against pid reuse. */
function isRunning(r: Running): boolean {
  return isServerProcess(r.pid, r.dataDir);
}

function parseTarget(spec: string): { job: string; target: string } {
  const eq = spec.indexOf('=');
  return eq < 0 ? { job: 'sagaflow', target: spec } : { job: spec.slice(0, eq), target: spec.slice(eq + 1) };
}


async function start(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      target: { type: 'string', multiple: true },
      'scrape-interval-ms': { type: 'string' },
      only: { type: 'string' },
    },
    strict: true,
  });
  const only = values.only;
  if (only !== undefined && only !== 'prometheus' && only !== 'zipkin') throw new Error(`--only takes prometheus or zipkin, got '${only}'`);
  const wanted: Backend[] = only ? [only] : ['prometheus', 'zipkin'];
  const jobs = new Map<string, ScrapeJob>();
  for (const spec of values.target ?? []) {
    const { job, target } = parseTarget(spec);
    const j = jobs.get(job) ?? { job, targets: [] };
    j.targets.push(target);
    jobs.set(job, j);
  }
  mkdirSync(dirname(stateFile), { recursive: true });
  return withLock(`${stateFile}.lock`, 10 * 60_000, info, async () => {
    const state = readState();
    for (const backend of wanted) {
      const existing = state[backend];
      if (existing && isRunning(existing)) {
        info(`${backend} already running (pid ${existing.pid}); stop it first to change its targets`);
        continue;
      }
      if (existing) await rm(existing.dataDir, { recursive: true, force: true });
      // Ctrl-C while waiting for readiness must not leave a detached server behind that no state file knows.
      let spawned: number | undefined;
      const abort = (signal: NodeJS.Signals): void => {
        try {
          if (spawned !== undefined) process.kill(spawned, 'SIGKILL');
        } catch {
          /* already gone */
        }
        process.exit(signal === 'SIGINT' ? 130 : 143);
      };
      process.once('SIGINT', abort);
      process.once('SIGTERM', abort);
      const common = { detached: true, log: info, onSpawn: (pid: number) => (spawned = pid) };
      const server = await (backend === 'prometheus'
        ? startPrometheus({ ...common, scrapeJobs: [...jobs.values()], scrapeIntervalMs: positiveInt('scrape-interval-ms', values['scrape-interval-ms']) })
        : startZipkin(common)
      ).finally(() => {
        process.removeListener('SIGINT', abort);
        process.removeListener('SIGTERM', abort);
      });
      state[backend] = { pid: server.pid, url: server.url, dataDir: server.dataDir, logFile: server.logFile, startedAt: new Date().toISOString() };
      writeState(state);
    }
    for (const backend of wanted) {
      const r = state[backend];
      if (r) process.stdout.write(`${ENV_NAME[backend]}=${r.url}\n`);
    }
    return 0;
  });
}

async function stop(): Promise<number> {
  return withLock(`${stateFile}.lock`, 10 * 60_000, info, async () => {
    const state = readState();
    for (const backend of ['prometheus', 'zipkin'] as const) {
      const r = state[backend];
      if (!r) continue;
      if (isRunning(r)) {
        await stopProcess(r.pid, 15_000, () => isRunning(r));
        info(`${backend} (pid ${r.pid}) stopped`);
      } else {
        info(`${backend} (pid ${r.pid}) was not running`);
      }
      await rm(r.dataDir, { recursive: true, force: true });
      delete state[backend];
    }
    writeState(state);
    return 0;
  });
}

function status(): number {
  const state = readState();
  let running = 0;
  for (const backend of ['prometheus', 'zipkin'] as const) {
    const r = state[backend];
    const up = r !== undefined && isRunning(r);
    if (up) running++;
    process.stdout.write(up ? `${backend}: running pid=${r.pid} ${ENV_NAME[backend]}=${r.url} log=${r.logFile} since=${r.startedAt}\n` : `${backend}: not running\n`);
  }
  return running > 0 ? 0 : 1;
}

function runningUrl(backend: Backend): string {
  const r = readState()[backend];
  if (!r || !isRunning(r)) throw new Error(`${backend} is not running (start it with: npx tsx scripts/observability/cli.ts start)`);
  return r.url;
}

/** Start and stop each backend `runs` times in this process and print the figures. */
async function measure(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { runs: { type: 'string' }, cold: { type: 'boolean' } }, strict: true });
  const runs = positiveInt('runs', values.runs) ?? 3;
  const figures: string[] = [];
  const seconds = (from: number): string => `${((Date.now() - from) / 1000).toFixed(1)} s`;
  if (values.cold) {
    // A new machine: empty sagaflow cache and empty Maven repository (MAVEN_OPTS reaches the mvn child).
    const scratch = await mkdtemp(join(tmpdir(), 'sagaflow-obs-cold-'));
    const mavenOpts = process.env.MAVEN_OPTS;
    process.env.SAGAFLOW_ZIPKIN_CACHE = join(scratch, 'cache');
    process.env.MAVEN_OPTS = `${process.env.MAVEN_OPTS ?? ''} -Dmaven.repo.local=${join(scratch, 'm2')}`.trim();
    try {
      let t = Date.now();
      const jar = await ensureZipkinJar(zipkinVersion(), info);
      figures.push(`cold: zipkin jar fetched (empty Maven repository) and extracted in ${seconds(t)}`);
      t = Date.now();
      await ensureZipkinCdsArchive(jar, ZIPKIN_HEAP_MB, info);
      figures.push(`cold: CDS training start in ${seconds(t)}`);
      const z = await startZipkin();
      await z.stop();
      figures.push(`cold: first zipkin start healthy in ${(z.startMs / 1000).toFixed(2)} s`);
    } finally {
      delete process.env.SAGAFLOW_ZIPKIN_CACHE;
      if (mavenOpts === undefined) delete process.env.MAVEN_OPTS;
      else process.env.MAVEN_OPTS = mavenOpts;
      await rm(scratch, { recursive: true, force: true });
    }
  }
  const t0 = Date.now();
  await ensureZipkinJar(zipkinVersion(), info);
  figures.push(`zipkin cache check: ${seconds(t0)}`);
  const version = prometheusVersion();
  for (let i = 1; i <= runs; i++) {
    if (version.ok) {
      const p = await startPrometheus({ scrapeJobs: [] });
      await p.stop();
      figures.push(`run ${i}: prometheus ready in ${(p.startMs / 1000).toFixed(2)} s`);
    }
    // With and without the CDS archive in turn, so both see the same machine load.
    for (const useCds of [true, false]) {
      const z = await startZipkin({ useCds });
      await z.stop();
      const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
      figures.push(`run ${i}: zipkin ${z.version} healthy in ${(z.startMs / 1000).toFixed(2)} s ${useCds ? 'with' : 'without'} CDS (load ${load})`);
    }
  }
  if (!version.ok) figures.push(`prometheus not measured: ${version.reason}`);
  for (const f of figures) process.stdout.write(`${f}\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'fetch': {
      const jar = await ensureZipkinJar(zipkinVersion(), info);
      const cds = await ensureZipkinCdsArchive(jar, ZIPKIN_HEAP_MB, info);
      const p = prometheusVersion();
      info(`zipkin jar: ${jar}${cds ? `, CDS archive ${cds}` : ', no CDS archive'}`);
      info(p.ok ? `prometheus: ${p.version}` : `prometheus: ${p.reason}`);
      return 0;
    }
    case 'start':
      return start(rest);
    case 'stop':
      return stop();
    case 'status':
      return status();
    case 'query': {
      if (!rest[0]) throw new Error('usage: query <promql>');
      const samples = await queryPrometheus(runningUrl('prometheus'), rest[0]);
      for (const s of samples) process.stdout.write(`${JSON.stringify(s.metric)} ${s.value}\n`);
      return 0;
    }
    case 'trace': {
      if (!rest[0]) throw new Error('usage: trace <traceId>');
      const spans = await fetchZipkinTrace(runningUrl('zipkin'), rest[0]);
      if (!spans) {
        info(`no trace ${rest[0]}`);
        return 1;
      }
      process.stdout.write(JSON.stringify(spans, null, 2) + '\n');
      return 0;
    }
    case 'measure':
      return measure(rest);
    default:
      process.stderr.write(
        'usage: tsx scripts/observability/cli.ts fetch | start [--only prometheus|zipkin] [--target [job=]host:port ...] [--scrape-interval-ms N]\n' +
          '       | stop | status | query <promql> | trace <traceId> | measure [--runs N] [--cold]\n',
      );
      return 2;
  }
}

runCli(main, info);
