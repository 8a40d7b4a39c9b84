/**
 * A local Zipkin server (the `io.zipkin:zipkin-server` exec jar, Java 17) for tests and development:
 * in-memory storage, HTTP collector and query API on a free loopback port.
 *
 * The cache, OUTSIDE the repository (default `~/.cache/sagaflow/zipkin-<version>/`), filled once
 * under a cross-process lock and finished by a marker file:
 *  1. Maven copies the exec jar (~135 MB);
 *  2. Spring Boot's own jar mode extracts it (`-Djarmode=tools extract`): a plain jar plus lib/,
 *     the layout a class-data-sharing archive needs (classes in nested jars cannot be archived);
 *  3. per JVM build, a training start (`-XX:ArchiveClassesAtExit`, leaving after the context is
 *     refreshed) writes a dynamic CDS archive. It roughly halves the start on this 2-core machine
 *     (`cli.ts measure`, with and without in turn: 8-14 s against 15-25 s under a load of 20-27).
 *     A JVM that does not match the archive just ignores it (-Xshare:auto, a warning in
 *     zipkin.log), and a failed training only costs the speed-up.
 *
 * Zipkin's server takes spans in Zipkin's own formats only (JSON or proto3 on POST /api/v2/spans,
 * gRPC): it has no OTLP receiver, so OpenTelemetry talks to it through @opentelemetry/exporter-zipkin.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findFreePort, runMaven, sagaflowCacheRoot, withLock } from '../kafka/broker.js';
import { getJson, httpGet, launchLocalServer, runToExit, type LocalServer, type LocalServerOptions } from './server-process.js';

/** Newest release on Maven Central that runs on Java 17 (its manifest says Java-Version: 17). */
export const DEFAULT_ZIPKIN_VERSION = '3.6.1';

export function zipkinVersion(): string {
  return process.env.SAGAFLOW_ZIPKIN_VERSION || DEFAULT_ZIPKIN_VERSION;
}

/** `$SAGAFLOW_ZIPKIN_CACHE/zipkin-<version>`, else under sagaflowCacheRoot() (~/.cache/sagaflow). */
export function zipkinCacheDir(version: string = zipkinVersion()): string {
  const base = process.env.SAGAFLOW_ZIPKIN_CACHE || sagaflowCacheRoot();
  return join(base, `zipkin-${version}`);
}

const MARKER_FILE = '.complete.json';
/** Default -Xmx of the Zipkin JVM; part of the CDS archive's key. */
export const ZIPKIN_HEAP_MB = 256;
/** Bump when the cache layout changes: caches made by older code are then refetched. */
const CACHE_LAYOUT = 1;

function javaBinary(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

/** The same flags for the training run and the real one: a CDS archive is tied to them. */
function jvmFlags(heapMb: number): string[] {
  return [
    `-Xmx${heapMb}m`,
    // A test backend receives a handful of spans: the optimising JIT and a parallel collector
    // only cost start time and CPU on a 2-core machine (C1 only started ~2x faster here).
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-XX:+ExitOnOutOfMemoryError',
  ];
}

/** Loopback only. Spring replaces the whole list entry of zipkin-server-shared.yml, so port and
 * protocol are restated (without them the port is 0: a random one). */
function serverArgs(port: number): string[] {
  return ['--armeria.ports[0].ip=127.0.0.1', `--armeria.ports[0].port=${port}`, '--armeria.ports[0].protocols[0]=http', '--spring.main.banner-mode=off'];
}

/**
 * A complete environment, not process.env: Zipkin turns collectors on from variables such as
 * KAFKA_BOOTSTRAP_SERVERS or RABBIT_ADDRESSES, which a developer's shell may well have set, and
 * would then consume from the shared brokers.
 */
function zipkinEnv(home: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? home,
    ...(process.env.JAVA_HOME ? { JAVA_HOME: process.env.JAVA_HOME } : {}),
    STORAGE_TYPE: 'mem',
    COLLECTOR_KAFKA_ENABLED: 'false',
    COLLECTOR_RABBITMQ_ENABLED: 'false',
    COLLECTOR_ACTIVEMQ_ENABLED: 'false',
    COLLECTOR_PULSAR_ENABLED: 'false',
    COLLECTOR_SCRIBE_ENABLED: 'false',
    DISCOVERY_EUREKA_ENABLED: 'false',
    SELF_TRACING_ENABLED: 'false',
    ...extra,
  };
}

interface Marker {
  layout: number;
  version: string;
  /** The extracted application jar, relative to the cache dir. */
  jar: string;
}

