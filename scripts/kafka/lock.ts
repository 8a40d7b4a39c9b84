import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { isPidAlive } from './process.js';

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
