import { digest16 } from '../ids.js';
import { z } from 'zod';
import { PermanentError } from '../errors.js';
import type { MessageDefinition } from './message.js';

/**
 * The envelope is sagaflow's model of one message, whatever it looked like on the wire (a
 * CloudEvents 1.0 event, structured or binary, or the legacy sagaflow JSON: src/messages/wire.ts).
 * Ids are canonical once decoded: UUIDs in lower case, so the inbox (Postgres `uuid`, which prints
 * lower case) and every comparison in code see one spelling of each id.
 */
export interface Envelope<P = unknown> {
  readonly id: string;
  readonly type: string;
  readonly schemaVersion: number;
  readonly tenantId: string;
  readonly correlationId: string;
  readonly causationId?: string | undefined;
  readonly sagaId?: string | undefined;
  /** Where a reply to this message goes (set on commands sent by the orchestrator). */
  readonly replyTo?: string | undefined;
  /** Who produced it (the CloudEvents `source`); not part of the message's meaning. */
  readonly source?: string | undefined;
  readonly occurredAt: string;
  /** Step headers (`sagaflow-step`, ...) and W3C trace context (`traceparent`, `tracestate`). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly payload: P;
}

export const uuidSchema = z.uuid();
export const shortText = z.string().min(1).max(200);
export const MAX_HEADERS = 64;
export const headersSchema = z
  .record(z.string().max(128), z.string().max(4096))
  .refine((h) => Object.keys(h).length <= MAX_HEADERS, `at most ${MAX_HEADERS} headers`);

/**
 * The legacy sagaflow envelope (the only format before CloudEvents; still read for one release).
 * Unknown fields are ignored, not refused: a producer one version ahead must not break this reader.
 */
export const legacyEnvelopeSchema = z.object({
  id: uuidSchema,
  type: z.string().min(1).max(128),
  schemaVersion: z.number().int().min(1).max(1000),
  tenantId: shortText,
  correlationId: shortText,
  causationId: shortText.optional(),
  sagaId: uuidSchema.optional(),
  replyTo: shortText.optional(),
  occurredAt: z.iso.datetime({ offset: true }),
  headers: headersSchema.optional(),
  payload: z.unknown(),
});

export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024;

/** The legacy JSON encoding (written when SAGAFLOW_WIRE_FORMAT=legacy). */
export function encodeLegacyEnvelope(env: Envelope): Buffer {
  const { source: _source, ...legacy } = env;
  return Buffer.from(JSON.stringify(legacy), 'utf8');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Size, UTF-8 and JSON checks every body goes through; every failure is a PermanentError with its code. */
export function parseJsonBody(body: Buffer | Uint8Array | null | undefined, maxBytes: number): { text: string; value: unknown } {
  if (body === null || body === undefined || body.length === 0) throw new PermanentError('EMPTY_VALUE', 'message has no body');
  // Size is checked before any parsing so a huge body costs nothing but this comparison.
  if (body.length > maxBytes) {
    throw new PermanentError('PAYLOAD_TOO_LARGE', `message is ${body.length} bytes, the limit is ${maxBytes}`);
  }
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new PermanentError('DECODE_ERROR', 'message body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    if (err instanceof RangeError) throw new PermanentError('PAYLOAD_TOO_LARGE', 'message is too deeply nested');
    throw new PermanentError('MALFORMED_JSON', `message body is not JSON: ${clip((err as Error).message)}`);
  }
  return { text, value };
}

/** Legacy JSON object -> envelope. */
export function fromLegacy(raw: unknown): Envelope {
  const parsed = legacyEnvelopeSchema.safeParse(raw);
  if (!parsed.success) throw new PermanentError('INVALID_ENVELOPE', `invalid envelope: ${describeIssues(parsed.error)}`);
  return canonicalIds(parsed.data as Envelope);
}

const UUID_SHAPE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const lowerIfUuid = (s: string | undefined): string | undefined => (s !== undefined && UUID_SHAPE.test(s) ? s.toLowerCase() : s);

/**
 * One spelling per id: a UUID is case-insensitive (RFC 9562), Postgres prints it in lower case,
 * and an id compared in its original spelling with what the inbox returned once made upper-case
 * messages look like duplicates and vanish. Causation ids are lowered only when they are UUIDs.
 */
export function canonicalIds(env: Envelope): Envelope {
  const id = env.id.toLowerCase();
  const sagaId = env.sagaId?.toLowerCase();
  const causationId = lowerIfUuid(env.causationId);
  if (id === env.id && sagaId === env.sagaId && causationId === env.causationId) return env;
  return { ...env, id, ...(sagaId !== undefined ? { sagaId } : {}), ...(causationId !== undefined ? { causationId } : {}) };
}

/**
 * Postgres `text` and `jsonb` cannot hold U+0000, so a message carrying one (JSON `\u0000`) fails
 * on every try wherever its text is stored: no retry can help. Found here, it is a dead letter at
 * once (UNSTORABLE_TEXT) instead of five handler errors. `text` is the JSON source: a NUL can only
 * be there escaped, so the walk over the parsed value runs only when the escape appears at all.
 */
export function assertStorable(text: string, value: unknown, headers?: Readonly<Record<string, string>>): void {
  if (headers) {
    for (const [k, v] of Object.entries(headers)) {
      if (k.includes('\u0000') || v.includes('\u0000')) throw unstorable(`header ${clip(k.replaceAll('\u0000', '\\u0000'), 60)}`);
    }
  }
  if (!text.includes('\\u0000')) return;
  const where = findNul(value, '');
  if (where !== undefined) throw unstorable(where === '' ? '(root)' : where);
}

function unstorable(where: string): PermanentError {
  return new PermanentError('UNSTORABLE_TEXT', `message holds a NUL character (\\u0000) at ${where}; PostgreSQL text cannot store it`);
}

function findNul(v: unknown, path: string): string | undefined {
  if (typeof v === 'string') return v.includes('\u0000') ? path : undefined;
  if (v === null || typeof v !== 'object') return undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const w = findNul(v[i], `${path}[${i}]`);
      if (w !== undefined) return w;
    }
    return undefined;
  }
  for (const [k, x] of Object.entries(v)) {
    const p = path === '' ? k : `${path}.${k}`;
    if (k.includes('\u0000')) return p.replaceAll('\u0000', '\\u0000');
    const w = findNul(x, p);
    if (w !== undefined) return w;
  }
  return undefined;
}

