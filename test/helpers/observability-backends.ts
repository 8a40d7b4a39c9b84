/**
 * Whether the real observability backends can run here, for the tests that use them: Prometheus
 * from Debian's package (installed by scripts/observability/install.sh when missing) and Zipkin's
 * server jar (fetched with Maven once). Undefined means available; a string says why not, and the
 * tests skip with that reason in their name. Anything else that goes wrong fails.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prometheusVersion } from '../../scripts/observability/prometheus.js';
import { ensureZipkinJar } from '../../scripts/observability/zipkin.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Undefined when Prometheus runs here, else why it cannot be had (after trying the install script). */
export function prometheusUnavailable(log: (m: string) => void): string | undefined {
  if (prometheusVersion().ok) return undefined;
  log('no prometheus binary: running scripts/observability/install.sh');
  const r = spawnSync('bash', [join(ROOT, 'scripts/observability/install.sh')], { encoding: 'utf8', timeout: 10 * 60_000 });
  const v = prometheusVersion();
  return v.ok ? undefined : `${v.reason}; install.sh: ${`${r.stdout}${r.stderr}`.trim().split('\n').slice(-3).join(' / ')}`;
}

/** Undefined when the Zipkin jar is in the cache (fetched now if need be); else why it cannot be had. */
export async function zipkinUnavailable(log: (m: string) => void): Promise<string | undefined> {
  const java = spawnSync(process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java', ['-version'], { timeout: 30_000 });
  if (java.error || java.status !== 0) return `no Java runtime (${java.error?.message ?? `exit ${java.status}`}); Zipkin needs Java 17+`;
  try {
    await ensureZipkinJar(undefined, log);
    return undefined;
  } catch (err) {
    const message = (err as Error).message;
    // Only "Maven cannot fetch it" is "cannot be installed"; any other error is a failure.
    if (/^(Cannot run Maven|Maven failed)/.test(message)) return message.split('\n').slice(0, 3).join(' / ');
    throw err;
  }
}
