/** Worker processes for the bench, with their CPU time read from /proc (Linux). */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../', import.meta.url).pathname;
const TICKS = 100; // USER_HZ on Linux

export interface WorkerStats {
  published?: number;
  relayed?: number;
  batches?: number;
  messages?: number;
  /** Deliveries the inbox recognised as already applied: duplicate work between processes shows here. */
  duplicates?: number;
}

/**
 * The worker processes of one bench run: `orchestrators` orchestrator processes and `participants`
 * participant processes, each with its own name (competing consumers on the same queues/groups).
 */
export function benchFleet(vars: Record<string, string>, counts: { orchestrators: number; participants: number }): BenchWorker[] {
  const workers: BenchWorker[] = [];
  // The first keeps the name a single orchestrator always had, so 1+1 runs look as before.
  for (let i = 0; i < counts.orchestrators; i++) workers.push(new BenchWorker('orchestrator', i === 0 ? 'bench-orchestrator' : `bench-orchestrator-${i}`, vars));
  for (let i = 0; i < counts.participants; i++) workers.push(new BenchWorker('participants', `bench-participants-${i}`, vars));
  return workers;
}

export class BenchWorker {
  child: ChildProcess | undefined;
  stats: WorkerStats | undefined;
  #exit: Promise<number | null> | undefined;
  #stderr = '';
  /** Called with every complete line the worker writes to stderr (its log). */
  onLogLine: ((line: string) => void) | undefined;
  #partial = '';

  constructor(
    readonly role: 'all' | 'orchestrator' | 'participants',
    readonly name: string,
    readonly vars: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the worker processes.
    const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...nodeArgs, join(ROOT, 'bin/sagaflow.js'), 'worker', '--module', join(ROOT, 'examples/order'), '--role', this.role, '--name', this.name], {
      cwd: ROOT,
      env: { ...process.env, ...this.vars },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.stats = undefined;
    child.stderr!.on('data', (c: Buffer) => {
      const text = c.toString();
      this.#stderr = (this.#stderr + text).slice(-20_000);
      if (!this.onLogLine) return;
      const lines = (this.#partial + text).split('\n');
      this.#partial = lines.pop()!;
      for (const line of lines) this.onLogLine(line);
    });
    this.#exit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        for (const line of out.split('\n')) {
          if (line.includes('"worker-ready"')) resolve();
          if (line.includes('"worker-stopped"')) this.stats = (JSON.parse(line) as { stats: WorkerStats }).stats;
        }
        out = out.slice(out.lastIndexOf('\n') + 1);
      });
      child.once('exit', (code) => reject(new Error(`${this.name} exited with ${code}: ${this.#stderr.slice(-2000)}`)));
    });
  }

  /** CPU seconds (user + system) used so far. */
  cpuSeconds(): number {
    const pid = this.child?.pid;
    if (!pid) return 0;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / TICKS;
    } catch {
      return 0;
    }
  }

  async stop(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill('SIGTERM');
    await this.#exit;
  }

  /** SIGKILL: a crash, no draining and no leaving the consumer groups. */
  async kill(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.#exit;
  }

  stderrTail(): string {
    return this.#stderr.slice(-3000);
  }
}
