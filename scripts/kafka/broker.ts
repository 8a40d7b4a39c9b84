/**
 * A local, single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and
 * development, without Docker.
 *
 * How it works:
 *  1. `ensureKafkaJars()` lets Maven resolve `org.apache.kafka:kafka_2.13:<version>` and its runtime
 *     dependencies into a cache OUTSIDE the repository (default `~/.cache/sagaflow/kafka-<version>/libs`),
 *     guarded by a lock directory and finished by a marker file, so the ~45 MB download happens once.
 *  2. `startKafkaBroker()` writes `server.properties` + a log4j2 config into a data dir, formats the
 *     KRaft storage once (`kafka.tools.StorageTool format`, what `bin/kafka-storage.sh` runs), starts
 *     `java -cp <libs>/* kafka.Kafka server.properties` (what `bin/kafka-server-start.sh` runs) and
 *     polls with kafkajs until the broker answers metadata requests.
 *
 * Everything the JVM logs goes to `<dataDir>/broker.log` (log4j2) and `<dataDir>/jvm.out`
 * (stdout/stderr of the JVM itself: crashes before log4j is up, "class not found", OOM).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { connect as netConnect, createServer } from 'node:net';
import { homedir, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Kafka, logLevel, type ISocketFactory } from 'kafkajs';

/**
 * Newest 4.x that passes the kafkajs 2.2.4 smoke test (test/integration/kafka-broker.smoke.test.ts).
 * Override per call with `options.version` or globally with env `SAGAFLOW_KAFKA_VERSION`.
 */
export const DEFAULT_KAFKA_VERSION = '4.4.0';

/** Main class of `bin/kafka-server-start.sh` (via kafka-run-class.sh). */
export const KAFKA_SERVER_MAIN_CLASS = 'kafka.Kafka';
/** Main class of `bin/kafka-storage.sh`; a Scala object in the kafka_2.13 jar for all 4.x releases. */
export const KAFKA_STORAGE_MAIN_CLASS = 'kafka.tools.StorageTool';

export interface KafkaBrokerOptions {
  /** PLAINTEXT port on 127.0.0.1. Default: a free port (bind port 0, read it, release it). */
  port?: number;
  /**
   * Port written into `advertised.listeners`, i.e. the port clients reconnect to after the bootstrap
   * metadata request. Point it at a TCP proxy (toxiproxy-like) for network fault tests. Default: `port`.
   */
  advertisedPort?: number;
  /** Data dir (server.properties, logs, KRaft log dirs). Default: a new temp dir under os.tmpdir(). */
  dataDir?: string;
  /** `num.partitions` for topics created without an explicit count. Default: 1. */
  partitions?: number;
  /** Max heap in MiB (`-Xmx`). Default 512; `-Xms` is min(256, heapMb). */
  heapMb?: number;
  /** Kafka version (Maven version of org.apache.kafka:kafka_2.13). Default: DEFAULT_KAFKA_VERSION. */
  version?: string;
  /** How long to wait for the broker to answer metadata requests. Default 60 000 ms. */
  readyTimeoutMs?: number;
  /** Deadline for a graceful SIGTERM shutdown in stop() before SIGKILL. Default 30 000 ms. */
  stopTimeoutMs?: number;
  /** Extra/overriding broker properties, e.g. `{ 'auto.create.topics.enable': true }`. */
  overrides?: Record<string, string | number | boolean>;
  /**
   * Start the JVM in its own process group and let it outlive this Node process (used by the CLI).
   * Default false: the JVM is SIGKILLed when this process exits.
   */
  detached?: boolean;
  /** Remove the data dir in stop(). Default: true when the data dir was created by us (temp dir). */
  removeDataDirOnStop?: boolean;
  /** Progress messages (download, format, start). Default: silent. The CLI passes a stderr writer. */
  log?: (message: string) => void;
  /** Called with the JVM pid right after each spawn, before it is ready (the CLI kills it on Ctrl-C). */
  onSpawn?: (pid: number) => void;
}

