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
 *
 * This file is the public entry point; the jobs live beside it: release.ts (which Kafka), cache.ts
 * and lock.ts (the jar cache), config.ts (server.properties, log4j2, data dir layout), jvm.ts (storage
 * format and the broker JVM), process.ts (pids, stopping, clean-up at exit), readiness.ts (is it
 * answering), ports.ts and logs.ts.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ensureKafkaJars } from './cache.js';
import { layout, log4j2Xml, serverProperties } from './config.js';
import { formatStorageIfNeeded, spawnBroker, type RunningJvm } from './jvm.js';
import { describeLogs } from './logs.js';
import { findFreePort } from './ports.js';
import { cancelOnProcessExit, onProcessExit } from './process.js';
import { waitForKafkaReady } from './readiness.js';
import { defaultVersion } from './release.js';

export { DEFAULT_KAFKA_VERSION, KAFKA_SERVER_MAIN_CLASS, KAFKA_STORAGE_MAIN_CLASS } from './release.js';
export { ensureKafkaJars, kafkaCacheBase, kafkaCacheDir, runMaven, sagaflowCacheRoot } from './cache.js';
export { withLock } from './lock.js';
export { hasSetpriv } from './jvm.js';
export { isKafkaProcess, isPidAlive, stopProcess } from './process.js';
export { waitForKafkaReady, type WaitForKafkaOptions } from './readiness.js';
export { findFreePort } from './ports.js';
export { describeLogs, tailFile } from './logs.js';

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
    cancelOnProcessExit(exitCleanup);
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
      cancelOnProcessExit(exitCleanup);
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