/** Validates the payload against the message's schema; the result is the parsed (stripped) payload. */
export function parsePayload<P>(def: MessageDefinition, env: Envelope): P {
  if (env.schemaVersion !== def.version) {
    throw new PermanentError(
      'UNSUPPORTED_VERSION',
      `${env.type} has schema version ${env.schemaVersion}, this worker knows version ${def.version}`,
    );
  }
  const parsed = def.schema.safeParse(env.payload);
  if (!parsed.success) throw new PermanentError('SCHEMA_INVALID', `${env.type}: ${describeIssues(parsed.error)}`);
  return parsed.data as P;
}

/** The first few issue paths and messages, never the values (they may hold personal data or secrets). */
export function describeIssues(err: z.ZodError, max = 5): string {
  const parts = err.issues.slice(0, max).map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  if (err.issues.length > max) parts.push(`and ${err.issues.length - max} more`);
  return parts.join('; ');
}

function clip(s: string, n = 200): string {
  return s.length > n ? s.slice(0, n) : s;
}

/**
 * The digest kept in the inbox, over the message's MEANING: id, type, saga, causation and data,
 * with object keys sorted. The same message re-serialised (another key order, a new `time`, the
 * other wire format) has the same digest and is a duplicate; only another meaning under a reused id
 * is ID_CONFLICT.
 */
export function meaningDigest(env: Envelope): Buffer {
  const meaning = [env.id, env.type, env.sagaId ?? null, env.causationId ?? null, env.payload];
  return digest16(Buffer.from(canonicalJson(meaning), 'utf8'));
}

/** JSON with object keys sorted at every level (arrays keep their order: it is meaning). */
export function canonicalJson(v: unknown): string {
  return writeCanonical(v) ?? 'null';
}

/**
 * Keys met on the hot path, already quoted: the same few dozen names recur in every message, and
 * quoting them was a visible part of the digest's cost. Bounded, so odd payloads cannot grow it.
 */
const quotedKeys = new Map<string, string>();
function quoted(k: string): string {
  let q = quotedKeys.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (quotedKeys.size < 4096) quotedKeys.set(k, q);
  }
  return q;
}

/** Same output as JSON.stringify of a key-sorted copy, built in one string; undefined where JSON.stringify gives undefined. */
function writeCanonical(v: unknown): string | undefined {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ',';
      out += writeCanonical(v[i]) ?? 'null';
    }
    return `${out}]`;
  }
  const keys = Object.keys(v).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += `${quoted(k)}:${writeCanonical(x) ?? 'null'}`;
  }
  return `${out}}`;
}