export interface KafkaBroker {
  /** Bootstrap string for clients: `127.0.0.1:<port>` (the listener port, not the advertised one). */
  readonly brokers: string;
  readonly port: number;
  readonly advertisedPort: number;
  readonly controllerPort: number;
  readonly dataDir: string;
  /** pid of the current JVM; changes after restart(). */
  readonly pid: number;
  /** log4j2 output of the broker. */
  readonly logFile: string;
  readonly version: string;
  /** Whether stop() deletes the data dir. */
  readonly removeDataDirOnStop: boolean;
  /** SIGTERM (controlled shutdown), wait for exit, SIGKILL after the deadline; removes a temp data dir. */
  stop(): Promise<void>;
  /** SIGKILL the JVM (a crash, for fault tests) and wait until it is gone. Keeps the data dir. */
  kill(): Promise<void>;
  /** Start again on the same data dir and the same ports; waits until ready. Stops it first if running. */
  restart(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Jar cache (Maven)
// ---------------------------------------------------------------------------------------------

const MARKER_FILE = '.complete.json';
/** Bump when pomXml() or the post-processing changes: caches made by older code are then refetched. */
const CACHE_LAYOUT = 2;

/** `$XDG_CACHE_HOME/sagaflow`, else `~/.cache/sagaflow`. */
export function sagaflowCacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'sagaflow');
}

/** Base dir of the Kafka jar caches: `$SAGAFLOW_KAFKA_CACHE`, else sagaflowCacheRoot(). */
export function kafkaCacheBase(): string {
  const fromEnv = process.env.SAGAFLOW_KAFKA_CACHE;
  return fromEnv && fromEnv.length > 0 ? fromEnv : sagaflowCacheRoot();
}

/**
 * Cache dir for one Kafka version. SAGAFLOW_KAFKA_CACHE names the BASE dir (each version gets its own
 * `kafka-<version>` sub dir) so that switching versions never mixes jars of two releases on one classpath.
 */
export function kafkaCacheDir(version: string = defaultVersion()): string {
  return join(kafkaCacheBase(), `kafka-${version}`);
}

function defaultVersion(): string {
  return process.env.SAGAFLOW_KAFKA_VERSION || DEFAULT_KAFKA_VERSION;
}

interface Marker {
  layout: number;
  version: string;
  jars: string[];
  createdAt: string;
}

function readMarker(cacheDir: string, version: string): Marker | undefined {
  try {
    const marker = JSON.parse(readFileSync(join(cacheDir, MARKER_FILE), 'utf8')) as Marker;
    if (marker.layout !== CACHE_LAYOUT || marker.version !== version || !Array.isArray(marker.jars)) return undefined;
    // A marker whose jars were partly deleted (someone cleaning ~/.cache by hand) is not complete.
    const present = new Set(readdirSync(join(cacheDir, 'libs')));
    return marker.jars.every((jar) => present.has(jar)) ? marker : undefined;
  } catch {
    return undefined;
  }
}

