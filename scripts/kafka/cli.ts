/**
 * Command line for a local development Kafka broker that runs in the background (no Docker):
 *
 *   npx tsx scripts/kafka/cli.ts start   # prints exactly one stdout line: KAFKA_BROKERS=127.0.0.1:<port>
 *   npx tsx scripts/kafka/cli.ts status  # exit 0 and a description if running, exit 1 if not
 *   npx tsx scripts/kafka/cli.ts stop    # graceful stop, removes its temp data dir and the state file
 *
 * e.g. `eval "$(npx tsx scripts/kafka/cli.ts start)" && export KAFKA_BROKERS`. (`npm run kafka:start`
 * works too, but npm prints its own "> sagaflow@..." banner on stdout unless run with `npm run -s`.)
 *
 * Options of start: --port N, --data-dir DIR (kept on stop), --kafka-version V, --heap-mb N,
 * --timeout-ms N (readiness deadline). Progress and errors go to stderr.
 *
 * The broker's pid, ports and data dir are kept in a state file, `~/.cache/sagaflow/kafka-run/state.json`
 * (env SAGAFLOW_KAFKA_STATE names another file), so start is idempotent and stop finds the JVM.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { positiveInt, readJsonFile, runCli, writeJsonFileAtomic } from '../cli-support.js';
import {
  isKafkaProcess,
  sagaflowCacheRoot,
  startKafkaBroker,
  stopProcess,
  waitForKafkaReady,
  withLock,
} from './broker.js';

interface State {
  pid: number;
  brokers: string;
  port: number;
  advertisedPort: number;
  controllerPort: number;
  dataDir: string;
  logFile: string;
  version: string;
  /** The data dir is a temp dir created for this broker: stop deletes it. */
  ownsDataDir: boolean;
  startedAt: string;
}

const stateFile = process.env.SAGAFLOW_KAFKA_STATE || join(sagaflowCacheRoot(), 'kafka-run', 'state.json');

function info(message: string): void {
  process.stderr.write(`[kafka] ${message}\n`);
}

function readState(): State | undefined {
  return readJsonFile<State>(stateFile);
}

function writeState(state: State): void {
  writeJsonFileAtomic(stateFile, state);
}

function isRunning(state: State): boolean {
  return isKafkaProcess(state.pid, state.dataDir);
}

/** Forget a broker that is no longer running (crashed, machine rebooted): remove its temp dir too. */
function cleanupStale(state: State): void {
  if (state.ownsDataDir && existsSync(state.dataDir)) rmSync(state.dataDir, { recursive: true, force: true });
  rmSync(stateFile, { force: true });
}


async function start(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'kafka-version': { type: 'string' },
      'heap-mb': { type: 'string' },
      'timeout-ms': { type: 'string' },
    },
    strict: true,
  });
  const readyTimeoutMs = positiveInt('timeout-ms', values['timeout-ms']) ?? 60_000;
  mkdirSync(dirname(stateFile), { recursive: true });

  // The lock makes two concurrent `start`s end up with one broker (the second waits, then reuses it).
  return withLock(`${stateFile}.lock`, 10 * 60_000, info, async () => {
    const existing = readState();
    if (existing) {
      if (isRunning(existing)) {
        await waitForKafkaReady(existing.brokers, {
          timeoutMs: readyTimeoutMs,
          portMap: existing.advertisedPort === existing.port ? {} : { [existing.advertisedPort]: existing.port },
        });
        info(`already running (pid ${existing.pid}, data dir ${existing.dataDir})`);
        process.stdout.write(`KAFKA_BROKERS=${existing.brokers}\n`);
        return 0;
      }
      info(`previous broker (pid ${existing.pid}) is gone; cleaning up its state`);
      cleanupStale(existing);
    }

    // Ctrl-C while waiting for readiness must not leave a detached JVM behind that no state file knows.
    let spawnedPid: number | undefined;
    const abort = (sig: NodeJS.Signals): void => {
      if (spawnedPid !== undefined) {
        try {
          process.kill(spawnedPid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', abort);
    process.once('SIGTERM', abort);

    const started = Date.now();
    const dataDir = values['data-dir'];
    const broker = await startKafkaBroker({
      detached: true,
      port: positiveInt('port', values.port),
      dataDir,
      version: values['kafka-version'],
      heapMb: positiveInt('heap-mb', values['heap-mb']),
      readyTimeoutMs,
      log: info,
      onSpawn: (pid) => (spawnedPid = pid),
    });
    process.removeListener('SIGINT', abort);
    process.removeListener('SIGTERM', abort);

    writeState({
      pid: broker.pid,
      brokers: broker.brokers,
      port: broker.port,
      advertisedPort: broker.advertisedPort,
      controllerPort: broker.controllerPort,
      dataDir: broker.dataDir,
      logFile: broker.logFile,
      version: broker.version,
      ownsDataDir: dataDir === undefined,
      startedAt: new Date().toISOString(),
    });
    info(
      `Kafka ${broker.version} started in ${((Date.now() - started) / 1000).toFixed(1)} s: pid ${broker.pid}, ` +
        `log ${broker.logFile}; stop it with: npx tsx scripts/kafka/cli.ts stop`,
    );
    process.stdout.write(`KAFKA_BROKERS=${broker.brokers}\n`);
    return 0;
  });
}

async function stop(): Promise<number> {
  if (!existsSync(stateFile)) {
    info(`no broker to stop (no state file ${stateFile})`);
    return 0;
  }
  return withLock(`${stateFile}.lock`, 10 * 60_000, info, async () => {
    const state = readState();
    if (!state) {
      rmSync(stateFile, { force: true });
      info('no broker to stop (unreadable state file removed)');
      return 0;
    }
    if (isRunning(state)) {
      const started = Date.now();
      await stopProcess(state.pid, 30_000);
      info(`stopped pid ${state.pid} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } else {
      info(`pid ${state.pid} was not running`);
    }
    cleanupStale(state);
    if (!state.ownsDataDir) info(`kept data dir ${state.dataDir}`);
    return 0;
  });
}

function status(): number {
  const state = readState();
  if (state && isRunning(state)) {
    process.stdout.write(
      `running pid=${state.pid} KAFKA_BROKERS=${state.brokers} version=${state.version} ` +
        `dataDir=${state.dataDir} log=${state.logFile} since=${state.startedAt}\n`,
    );
    return 0;
  }
  process.stdout.write(state ? `not running (stale state for pid ${state.pid})\n` : 'not running\n');
  return 1;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'stop':
      return stop();
    case 'status':
      return status();
    default:
      process.stderr.write(
        'usage: tsx scripts/kafka/cli.ts start [--port N] [--data-dir DIR] [--kafka-version V] [--heap-mb N] [--timeout-ms N]\n' +
          '       tsx scripts/kafka/cli.ts stop | status\n',
      );
      return 2;
  }
}

runCli(main, info);
