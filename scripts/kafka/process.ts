/** Process control of broker JVMs: liveness, stopping one that is not our child, clean-up at exit. */
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { KAFKA_SERVER_MAIN_CLASS } from './release.js';

/**
 * Synchronous clean-ups run when this process exits, one per non-detached broker: SIGKILL its JVM and
 * delete its temp data dir. So a test run that ends without stop() (a crash, process.exit in a
 * reporter) leaves neither a JVM holding ports and 512 MB of heap nor a stray temp dir behind.
 */
const exitCleanups = new Set<() => void>();
let exitHookInstalled = false;

export function onProcessExit(cleanup: () => void): void {
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


/** Drops a clean-up registered with onProcessExit (the broker was stopped, or never started). */
export function cancelOnProcessExit(cleanup: () => void): void {
  exitCleanups.delete(cleanup);
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
