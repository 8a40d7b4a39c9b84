/** The broker's logs, for error messages: the first errors and the tails of broker.log and jvm.out. */
import { readFileSync } from 'node:fs';
import { layout } from './config.js';

export function tail(text: string, lines: number): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

export function tailFile(file: string, lines: number): string {
  try {
    return tail(readFileSync(file, 'utf8'), lines);
  } catch {
    return '(no such file)';
  }
}

/**
 * For error messages: the first ERROR/FATAL entries of broker.log (the cause; a failed start is followed
 * by hundreds of shutdown lines), then the tails of broker.log and jvm.out.
 */
export function describeLogs(l: { logFile: string; jvmOutFile: string } | string): string {
  const files = typeof l === 'string' ? layout(l) : l;
  let errors = '';
  try {
    const lines = readFileSync(files.logFile, 'utf8').split('\n');
    const picked: string[] = [];
    for (let i = 0; i < lines.length && picked.length < 30; i++) {
      if (/^\[[^\]]+\] (ERROR|FATAL) /.test(lines[i] ?? '')) {
        // The entry plus its exception lines (indented or "Caused by"), at most 4 of them.
        picked.push(lines[i] ?? '');
        for (let j = i + 1; j < lines.length && j <= i + 4 && !/^\[/.test(lines[j] ?? ''); j++) picked.push(lines[j] ?? '');
      }
    }
    if (picked.length > 0) errors = `--- ${files.logFile} (first errors) ---\n${picked.join('\n')}\n`;
  } catch {
    /* no log yet */
  }
  return (
    errors +
    `--- ${files.logFile} (tail) ---\n${tailFile(files.logFile, 15)}\n` +
    `--- ${files.jvmOutFile} (tail) ---\n${tailFile(files.jvmOutFile, 20)}`
  );
}
