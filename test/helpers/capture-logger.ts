import { pino } from 'pino';
import type { Logger } from '../../src/log.js';

/**
 * A real pino logger whose JSON lines are kept in memory, so a test can assert that a code path
 * was taken ("duplicate delivery ignored", "batch failed; isolating ...") rather than guess it.
 */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export function captureLogger(level = 'debug'): { logger: Logger; lines: LogLine[]; count: (msg: string | RegExp) => number } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level, base: null, timestamp: false },
    {
      write(s: string) {
        for (const l of s.split('\n')) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      },
    },
  );
  const count = (msg: string | RegExp) => lines.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg))).length;
  return { logger, lines, count };
}
