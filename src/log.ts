import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/**
 * Structured JSON logs. Secrets never reach them: connection URLs are redacted wherever they
 * appear as values under these keys, and `redactUrl` is applied where a URL is logged on purpose.
 */
export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      name: opts.name ?? 'sagaflow',
      base: { pid: process.pid },
      redact: {
        paths: ['password', '*.password', 'url', '*.url', 'connectionString', '*.connectionString', 'sasl', '*.sasl', 'token', '*.token'],
        censor: '[redacted]',
      },
    },
    opts.destination ?? pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that drops everything (library default when the caller gives none). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** postgres://user:secret@host/db -> postgres://user:***@host/db; anything unparsable is hidden whole. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparsable url]';
  }
}