function pomXml(version: string): string {
  // Only kafka_2.13: it holds the broker (kafka.Kafka) AND the storage tool (kafka.tools.StorageTool) and
  // pulls every other runtime jar transitively. org.apache.kafka:kafka-tools is NOT needed at runtime
  // (it is kafka-topics/kafka-consumer-groups & co.) and would drag in Kafka Connect, Jetty and Jersey:
  // 48 more jars, and the first download took 62 s instead of 45 s here.
  // The slf4j binding is added in a second step because its version must match the log4j2 and slf4j
  // versions that Kafka itself pulls in.
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by sagaflow scripts/kafka/broker.ts: only used to download the Kafka broker jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sagaflow</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>${version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${version}</version>
    </dependency>
  </dependencies>
</project>
`;
}

/** Runs Maven quietly in `cwd`; on failure throws with the tail of its output. `what` names the download. */
export async function runMaven(args: string[], cwd: string, what = 'the Kafka broker jars'): Promise<void> {
  const mvn = process.env.SAGAFLOW_MVN || 'mvn';
  // -B: no interactive progress; -q: only errors; colour off so error messages are readable.
  const fullArgs = ['-B', '-q', '-Dstyle.color=never', ...args];
  const { code, output, spawnError } = await new Promise<{ code: number | null; output: string; spawnError?: Error }>(
    (resolve) => {
      let output = '';
      const child = spawn(mvn, fullArgs, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      // Maven 3.8 emits ANSI reset codes even with colours off; keep error messages readable.
      // eslint-disable-next-line no-control-regex -- matching the ESC of ANSI codes is the point
      const clean = (): string => output.replace(/\x1b\[[0-9;]*m/g, '');
      child.on('error', (err) => resolve({ code: null, output: clean(), spawnError: err }));
      child.on('close', (code) => resolve({ code, output: clean() }));
    },
  );
  if (spawnError) {
    throw new Error(
      `Cannot run Maven ('${mvn}'): ${spawnError.message}. Install Maven 3 (apt-get install maven) ` +
        `or set SAGAFLOW_MVN to its path; it is needed once to download ${what}.`,
    );
  }
  if (code !== 0) {
    throw new Error(
      `Maven failed (exit ${code}) while downloading ${what}: ${mvn} ${fullArgs.join(' ')}\n` +
        `in ${cwd}\n--- Maven output (tail) ---\n${tail(output, 40)}`,
    );
  }
}

/**
 * Make sure the Kafka jars of `version` are in the cache; returns the libs dir (classpath `<libs>/*`).
 * Safe to call from several processes at once: one downloads, the others wait on the lock.
 */
export async function ensureKafkaJars(
  version: string = defaultVersion(),
  log: (message: string) => void = () => {},
): Promise<string> {
  const cacheDir = kafkaCacheDir(version);
  const libs = join(cacheDir, 'libs');
  if (readMarker(cacheDir, version)) return libs;

  await mkdir(kafkaCacheBase(), { recursive: true });
  await withLock(`${cacheDir}.lock`, 15 * 60_000, log, async () => {
    // Someone else may have finished while we waited for the lock.
    if (readMarker(cacheDir, version)) return;
    try {
      await downloadJars(cacheDir, libs, version, log);
    } catch (err) {
      // No half-filled cache dir left behind (e.g. a mistyped version would leave kafka-4.9.9/).
      await rm(cacheDir, { recursive: true, force: true });
      throw err;
    }
  });
  return libs;
}

async function downloadJars(cacheDir: string, libs: string, version: string, log: (m: string) => void): Promise<void> {
  log(`Downloading Apache Kafka ${version} jars with Maven into ${cacheDir} (once) ...`);
  const started = Date.now();
  await mkdir(cacheDir, { recursive: true });
  // A previous attempt may have died half way: start from an empty libs dir.
  await rm(libs, { recursive: true, force: true });
  rmSync(join(cacheDir, MARKER_FILE), { force: true });
  await writeFile(join(cacheDir, 'pom.xml'), pomXml(version));
  await runMaven(
    ['dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${libs}`],
    cacheDir,
  );
  let jars = await readdir(libs);
  if (!jars.includes(`kafka_2.13-${version}.jar`)) {
    throw new Error(`Maven finished but ${libs} has no kafka_2.13-${version}.jar; got: ${jars.join(', ')}`);
  }
  // Kafka declares log4j-core and slf4j-api but (as a library) no slf4j -> log4j2 binding; its
  // distribution tarball adds one. Without it slf4j falls back to a no-op logger and broker.log stays
  // empty. Pick the binding that matches the slf4j API major version and log4j2 version Kafka uses.
  const log4jVersion = jarVersion(jars, 'log4j-core');
  const slf4jVersion = jarVersion(jars, 'slf4j-api');
  if (log4jVersion && slf4jVersion) {
    const binding = slf4jVersion.startsWith('1.') ? 'log4j-slf4j-impl' : 'log4j-slf4j2-impl';
    await runMaven(
      [
        'dependency:copy',
        `-Dartifact=org.apache.logging.log4j:${binding}:${log4jVersion}`,
        `-DoutputDirectory=${libs}`,
      ],
      cacheDir,
    );
    jars = await readdir(libs);
  } else {
    log(`warning: no log4j-core/slf4j-api among the Kafka ${version} jars; broker logging may be off`);
  }
  const marker: Marker = { layout: CACHE_LAYOUT, version, jars: jars.sort(), createdAt: new Date().toISOString() };
  // The marker is written last: its presence means "complete".
  await writeFile(join(cacheDir, MARKER_FILE), JSON.stringify(marker, null, 2) + '\n');
  log(`Kafka ${version}: ${jars.length} jars ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

function jarVersion(jars: string[], artifactId: string): string | undefined {
  const re = new RegExp(`^${artifactId.replace(/[.-]/g, '\\$&')}-(\\d[^/]*)\\.jar$`);
  for (const jar of jars) {
    const m = re.exec(jar);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * Cross-process lock: `mkdir` is atomic, so whoever creates the dir owns the lock. The owner's pid and
 * host are written inside so a lock left behind by a killed process is detected and broken.
 */
export async function withLock<T>(
  lockDir: string,
  timeoutMs: number,
  log: (message: string) => void,
  fn: () => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const ownerFile = join(lockDir, 'owner.json');
  let announced = false;
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(lockDir);
      writeFileSync(ownerFile, JSON.stringify({ pid: process.pid, host: hostname(), at: Date.now() }));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (isStaleLock(ownerFile)) {
      rmSync(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for lock ${lockDir} (remove it if no process holds it)`);
    }
    if (!announced) {
      log(`Waiting for another process holding ${lockDir} ...`);
      announced = true;
    }
    await delay(Math.min(1000, 50 * 2 ** Math.min(attempt, 5)));
  }
  const releaseOnExit = (): void => rmSync(lockDir, { recursive: true, force: true });
  process.once('exit', releaseOnExit);
  try {
    return await fn();
  } finally {
    process.removeListener('exit', releaseOnExit);
    rmSync(lockDir, { recursive: true, force: true });
  }
}

function isStaleLock(ownerFile: string): boolean {
  try {
    const owner = JSON.parse(readFileSync(ownerFile, 'utf8')) as { pid: number; host: string; at: number };
    if (owner.host === hostname()) return !isPidAlive(owner.pid);
    return Date.now() - owner.at > 60 * 60_000; // another host sharing the cache (NFS home): 1 h
  } catch {
    // The owner has created the dir but not yet written the file, or it died in between. Only call
    // it stale when the dir is old enough that the first case is ruled out.
    try {
      return Date.now() - statSync(join(ownerFile, '..')).mtimeMs > 10_000;
    } catch {
      return false;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Broker configuration
// ---------------------------------------------------------------------------------------------

interface BrokerLayout {
  dataDir: string;
  logDirs: string;
  propsFile: string;
  log4jFile: string;
  logFile: string;
  jvmOutFile: string;
}

function layout(dataDir: string): BrokerLayout {
  return {
    dataDir,
    logDirs: join(dataDir, 'kraft-logs'),
    propsFile: join(dataDir, 'server.properties'),
    log4jFile: join(dataDir, 'log4j2.xml'),
    logFile: join(dataDir, 'broker.log'),
    jvmOutFile: join(dataDir, 'jvm.out'),
  };
}

function majorMinor(version: string): [number, number] {
  const [major = '0', minor = '0'] = version.split('.');
  return [Number(major), Number(minor)];
}

function serverProperties(p: {
  port: number;
  advertisedPort: number;
  controllerPort: number;
  logDirs: string;
  partitions: number;
  version: string;
  overrides: Record<string, string | number | boolean>;
}): string {
  const props: Array<[string, string | number | boolean] | string> = [
    '# Generated by sagaflow scripts/kafka/broker.ts for a local single-node test/dev broker. Do not use in production.',
    '',
    '# KRaft combined mode: this one JVM is both the broker and the (only) controller, no ZooKeeper.',
    ['process.roles', 'broker,controller'],
    ['node.id', 1],
    // Static voter set (kraft.version 0). It stores no controller endpoint in the metadata log, so the
    // same data dir could even be restarted on another controller port; the dynamic quorum of 4.x
    // (controller.quorum.bootstrap.servers + `format --standalone`) buys nothing for a single node.
    ['controller.quorum.voters', `1@127.0.0.1:${p.controllerPort}`],
    ['controller.listener.names', 'CONTROLLER'],
    ['inter.broker.listener.name', 'PLAINTEXT'],
    ['listener.security.protocol.map', 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT'],
    // Loopback only: a dev broker must never be reachable from the network.
    ['listeners', `PLAINTEXT://127.0.0.1:${p.port},CONTROLLER://127.0.0.1:${p.controllerPort}`],
    // Clients connect to the bootstrap address, then to what the metadata advertises. Advertising a
    // proxy's port routes all traffic through the proxy (fault injection).
    ['advertised.listeners', `PLAINTEXT://127.0.0.1:${p.advertisedPort}`],
    ['log.dirs', p.logDirs],
    '',
    '# Single node => every replication factor / min ISR must be 1. With the defaults (3 / 2) the',
    '# internal topics can never be created: __consumer_offsets does not exist, consumer groups hang',
    '# on "The group coordinator is not available", and transactional producers never initialise.',
    ['offsets.topic.replication.factor', 1],
    ['transaction.state.log.replication.factor', 1],
    ['transaction.state.log.min.isr', 1],
    ['min.insync.replicas', 1],
    ['default.replication.factor', 1],
  ];
  if (majorMinor(p.version)[0] >= 4) {
    // Share groups (KIP-932, 4.x) keep their state in an internal topic with the same RF problem.
    props.push(['share.coordinator.state.topic.replication.factor', 1]);
    props.push(['share.coordinator.state.topic.min.isr', 1]);
  }
  props.push(
    '',
    '# Fewer partitions for the internal topics (defaults 50): creating 50 partitions when the first',
    '# consumer group or transactional producer appears costs seconds on a small machine.',
    ['offsets.topic.num.partitions', 10],
    ['transaction.state.log.num.partitions', 10],
    ['num.partitions', p.partitions],
    '',
    '# Tests create their topics explicitly (with the partition count they need). Auto-creation would',
    '# hide a missing createTopics call and create topics with 1 partition behind the test\'s back.',
    ['auto.create.topics.enable', false],
    '',
    '# Tests start consumer groups one after another: do not wait 3 s for more members to join.',
    ['group.initial.rebalance.delay.ms', 0],
    '',
    '# Small segments and short retention: a dev/test broker must not fill the disk, and recovery',
    '# after kill() (which rescans the unflushed active segment) stays fast.',
    ['log.segment.bytes', 8 * 1024 * 1024],
    ['log.retention.hours', 6],
    ['log.retention.bytes', 256 * 1024 * 1024],
    ['log.retention.check.interval.ms', 60_000],
    '# The log cleaner (compacts __consumer_offsets) would reserve 128 MiB of the small heap by default.',
    ['log.cleaner.dedupe.buffer.size', 16 * 1024 * 1024],
    '',
    '# After kill() (no controlled shutdown) the restarted controller still holds the dead incarnation\'s',
    '# registration and rejects the new one (DUPLICATE_BROKER_REGISTRATION) until that session expires:',
    '# 9 s by default, which made restart() take ~13 s. Loopback heartbeats can afford a shorter session.',
    ['broker.heartbeat.interval.ms', 500],
    ['broker.session.timeout.ms', 4000],
    '',
    '# Thread pools sized for a 2-core machine.',
    ['num.network.threads', 2],
    ['num.io.threads', 4],
    ['num.recovery.threads.per.data.dir', 2],
    ['background.threads', 4],
  );
  const overrideKeys = Object.keys(p.overrides);
  const lines = props
    .filter((entry) => typeof entry === 'string' || !overrideKeys.includes(entry[0]))
    .map((entry) => (typeof entry === 'string' ? entry : `${entry[0]}=${String(entry[1])}`));
  if (overrideKeys.length > 0) {
    lines.push('', '# Overrides passed to startKafkaBroker()');
    for (const key of overrideKeys) lines.push(`${key}=${String(p.overrides[key])}`);
  }
  return lines.join('\n') + '\n';
}

function log4j2Xml(logFile: string): string {
  const escaped = logFile.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  // shutdownHook="disable": log4j's own hook would otherwise close the appender before Kafka's shutdown
  // hook logs "shut down completed", leaving the end of a graceful stop invisible.
  return `<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName="${escaped}" filePattern="${escaped}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
`;
}

/** A KRaft cluster id: 16 random bytes, base64url without padding (Kafka's Uuid.toString format). */
function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    // Kafka's own Uuid.randomUuid() rejects ids starting with '-' (they look like a CLI option).
    if (!id.startsWith('-')) return id;
  }
}

function javaBinary(): string {
  const home = process.env.JAVA_HOME;
  return home ? join(home, 'bin', 'java') : 'java';
}

function commonJvmArgs(l: BrokerLayout): string[] {
  return [
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${l.log4jFile}`,
    `-Dkafka.logs.dir=${l.dataDir}`,
  ];
}

async function formatStorageIfNeeded(libs: string, l: BrokerLayout, log: (m: string) => void): Promise<void> {
  // meta.properties is written by the format command; its presence means "formatted".
  if (existsSync(join(l.logDirs, 'meta.properties'))) return;
  const clusterId = newClusterId();
  log(`Formatting KRaft storage in ${l.logDirs} (cluster id ${clusterId})`);
  const args = [
    '-Xmx256m',
    // The format tool is short-lived: skip the optimising JIT tiers, it starts noticeably faster.
    '-XX:TieredStopAtLevel=1',
    ...commonJvmArgs(l),
    '-cp',
    join(libs, '*'),
    KAFKA_STORAGE_MAIN_CLASS,
    'format',
    '--cluster-id',
    clusterId,
    '--config',
    l.propsFile,
  ];
  const result = await new Promise<{ code: number | null; output: string; error?: Error }>((resolve) => {
    let output = '';
    const child = spawn(javaBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (error) => resolve({ code: null, output, error }));
    child.on('close', (code) => resolve({ code, output }));
  });
  if (result.error) {
    throw new Error(`Cannot run '${javaBinary()}': ${result.error.message}. Kafka 4 needs Java 17+ (set JAVA_HOME).`);
  }
  if (result.code !== 0) {
    throw new Error(
      `Formatting the KRaft storage failed (exit ${result.code}): ${KAFKA_STORAGE_MAIN_CLASS} format\n${tail(result.output, 30)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/**
 * Synchronous clean-ups run when this process exits, one per non-detached broker: SIGKILL its JVM and
 * delete its temp data dir. So a test run that ends without stop() (a crash, process.exit in a
 * reporter) leaves neither a JVM holding ports and 512 MB of heap nor a stray temp dir behind.
 */
const exitCleanups = new Set<() => void>();
let exitHookInstalled = false;

function onProcessExit(cleanup: () => void): void {
  exitCleanups.add(cleanup);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous; SIGKILL is (the kernel tears the JVM down, nothing to wait for)
  // and so is rmSync. Once SIGKILL is delivered the JVM runs no more code, so it cannot recreate files.
  process.on('exit', () => {
    for (const run of exitCleanups) {
      try {
        run();
      } catch {
        /* best effort */
      }
    }
  });
}

let setprivChecked: boolean | undefined;
/**
 * `setpriv --pdeathsig KILL` (util-linux) makes the kernel SIGKILL the JVM when the Node process dies
 * in a way that skips 'exit' handlers (SIGKILL, uncaught signal, OOM killer). It execs java, so the pid
 * stays the JVM's. Note that the "parent" is the spawning *thread*: spawning from a worker_thread ties
 * the JVM to that thread's life.
 */
export function hasSetpriv(): boolean {
  if (setprivChecked === undefined) {
    if (process.platform !== 'linux') setprivChecked = false;
    else {
      const r = spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' });
      setprivChecked = r.status === 0;
    }
  }
  return setprivChecked;
}

export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether `pid` is a live Kafka JVM serving `dataDir` (guards against pid reuse after a reboot or
 * a crash when all we have is a pid from a state file). Falls back to a liveness check off Linux.
 */
export function isKafkaProcess(pid: number, dataDir?: string): boolean {
  if (!isPidAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.length === 0) return false; // zombie
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    if (/^State:\s+Z/m.test(status)) return false;
    return cmdline.includes(KAFKA_SERVER_MAIN_CLASS) && (!dataDir || cmdline.includes(dataDir));
  } catch {
    return process.platform !== 'linux';
  }
}

/**
 * SIGTERM `pid`, wait up to `timeoutMs`, then SIGKILL. For a server that is not our child (CLI stop);
 * `isStill` tells whether the pid is still that server (default: a Kafka JVM).
 */
export async function stopProcess(
  pid: number,
  timeoutMs = 30_000,
  isStill: (pid: number) => boolean = isKafkaProcess,
): Promise<void> {
  if (!signal(pid, 'SIGTERM')) return;
  const deadline = Date.now() + timeoutMs;
  for (let wait = 25; Date.now() < deadline; wait = Math.min(wait * 2, 250)) {
    if (!isStill(pid)) return;
    await delay(wait);
  }
  signal(pid, 'SIGKILL');
  const killDeadline = Date.now() + 10_000;
  while (isStill(pid) && Date.now() < killDeadline) await delay(50);
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

interface RunningJvm {
  child: ChildProcess;
  pid: number;
  /** Resolves when the JVM has exited (and been reaped). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: () => boolean;
}

function spawnBroker(libs: string, l: BrokerLayout, heapMb: number, detached: boolean): RunningJvm {
  const javaArgs = [
    `-Xmx${heapMb}m`,
    `-Xms${Math.min(256, heapMb)}m`,
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:+ExplicitGCInvokesConcurrent',
    // A broker OOM in a test should fail fast instead of limping on.
    '-XX:+ExitOnOutOfMemoryError',
    ...commonJvmArgs(l),
    '-cp',
    join(libs, '*'),
    KAFKA_SERVER_MAIN_CLASS,
    l.propsFile,
  ];
  const usePdeathsig = !detached && hasSetpriv();
  const command = usePdeathsig ? 'setpriv' : javaBinary();
  const args = usePdeathsig ? ['--pdeathsig', 'KILL', '--', javaBinary(), ...javaArgs] : javaArgs;
  // stdout/stderr go to a file, not a pipe: a pipe would tie the JVM to this process (SIGPIPE/blocking
  // once nobody reads it) and the broker's useful output is in broker.log anyway.
  const out = openSync(l.jvmOutFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { cwd: l.dataDir, stdio: ['ignore', out, out], detached });
  } finally {
    closeSync(out);
  }
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, sig) => {
      exitInfo = { code, signal: sig };
      resolve(exitInfo);
    });
    child.once('error', (err) => {
      exitInfo = { code: null, signal: null };
      writeFileSync(l.jvmOutFile, `spawn ${command} failed: ${err.message}\n`, { flag: 'a' });
      resolve(exitInfo);
    });
  });
  // Detached (CLI): own process group (so a Ctrl-C in the terminal does not reach it) and no reference
  // keeping this process alive.
  if (detached) child.unref();
  return { child, pid: child.pid ?? -1, exited, hasExited: () => exitInfo !== undefined };
}

// ---------------------------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------------------------

export interface WaitForKafkaOptions {
  /** Deadline. Default 60 000 ms. */
  timeoutMs?: number;
  /** Checked between attempts: return a reason (e.g. "the JVM exited") to fail early. */
  abortReason?: () => string | undefined;
  /**
   * Ports to rewrite when connecting, `{ advertisedPort: listenerPort }`. When the broker advertises a
   * proxy's port, the probe must not depend on the proxy (which may not run yet): it connects to the
   * broker's own listener instead of the advertised address.
   */
  portMap?: Record<number, number>;
}

/**
 * Poll until a Kafka broker at `brokers` answers a metadata request (kafkajs admin connect +
 * describeCluster with at least one broker) and its group coordinator is available.
 */
export async function waitForKafkaReady(brokers: string, options: WaitForKafkaOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const portMap = options.portMap ?? {};
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt yet';
  const socketFactory: ISocketFactory = ({ host, port, onConnect }) => {
    const socket = netConnect({ host, port: portMap[port] ?? port }, onConnect);
    socket.setKeepAlive(true, 60_000);
    return socket;
  };
  for (let wait = 50; ; wait = Math.min(Math.round(wait * 1.5), 500)) {
    const reason = options.abortReason?.();
    if (reason) throw new Error(reason);
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const kafka = new Kafka({
      clientId: 'sagaflow-kafka-ready-probe',
      brokers: brokers.split(','),
      logLevel: logLevel.NOTHING,
      connectionTimeout: Math.max(100, Math.min(2_000, remaining)),
      requestTimeout: Math.max(100, Math.min(5_000, remaining)),
      retry: { retries: 0 },
      socketFactory,
    });
    const admin = kafka.admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length === 0) {
        lastError = 'describeCluster returned no brokers';
      } else {
        // Also wait for the group coordinator: the first FindCoordinator creates __consumer_offsets and
        // its partitions must then load. Without this, the first consumer group of a test run sees
        // "The group coordinator is not available" / "coordinator is loading" and restarts itself.
        await admin.describeGroups(['sagaflow-kafka-ready-probe']);
        return;
      }
    } catch (err) {
      lastError = (err as Error).message;
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await delay(Math.min(wait, Math.max(0, deadline - Date.now())));
  }
  throw new Error(`Kafka at ${brokers} not ready after ${timeoutMs} ms (last error: ${lastError})`);
}

// ---------------------------------------------------------------------------------------------
// Public entry point
// ---------------------------------------------------------------------------------------------

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). Racy by nature, fine for tests. */
export async function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}

export async function startKafkaBroker(options: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
  const log = options.log ?? (() => {});
  const version = options.version ?? defaultVersion();
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
  const heapMb = options.heapMb ?? 512;
  const detached = options.detached ?? false;

  const libs = await ensureKafkaJars(version, log);

  const createdDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'sagaflow-kafka-')));
  const removeDataDirOnStop = options.removeDataDirOnStop ?? createdDataDir;
  const l = layout(dataDir);
  await mkdir(l.logDirs, { recursive: true });

  const port = options.port ?? (await findFreePort());
  let controllerPort = await findFreePort();
  while (controllerPort === port) controllerPort = await findFreePort();
  const advertisedPort = options.advertisedPort ?? port;
  const brokers = `127.0.0.1:${port}`;

  await writeFile(
    l.propsFile,
    serverProperties({
      port,
      advertisedPort,
      controllerPort,
      logDirs: l.logDirs,
      partitions: options.partitions ?? 1,
      version,
      overrides: options.overrides ?? {},
    }),
  );
  await writeFile(l.log4jFile, log4j2Xml(l.logFile));

  try {
    await formatStorageIfNeeded(libs, l, log);
  } catch (err) {
    if (createdDataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  let jvm: RunningJvm | undefined;
  let stopped = false;
  const exitCleanup = (): void => {
    if (jvm && !jvm.hasExited()) jvm.child.kill('SIGKILL');
    if (removeDataDirOnStop) rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
  };
  if (!detached) onProcessExit(exitCleanup);

  async function launch(): Promise<void> {
    const started = Date.now();
    log(`Starting Kafka ${version} on ${brokers} (data dir ${dataDir})`);
    const current = spawnBroker(libs, l, heapMb, detached);
    jvm = current;
    if (current.pid > 0) options.onSpawn?.(current.pid);
    try {
      await waitForKafkaReady(brokers, {
        timeoutMs: readyTimeoutMs,
        abortReason: () => (current.hasExited() ? `Kafka JVM (pid ${current.pid}) exited during startup` : undefined),
        portMap: advertisedPort === port ? {} : { [advertisedPort]: port },
      });
    } catch (err) {
      await terminate(current, 'SIGKILL', 5_000);
      throw new Error(`${(err as Error).message}\n${describeLogs(l)}`);
    }
    log(`Kafka ready on ${brokers} in ${((Date.now() - started) / 1000).toFixed(1)} s (pid ${current.pid})`);
  }

  async function terminate(target: RunningJvm, first: NodeJS.Signals, timeoutMs: number): Promise<void> {
    if (target.hasExited()) return;
    target.child.kill(first);
    // The deadline timer is cancelled as soon as the JVM exits: a pending 30 s timer would keep the
    // event loop (and a CLI or test worker) alive for nothing.
    const cancel = new AbortController();
    const timer = delay(timeoutMs, 'timeout' as const, { signal: cancel.signal }).catch(() => 'cancelled' as const);
    const result = await Promise.race([target.exited, timer]);
    cancel.abort();
    if (result === 'timeout') {
      log(`Kafka pid ${target.pid} did not exit ${timeoutMs} ms after ${first}; sending SIGKILL`);
      target.child.kill('SIGKILL');
      await target.exited;
    }
  }

  try {
    await launch();
  } catch (err) {
    exitCleanups.delete(exitCleanup);
    if (createdDataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  const broker: KafkaBroker = {
    brokers,
    port,
    advertisedPort,
    controllerPort,
    dataDir,
    get pid() {
      return jvm?.pid ?? -1;
    },
    logFile: l.logFile,
    version,
    removeDataDirOnStop,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (jvm) await terminate(jvm, 'SIGTERM', stopTimeoutMs);
      exitCleanups.delete(exitCleanup);
      if (removeDataDirOnStop) await rm(dataDir, { recursive: true, force: true });
    },
    async kill() {
      if (jvm) await terminate(jvm, 'SIGKILL', 10_000);
    },
    async restart() {
      if (stopped) throw new Error('restart() after stop(): the broker and maybe its data dir are gone');
      if (jvm && !jvm.hasExited()) await terminate(jvm, 'SIGTERM', stopTimeoutMs);
      await launch();
    },
  };
  return broker;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function tail(text: string, lines: number): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

export function tailFile(file: string, lines: number): string {
  try {
    return tail(readFileSync(file, 'utf8'), lines);
  } catch {
    return '(no such file)';
  }
}

/**
 * For error messages: the first ERROR/FATAL entries of broker.log (the cause; a failed start is followed
 * by hundreds of shutdown lines), then the tails of broker.log and jvm.out.
 */
export function describeLogs(l: { logFile: string; jvmOutFile: string } | string): string {
  const files = typeof l === 'string' ? layout(l) : l;
  let errors = '';
  try {
    const lines = readFileSync(files.logFile, 'utf8').split('\n');
    const picked: string[] = [];
    for (let i = 0; i < lines.length && picked.length < 30; i++) {
      if (/^\[[^\]]+\] (ERROR|FATAL) /.test(lines[i] ?? '')) {
        // The entry plus its exception lines (indented or "Caused by"), at most 4 of them.
        picked.push(lines[i] ?? '');
        for (let j = i + 1; j < lines.length && j <= i + 4 && !/^\[/.test(lines[j] ?? ''); j++) picked.push(lines[j] ?? '');
      }
    }
    if (picked.length > 0) errors = `--- ${files.logFile} (first errors) ---\n${picked.join('\n')}\n`;
  } catch {
    /* no log yet */
  }
  return (
    errors +
    `--- ${files.logFile} (tail) ---\n${tailFile(files.logFile, 15)}\n` +
    `--- ${files.jvmOutFile} (tail) ---\n${tailFile(files.jvmOutFile, 20)}`
  );
}
