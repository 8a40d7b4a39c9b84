import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSagaflow, type E2EEnv } from './harness.js';

/** `sagaflow serve` as a real process on a free port; resolves its URL from the listening line. */
export class ServeProcess {
  child: ChildProcess | undefined;
  url = '';
  readonly logFile: string;
  #exit: Promise<number | null> | undefined;

  constructor(
    readonly env: E2EEnv,
    readonly extraVars: Record<string, string>,
  ) {
    this.logFile = join(env.logDir, 'serve.log');
  }

  async start(timeoutMs = 60_000): Promise<string> {
    const { child, log, exit } = spawnSagaflow(this.env, ['serve', '--host', '127.0.0.1', '--port', '0'], this.extraVars, this.logFile);
    this.child = child;
    this.#exit = exit;
    this.url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`serve not listening within ${timeoutMs} ms; log: ${this.logFile}`)), timeoutMs);
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        log.write(chunk);
        const m = /"event":"admin-listening","url":"([^"]+)"/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`serve exited with ${code} before listening; log tail:\n${this.tail()}`));
      });
    });
    return this.url;
  }

  async stop(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 15_000);
    await this.#exit;
    clearTimeout(timer);
  }

  tail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}
