/**
 * The clients of the conformance tests, written by others and installed from Debian by
 * scripts/conformance/install.sh (called by .ci/run): python3-pika for /usr/bin/python3, and kcat.
 * A test that needs one that is missing skips LOUDLY, saying why and how to install it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../helpers/wait.js';

export const PYTHON = '/usr/bin/python3';
const INSTALL = 'run `bash scripts/conformance/install.sh` (as root) to install it';

/** Why the Python participant cannot run here, or undefined when it can. */
export function missingPika(): string | undefined {
  const r = spawnSync(PYTHON, ['-c', 'import pika; print(pika.__version__)'], { encoding: 'utf8' });
  if (r.error) return `${PYTHON} is not there (${r.error.message}); ${INSTALL}`;
  if (r.status !== 0) return `${PYTHON} has no pika module (Debian package python3-pika); ${INSTALL}`;
  return undefined;
}

/** Why kcat cannot run here, or undefined when it can. */
export function missingKcat(): string | undefined {
  const r = spawnSync('kcat', ['-V'], { encoding: 'utf8' });
  if (r.error) return `kcat is not on PATH (Debian package kcat); ${INSTALL}`;
  return undefined;
}

export function warnSkipped(what: string, reason: string): void {
  console.warn(`[conformance] WARNING: ${what} is SKIPPED: ${reason}`);
}

/**
 * A foreign process that prints JSON lines on stdout: started, awaited until a line with the
 * `ready` event, stopped with SIGTERM, its JSON lines and its stderr kept (stderr also in a log file).
 */
export class JsonLinesProcess {
  readonly #child: ChildProcess;
  readonly #exit: Promise<number | null>;
  readonly #logFile: string;
  #stdout = '';

  readonly name: string;

  constructor(command: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; logDir: string; name: string }) {
    this.name = opts.name;
    this.#logFile = join(opts.logDir, `${opts.name}.log`);
    const log = createWriteStream(this.#logFile, { flags: 'a' });
    this.#child = spawn(command, [...args], { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child.stderr!.pipe(log);
    this.#child.stdout!.on('data', (b: Buffer) => {
      this.#stdout += b.toString();
      log.write(b);
    });
    this.#exit = new Promise((resolve) => this.#child.once('exit', (code) => resolve(code)));
  }

  /** Every complete JSON line printed so far. */
  events(): Record<string, unknown>[] {
    return this.#stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async ready(event: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `${this.name} to print "${event}"`,
      () => {
        if (this.#child.exitCode !== null) throw new Error(`${this.name} exited ${this.#child.exitCode} before "${event}"; log:\n${this.log()}`);
        return this.events().some((e) => e.event === event);
      },
      (seen) => seen,
      { timeoutMs },
    );
  }

  /** SIGTERM, then the exit code (SIGKILL after the deadline). */
  async stop(timeoutMs = 20_000): Promise<number | null> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return this.#child.exitCode;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs);
    const code = await this.#exit;
    clearTimeout(timer);
    return code;
  }

  log(): string {
    try {
      return readFileSync(this.#logFile, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }
}