function cachedJar(cacheDir: string, version: string): string | undefined {
  try {
    const marker = JSON.parse(readFileSync(join(cacheDir, MARKER_FILE), 'utf8')) as Marker;
    const jar = join(cacheDir, marker.jar);
    return marker.layout === CACHE_LAYOUT && marker.version === version && existsSync(jar) ? jar : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Make sure the extracted Zipkin server of `version` is in the cache; returns its jar. Safe to call
 * from several processes at once: one downloads, the others wait on the lock.
 */
export async function ensureZipkinJar(version: string = zipkinVersion(), log: (m: string) => void = () => {}): Promise<string> {
  const cacheDir = zipkinCacheDir(version);
  const ready = cachedJar(cacheDir, version);
  if (ready) return ready;
  await mkdir(join(cacheDir, '..'), { recursive: true });
  await withLock(`${cacheDir}.lock`, 15 * 60_000, log, async () => {
    if (cachedJar(cacheDir, version)) return;
    log(`Downloading Zipkin server ${version} with Maven into ${cacheDir} (once) ...`);
    const started = Date.now();
    const execJar = `zipkin-server-${version}-exec.jar`;
    const download = join(cacheDir, 'download');
    try {
      await rm(cacheDir, { recursive: true, force: true });
      await mkdir(download, { recursive: true });
      // dependency:copy needs no pom. The exec jar is the `exec` classifier of the artifact.
      await runMaven(
        ['dependency:copy', `-Dartifact=io.zipkin:zipkin-server:${version}:jar:exec`, `-DoutputDirectory=${download}`],
        download,
        `the Zipkin server jar ${version}`,
      );
      log(`Extracting ${execJar} (jarmode tools) ...`);
      const r = await runToExit(javaBinary(), ['-Djarmode=tools', '-jar', join(download, execJar), 'extract', '--destination', join(cacheDir, 'app')], {
        cwd: cacheDir,
        timeoutMs: 5 * 60_000,
      });
      if (r.code !== 0) throw new Error(`extracting ${execJar} failed (exit ${r.code}):\n${r.output.slice(-2000)}`);
      if (!existsSync(join(cacheDir, 'app', execJar))) throw new Error(`extraction left no app/${execJar} in ${cacheDir}`);
      // Maven's own repository keeps a copy of the exec jar: this one would be 135 MB for nothing.
      await rm(download, { recursive: true, force: true });
    } catch (err) {
      await rm(cacheDir, { recursive: true, force: true });
      throw err;
    }
    const marker: Marker = { layout: CACHE_LAYOUT, version, jar: join('app', execJar) };
    // The marker is written last: its presence means "complete".
    await writeFile(join(cacheDir, MARKER_FILE), JSON.stringify({ ...marker, createdAt: new Date().toISOString() }) + '\n');
    log(`Zipkin ${version} ready in the cache in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
  const jar = cachedJar(cacheDir, version);
  if (!jar) throw new Error(`Zipkin cache ${cacheDir} is incomplete after download`);
  return jar;
}

/**
 * The dynamic CDS archive for `jar` and the running JVM build, made by a training start when
 * missing. Undefined when training fails: Zipkin then starts without it, only slower.
 */
export async function ensureZipkinCdsArchive(jar: string, heapMb: number, log: (m: string) => void = () => {}): Promise<string | undefined> {
  const jvm = await runToExit(javaBinary(), ['-version'], { cwd: tmpdir(), timeoutMs: 30_000 });
  if (jvm.code !== 0) throw new Error(`'${javaBinary()} -version' failed (exit ${jvm.code}): ${jvm.output}. Zipkin needs Java 17+ (set JAVA_HOME).`);
  const key = createHash('sha256').update(jvm.output).update(jvmFlags(heapMb).join(' ')).digest('hex').slice(0, 12);
  const cacheDir = join(jar, '..', '..');
  const archive = join(cacheDir, `cds-${key}.jsa`);
  if (existsSync(archive)) return archive;
  return withLock(`${archive}.lock`, 10 * 60_000, log, async () => {
    if (existsSync(archive)) return archive;
    log(`Training a class-data-sharing archive for this JVM (once, about a minute) ...`);
    const started = Date.now();
    // Written under another name and renamed: a killed training leaves no half archive behind.
    const partial = `${archive}.partial`;
    await rm(partial, { force: true });
    const r = await runToExit(
      javaBinary(),
      [...jvmFlags(heapMb), `-XX:ArchiveClassesAtExit=${partial}`, '-Dspring.context.exit=onRefresh', '-jar', jar, ...serverArgs(await findFreePort())],
      { cwd: cacheDir, env: zipkinEnv(cacheDir, {}), timeoutMs: 5 * 60_000 },
    );
    if (r.code !== 0 || !existsSync(partial)) {
      log(`warning: CDS training failed (exit ${r.code}); Zipkin starts without it:\n${r.output.slice(-1500)}`);
      await rm(partial, { force: true });
      return undefined;
    }
    await rename(partial, archive);
    log(`CDS archive ${archive} written in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return archive;
  });
}

export interface ZipkinOptions extends LocalServerOptions {
  /** Default: DEFAULT_ZIPKIN_VERSION or env SAGAFLOW_ZIPKIN_VERSION. */
  version?: string;
  /** -Xmx in MiB. Default ZIPKIN_HEAP_MB (256). */
  heapMb?: number;
  /** In-memory storage bound (MEM_MAX_SPANS); the oldest traces are dropped beyond it. Default 50 000. */
  maxSpans?: number;
  /**
   * Start with the class-data-sharing archive (trained first if missing). Default: true unless env
   * SAGAFLOW_ZIPKIN_CDS=off (to measure it, or should a JVM misbehave with it).
   */
  useCds?: boolean;
  // readyTimeoutMs: default 120 000 ms (a cold JVM on a busy 2-core machine), download excluded.
}

export interface ZipkinServer extends LocalServer {
  /** Where exporters POST spans: `<url>/api/v2/spans`. */
  readonly spansUrl: string;
  trace(traceId: string): Promise<ZipkinSpan[] | undefined>;
  traces(query?: ZipkinTraceQuery): Promise<ZipkinSpan[][]>;
}

/** Zipkin v2 span, as the API returns it. */
export interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  name?: string;
  kind?: 'CLIENT' | 'SERVER' | 'PRODUCER' | 'CONSUMER';
  /** Epoch microseconds. */
  timestamp?: number;
  /** Microseconds. */
  duration?: number;
  localEndpoint?: { serviceName?: string; ipv4?: string; ipv6?: string; port?: number };
  remoteEndpoint?: { serviceName?: string; ipv4?: string; ipv6?: string; port?: number };
  annotations?: Array<{ timestamp: number; value: string }>;
  tags?: Record<string, string>;
  shared?: boolean;
}

export interface ZipkinTraceQuery {
  serviceName?: string;
  spanName?: string;
  /** e.g. `saga.id=123 and error` */
  annotationQuery?: string;
  limit?: number;
  /** How far back from now. Default: Zipkin's (1 day). */
  lookbackMs?: number;
}

export async function startZipkin(options: ZipkinOptions = {}): Promise<ZipkinServer> {
  const log = options.log ?? (() => {});
  const version = options.version ?? zipkinVersion();
  const heapMb = options.heapMb ?? ZIPKIN_HEAP_MB;
  const jar = await ensureZipkinJar(version, log);
  const useCds = options.useCds ?? process.env.SAGAFLOW_ZIPKIN_CDS !== 'off';
  const cds = useCds ? await ensureZipkinCdsArchive(jar, heapMb, log) : undefined;

  const base = await launchLocalServer(options, {
    name: `Zipkin ${version}`,
    version,
    tempPrefix: 'sagaflow-zipkin-',
    logName: 'zipkin.log',
    readyTimeoutMs: options.readyTimeoutMs ?? 120_000,
    async prepare(dataDir, port) {
      return {
        command: javaBinary(),
        args: [
          ...jvmFlags(heapMb),
          ...(cds ? [`-XX:SharedArchiveFile=${cds}`] : []),
          // Unused by Zipkin; puts the data dir in the command line, by which the CLI recognises its JVM.
          `-Dsagaflow.dataDir=${dataDir}`,
          '-jar',
          jar,
          ...serverArgs(port),
        ],
        env: zipkinEnv(dataDir, { QUERY_PORT: String(port), MEM_MAX_SPANS: String(options.maxSpans ?? 50_000) }),
      };
    },
    async ready(url) {
      // Armeria accepts connections before the application is up: the per-request deadline in
      // httpGet keeps one early request from hanging the whole wait.
      const r = await httpGet(`${url}/health`, 2_000);
      if (r.status !== 200) return `HTTP ${r.status}`;
      const status = (JSON.parse(r.body) as { status?: string }).status;
      return status === 'UP' ? true : `status ${status}`;
    },
  });
  return {
    ...base,
    spansUrl: `${base.url}/api/v2/spans`,
    trace: (traceId) => fetchZipkinTrace(base.url, traceId),
    traces: (query) => fetchZipkinTraces(base.url, query),
  };
}

/** GET /api/v2/trace/{traceId}: the spans of one trace, or undefined when Zipkin has none (404). */
export async function fetchZipkinTrace(url: string, traceId: string): Promise<ZipkinSpan[] | undefined> {
  if (!/^[0-9a-f]{16}([0-9a-f]{16})?$/.test(traceId)) throw new Error(`not a Zipkin trace id (16 or 32 lower-case hex digits): '${traceId}'`);
  const endpoint = `${url}/api/v2/trace/${traceId}`;
  const { status, body } = await httpGet(endpoint);
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`GET ${endpoint}: HTTP ${status}: ${body.slice(0, 300)}`);
  return JSON.parse(body) as ZipkinSpan[];
}

/** GET /api/v2/traces: the traces matching the query, each a list of spans. */
export async function fetchZipkinTraces(url: string, query: ZipkinTraceQuery = {}): Promise<ZipkinSpan[][]> {
  const params = new URLSearchParams();
  if (query.serviceName) params.set('serviceName', query.serviceName);
  if (query.spanName) params.set('spanName', query.spanName);
  if (query.annotationQuery) params.set('annotationQuery', query.annotationQuery);
  if (query.limit !== undefined) params.set('limit', String(query.limit));
  if (query.lookbackMs !== undefined) params.set('lookback', String(query.lookbackMs));
  return getJson<ZipkinSpan[][]>(`${url}/api/v2/traces?${params.toString()}`);
}
