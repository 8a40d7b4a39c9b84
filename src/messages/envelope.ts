import { digest16 } from '../ids.js';
import { z } from 'zod';
import { PermanentError } from '../errors.js';
import type { MessageDefinition } from './message.js';

/**
 * The envelope is what travels on the wire (as JSON) and what sits in outbox rows. The envelope
 * itself is validated strictly (no dedupe without an id, so none is ever invented); payloads are
 * validated by their own zod schema with zod's default strip, a tolerant reader for newer minors.
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
  readonly occurredAt: string;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly payload: P;
}

const uuid = z.uuid();
const shortText = z.string().min(1).max(200);

export const envelopeSchema = z.strictObject({
  id: uuid,
  type: z.string().min(1).max(128),
  schemaVersion: z.number().int().min(1).max(1000),
  tenantId: shortText,
  correlationId: shortText,
  causationId: shortText.optional(),
  sagaId: uuid.optional(),
  replyTo: shortText.optional(),
  occurredAt: z.iso.datetime({ offset: true }),
  headers: z
    .record(z.string().max(128), z.string().max(4096))
    .refine((h) => Object.keys(h).length <= 64, 'at most 64 headers')
    .optional(),
  payload: z.unknown(),
});

export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024;

export function encodeEnvelope(env: Envelope): Buffer {
  return Buffer.from(JSON.stringify(env), 'utf8');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes -> validated envelope (payload not yet checked). Every failure is a PermanentError with its reason code. */
export function decodeEnvelope(body: Buffer | Uint8Array | null | undefined, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): Envelope {
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
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    if (err instanceof RangeError) throw new PermanentError('PAYLOAD_TOO_LARGE', 'message is too deeply nested');
    throw new PermanentError('MALFORMED_JSON', `message body is not JSON: ${(err as Error).message.slice(0, 200)}`);
  }
  const parsed = envelopeSchema.safeParse(raw);
  if (!parsed.success) throw new PermanentError('INVALID_ENVELOPE', `invalid envelope: ${describeIssues(parsed.error)}`);
  return parsed.data as Envelope;
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

/** A digest of the body kept in the inbox, so the same id with a different body is detected (ID_CONFLICT). */
export function bodyDigest(body: Buffer | Uint8Array): Buffer {
  return digest16(body);
}
