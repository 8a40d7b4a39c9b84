/**
 * Payload views are redacted: saga data, kept step data, planned command payloads, dead-letter
 * headers and bodies may carry credentials a producer put there. Values under keys that name a
 * secret are replaced before they leave the server. Over-redaction (a `tokenCount`) is accepted.
 */
const SECRET_KEY = /pass(word|wd|phrase)?$|secret|token|api[-_]?key|authori[sz]ation|cookie|credential|private[-_]?key|^pin$|cvv|cvc|card[-_]?number|iban/i;
export const REDACTED = '[redacted]';

export function redact<T>(value: T, depth = 0): T {
  if (depth > 32 || value === null || typeof value !== 'object') return value;
  if (value instanceof Date || Buffer.isBuffer(value)) return value;
  if (Array.isArray(value)) return value.map((v: unknown) => redact(v, depth + 1)) as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) && v !== null && v !== undefined ? REDACTED : redact(v, depth + 1);
  }
  return out as T;
}

/** A JSON text redacted the same way; anything that is not JSON is returned unchanged. */
export function redactJsonText(text: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return text;
  }
  return parsed !== null && typeof parsed === 'object' ? JSON.stringify(redact(parsed)) : text;
}
