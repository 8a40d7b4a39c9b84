/** The broker's JVMs: the one-off KRaft storage format, and the broker itself. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newClusterId, type BrokerLayout } from './config.js';
import { tail } from './logs.js';
import { KAFKA_SERVER_MAIN_CLASS, KAFKA_STORAGE_MAIN_CLASS } from './release.js';

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

export async function formatStorageIfNeeded(libs: string, l: BrokerLayout, log: (m: string) => void): Promise<void> {
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

export interface RunningJvm {
  child: ChildProcess;
  pid: number;
  /** Resolves when the JVM has exited (and been reaped). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: () => boolean;
}

export function spawnBroker(libs: string, l: BrokerLayout, heapMb: number, detached: boolean): RunningJvm {
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
