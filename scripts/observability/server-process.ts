/**
 * One local server process (Prometheus, Zipkin's JVM) owned by this Node process: spawned with its
 * output in a file, waited on until an HTTP probe says it is ready, stopped with a deadline.
 *
 * Not detached (tests): the kernel SIGKILLs it if this process dies without running 'exit' handlers
 * (setpriv --pdeathsig), and an 'exit' handler kills it and removes its temp dir otherwise, so a
 * crashed test run leaves no server holding ports and memory. Detached (the CLI): its own process
 * group, outliving this process; the CLI keeps its pid in a state file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { findFreePort, hasSetpriv, tailFile } from '../kafka/broker.js';

/** Options both backends take (each adds its own). */
export interface LocalServerOptions {
  /** Port on 127.0.0.1. Default: a free port. */
  port?: number;
  /** Config, data and log. Default: a new temp dir, removed by stop(). */
  dataDir?: string;
  readyTimeoutMs?: number;
  /** Before SIGKILL. Default 10 000 ms. */
  stopTimeoutMs?: number;
  /** Outlive this process (the CLI). Default false: killed when this process exits. */
  detached?: boolean;
  log?: (message: string) => void;
  onSpawn?: (pid: number) => void;
}

/** What both backends are once started. */
export interface LocalServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly dataDir: string;
  readonly logFile: string;
  readonly version: string;
  /** Milliseconds from spawn to ready (excludes any download). */
  readonly startMs: number;
  /** SIGTERM, SIGKILL after stopTimeoutMs; removes a temp data dir. */
  stop(): Promise<void>;
}

export interface LaunchSpec {
  /** For messages: "Prometheus", "Zipkin 3.6.1". */
  name: string;
  version: string;
  /** Prefix of the temp data dir, e.g. `sagaflow-zipkin-`. */
  tempPrefix: string;
  /** File name of the process output inside the data dir. */
  logName: string;
  readyTimeoutMs: number;
  /** Writes any config into `dataDir`; returns what to run. */
  prepare(dataDir: string, port: number): Promise<{ command: string; args: string[]; env: NodeJS.ProcessEnv }>;
  /** One readiness probe: `true`, or why not yet. */
  ready(url: string): Promise<true | string>;
}

/**
 * Data dir, port, spawn, wait until ready; on failure the process is killed and a temp data dir
 * removed before the error (with the tail of the log) is thrown.
 */
export async function launchLocalServer(options: LocalServerOptions, spec: LaunchSpec): Promise<LocalServer> {
  const log = options.log ?? (() => {});
  const createdDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), spec.tempPrefix)));
  const removeDataDir = async (): Promise<void> => {
    if (createdDataDir) await rm(dataDir, { recursive: true, force: true });
  };
  const logFile = join(dataDir, spec.logName);
  const port = options.port ?? (await findFreePort());
  const url = `http://127.0.0.1:${port}`;
  let server: ServerProcess;
  const started = Date.now();
  try {
    const run = await spec.prepare(dataDir, port);
    log(`Starting ${spec.name} on ${url} (log ${logFile})`);
    server = spawnServer({
      ...run,
      cwd: dataDir,
      outFile: logFile,
      detached: options.detached ?? false,
      tempDir: createdDataDir ? dataDir : undefined,
    });
  } catch (err) {
    await removeDataDir();
    throw err;
  }
  if (server.pid > 0) options.onSpawn?.(server.pid);
  try {
    await waitUntilReady(spec.name, server, logFile, () => spec.ready(url), spec.readyTimeoutMs);
  } catch (err) {
    await server.stop(2_000);
    await removeDataDir();
    throw err;
  }
  const startMs = Date.now() - started;
  log(`${spec.name} ready on ${url} in ${(startMs / 1000).toFixed(1)} s (pid ${server.pid})`);
  let stopped = false;
  return {
    url,
    port,
    pid: server.pid,
    dataDir,
    logFile,
    version: spec.version,
    startMs,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop(options.stopTimeoutMs ?? 10_000);
      await removeDataDir();
    },
  };
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcess {
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
  hasExited(): boolean;
  /** SIGTERM, wait up to `timeoutMs`, then SIGKILL; resolves once the process is gone. */
  stop(timeoutMs: number): Promise<void>;
}

