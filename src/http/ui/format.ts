import { redact } from '../redact.js';

/** Display helpers for the dashboard pages: times, durations, JSON and binary bodies. */

export function isoTime(d: Date | string | null | undefined): string {
  if (!d) return '';
  const t = d instanceof Date ? d : new Date(d);
  return Number.isNaN(t.getTime()) ? String(d) : t.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
  return `${Math.floor(ms / 86_400_000)} d ${Math.round((ms % 86_400_000) / 3_600_000)} h`;
}

export function between(start: Date | null, end: Date | null): string {
  return start && end ? duration(end.getTime() - start.getTime()) : '';
}

/** Largest body shown on a page; the rest is cut with a note (the CLI shows it whole). */
export const BODY_LIMIT = 64 * 1024;

/** Pretty JSON with secrets redacted, cut at BODY_LIMIT characters. */
export function prettyJson(value: unknown): { text: string; cut: boolean } {
  return cut(JSON.stringify(redact(value), null, 2) ?? 'null');
}

/** A message body: pretty JSON when it parses, the text otherwise, or a hex dump for binary. */
export function showBody(body: string, encoding: 'utf8' | 'base64'): { text: string; kind: 'json' | 'text' | 'hex'; cut: boolean } {
  if (encoding === 'base64') {
    const bytes = Buffer.from(body, 'base64');
    return { ...cut(hexDump(bytes.subarray(0, BODY_LIMIT / 4))), kind: 'hex', cut: bytes.length > BODY_LIMIT / 4 };
  }
  try {
    return { ...prettyJson(JSON.parse(body)), kind: 'json' };
  } catch {
    return { ...cut(body), kind: 'text' };
  }
}

function cut(text: string): { text: string; cut: boolean } {
  return text.length > BODY_LIMIT ? { text: text.slice(0, BODY_LIMIT), cut: true } : { text, cut: false };
}

export function hexDump(bytes: Buffer): string {
  const lines: string[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}
