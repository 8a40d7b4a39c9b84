/**
 * What the project's small command lines (scripts/kafka/cli.ts, scripts/observability/cli.ts)
 * share: option parsing, a state file written atomically, and the exit-code plumbing of main().
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** `--name N` as a positive integer; undefined when absent; a clear error otherwise. */
export function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} needs a positive integer, got '${value}'`);
  return n;
}

/** The JSON in `file`, or undefined when it is missing or unreadable. */
export function readJsonFile<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Write then rename: a reader never sees half a file. */
export function writeJsonFileAtomic(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  renameSync(tmp, file);
}

/** Runs `main` with the arguments; its number is the exit code, an error is reported by `info` and exits 1. */
export function runCli(main: (argv: string[]) => Promise<number>, info: (message: string) => void): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      info(err instanceof Error ? err.message : String(err));
      process.exitCode = 1;
    },
  );
}