export interface SpawnServerOptions {
  command: string;
  args: string[];
  /** The complete environment: callers pass what the server needs, nothing inherited by accident. */
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** stdout and stderr of the process, appended. */
  outFile: string;
  detached: boolean;
  /** Removed (recursively) by the exit handler when this process exits before stop(). */
  tempDir?: string;
}

export function spawnServer(o: SpawnServerOptions): ServerProcess {
  const usePdeathsig = !o.detached && hasSetpriv();
  const command = usePdeathsig ? 'setpriv' : o.command;
  const args = usePdeathsig ? ['--pdeathsig', 'KILL', '--', o.command, ...o.args] : o.args;
  // A file, not a pipe: a pipe nobody reads would block the server once its buffer is full, and
  // would tie a detached server to this process.
  const out = openSync(o.outFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', out, out], detached: o.detached });
  } finally {
    closeSync(out);
  }
  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => resolve((exitInfo = { code, signal })));
    child.once('error', (err) => {
      writeFileSync(o.outFile, `spawn ${command} failed: ${err.message}\n`, { flag: 'a' });
      resolve((exitInfo = { code: null, signal: null }));
    });
  });
  const onExit = (): void => {
    if (!exitInfo) child.kill('SIGKILL');
    if (o.tempDir) rmSync(o.tempDir, { recursive: true, force: true, maxRetries: 3 });
  };
  if (o.detached) child.unref();
  else process.once('exit', onExit);

  return {
    pid: child.pid ?? -1,
    exited,
    hasExited: () => exitInfo !== undefined,
    async stop(timeoutMs) {
      process.removeListener('exit', onExit);
      if (exitInfo) return;
      child.kill('SIGTERM');
      // The deadline timer is cancelled when the process exits: a pending timer would keep a CLI
      // or a test worker alive for nothing.
      const cancel = new AbortController();
      const timer = delay(timeoutMs, 'timeout' as const, { signal: cancel.signal }).catch(() => 'cancelled' as const);
      const result = await Promise.race([exited, timer]);
      cancel.abort();
      if (result === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/**
 * Polls `probe` until it returns `true`; any other value (or a thrown error) is the reason it is
 * not ready yet, quoted when the deadline passes. Fails at once when the process has exited.
 */
export async function waitUntilReady(
  name: string,
  server: Pick<ServerProcess, 'hasExited' | 'pid'>,
  outFile: string,
  probe: () => Promise<true | string>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt yet';
  for (let wait = 25; ; wait = Math.min(Math.round(wait * 1.5), 250)) {
    if (server.hasExited()) {
      throw new Error(`${name} (pid ${server.pid}) exited during startup; last probe: ${last}\n--- ${outFile} (tail) ---\n${tailFile(outFile, 30)}`);
    }
    try {
      const r = await probe();
      if (r === true) return;
      last = r;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`${name} not ready after ${timeoutMs} ms (last probe: ${last})\n--- ${outFile} (tail) ---\n${tailFile(outFile, 30)}`);
    }
    await delay(wait);
  }
}

/** GET with a per-request deadline; resolves with status and body text (any status). */
export async function httpGet(url: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text() };
}

/** GET expecting 200 and JSON; errors quote the URL, the status and the start of the body. */
export async function getJson<T>(url: string, timeoutMs = 5_000): Promise<T> {
  const { status, body } = await httpGet(url, timeoutMs);
  if (status !== 200) throw new Error(`GET ${url}: HTTP ${status}: ${body.slice(0, 300)}`);
  return JSON.parse(body) as T;
}

/**
 * Whether `pid` is alive, not a zombie, and its command line contains `marker` (its data dir):
 * guards the CLI against pid reuse when all it has is a pid from a state file.
 */
export function isServerProcess(pid: number, marker: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (process.platform !== 'linux') return true;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.length === 0 || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return false;
    return cmdline.includes(marker);
  } catch {
    return false;
  }
}

/** Runs a short-lived command to completion; output is stdout and stderr together. Kills it at the deadline. */
export async function runToExit(
  command: string,
  args: string[],
  o: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    let output = '';
    const child = spawn(command, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      output += `\n(killed after ${o.timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, output: `cannot run '${command}': ${err.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}
