/**
 * What the Docker tests (test/docker/*.test.ts) share: the `docker` and compose command lines, the
 * gate that decides whether they run, and the images they use.
 *
 * They run from `npm test` only when a Docker engine answers, the images are there (present, or
 * pulled within a short deadline) and, for the stack tests, a compose CLI is installed; otherwise
 * each file prints one loud SKIPPED line with the reason. SAGAFLOW_DOCKER_TESTS=require (CI) turns
 * that skip into a failure; SAGAFLOW_DOCKER_TESTS=skip skips them on purpose.
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { checkContainers, testImages } from '../helpers/containers.js';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** The images the Docker path uses, from the same variables as docker-compose.yml. */
export function dockerImages(env: NodeJS.ProcessEnv = process.env): { postgres: string; rabbitmq: string; kafka: string; node: string } {
  return { ...testImages(env), node: env.SAGAFLOW_NODE_IMAGE?.trim() || 'node:20-bookworm-slim' };
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (or its deadline: then killed, and the result says so). */
export function run(file: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; killed?: boolean }) | null;
        const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        resolve({ code, stdout, stderr: e?.killed ? `${stderr}\n(killed at its deadline of ${opts.timeoutMs ?? 120_000} ms)` : stderr });
      },
    );
  });
}

/** `run`, failing with the command's output when it exits non-zero. */
export async function ok(file: string, args: readonly string[], opts: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${tail(r.stderr || r.stdout, 60)}`);
  return r.stdout;
}

export const docker = (args: readonly string[], opts: Parameters<typeof run>[2] = {}) => ok('docker', args, opts);

export function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

/** The compose command line: v2 (`docker compose`) when installed, else v1 (`docker-compose`). */
export interface ComposeCli {
  readonly file: string;
  readonly prefix: readonly string[];
  readonly version: string;
}

export async function findCompose(): Promise<ComposeCli | undefined> {
  const forced = process.env.SAGAFLOW_COMPOSE?.trim();
  const candidates: ComposeCli[] = [
    { file: 'docker', prefix: ['compose'], version: '' },
    { file: 'docker-compose', prefix: [], version: '' },
  ].filter((c) => !forced || [c.file, ...c.prefix].join(' ') === forced);
  for (const c of candidates) {
    const r = await run(c.file, [...c.prefix, 'version'], { timeoutMs: 15_000 });
    if (r.code === 0) return { ...c, version: r.stdout.split('\n')[0]!.trim() };
  }
  return undefined;
}

export type Gate = { run: true; notes: string[] } | { run: false; reason: string };

/**
 * Whether this file's Docker tests run: the docker CLI and an engine answer, the images are there,
 * and (`needsCompose`) a compose CLI exists. Prints the one loud line when they do not; throws
 * instead under SAGAFLOW_DOCKER_TESTS=require.
 */
export async function dockerGate(what: string, images: readonly string[], needsCompose = false): Promise<Gate> {
  const mode = process.env.SAGAFLOW_DOCKER_TESTS?.trim() || 'auto';
  let gate: Gate;
  if (mode === 'skip') gate = { run: false, reason: 'SAGAFLOW_DOCKER_TESTS=skip' };
  else if (!(await hasDockerCli())) gate = { run: false, reason: 'the docker command is not installed' };
  else {
    const check = await checkContainers(images);
    if (!check.usable) gate = { run: false, reason: check.reason };
    else if (needsCompose && !(await findCompose())) gate = { run: false, reason: 'no compose CLI (`docker compose` or `docker-compose`) is installed' };
    else gate = { run: true, notes: check.notes };
  }
  if (!gate.run) {
    if (mode === 'require') throw new Error(`SAGAFLOW_DOCKER_TESTS=require, but the Docker tests (${what}) cannot run: ${gate.reason}`);
    console.warn(`[sagaflow docker tests] WARNING: ${what} SKIPPED: ${gate.reason}`);
  }
  return gate;
}

async function hasDockerCli(): Promise<boolean> {
  return (await run('docker', ['--version'], { timeoutMs: 15_000 })).code === 0;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A container's state as `docker inspect` reports it. */
export interface ContainerState {
  id: string;
  name: string;
  status: string;
  health: string | undefined;
  exitCode: number;
  restartCount: number;
  startedAt: string;
}

export async function inspect(ids: readonly string[]): Promise<ContainerState[]> {
  if (ids.length === 0) return [];
  const out = await docker(['inspect', ...ids]);
  const raw = JSON.parse(out) as {
    Id: string;
    Name: string;
    RestartCount: number;
    State: { Status: string; ExitCode: number; StartedAt: string; Health?: { Status: string } };
  }[];
  return raw.map((c) => ({
    id: c.Id,
    name: c.Name.replace(/^\//, ''),
    status: c.State.Status,
    health: c.State.Health?.Status,
    exitCode: c.State.ExitCode,
    restartCount: c.RestartCount,
    startedAt: c.State.StartedAt,
  }));
}
