import { z } from 'zod';
import { PermanentError } from '../errors.js';
import { canonicalIds, describeIssues, shortText, uuidSchema, type Envelope } from './envelope.js';

/**
 * The CloudEvents 1.0 form of an envelope. Context attributes (`id`, `source`, `type`, `time`, ...)
 * plus sagaflow's extension attributes, whose names follow the CloudEvents naming rule (lower-case
 * ASCII letters and digits, at most 20 characters). `data` is the payload, as JSON.
 */
export const CE_SPECVERSION = '1.0';
export const CE_JSON = 'application/json';
/** Content type of a structured-mode event (CloudEvents JSON format). */
export const CE_STRUCTURED = 'application/cloudevents+json';

/**
 * Envelope header <-> extension attribute. Anything else in `headers` has no place in an event.
 * The `sagaflow-*` names are the saga engine's step headers (STEP_HEADERS, spelt out here because
 * the wire format sits below the engine; test/unit/wire.test.ts keeps the two equal).
 */
export const HEADER_ATTRIBUTES: Readonly<Record<string, string>> = Object.freeze({
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  'sagaflow-step': 'step',
  'sagaflow-phase': 'phase',
  'sagaflow-attempt': 'attempt',
  'sagaflow-seq': 'seq',
  'sagaflow-saga-type': 'sagatype',
  'sagaflow-deadline-ms': 'deadlinems',
});
const ATTRIBUTE_HEADERS: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(Object.entries(HEADER_ATTRIBUTES).map(([h, a]) => [a, h])),
);

/** Defaults a foreign producer may rely on (documented in docs/wire-protocol.md). */
export const DEFAULT_SOURCE = '/sagaflow';
export const DEFAULT_TENANT = 'default';

const integerLike = z.union([z.number().int(), z.string().regex(/^[0-9]{1,9}$/).transform(Number)]);
const headerValue = z.string().min(1).max(4096);

/**
 * Every attribute sagaflow reads. Unknown attributes are ignored (zod's default strip), so a
 * producer one version ahead, or any CloudEvents tooling that adds its own extensions, is read.
 */
export const cloudEventSchema = z.object({
  specversion: z.literal(CE_SPECVERSION),
  id: uuidSchema,
  source: z.string().min(1).max(1024),
  type: z.string().min(1).max(128),
  time: z.iso.datetime({ offset: true }).optional(),
  datacontenttype: z.string().max(200).optional(),
  dataschema: z.string().max(1024).optional(),
  subject: z.string().max(1024).optional(),
  data: z.unknown(),
  schemaversion: integerLike.pipe(z.number().int().min(1).max(1000)).optional(),
  tenantid: shortText.optional(),
  correlationid: shortText.optional(),
  causationid: shortText.optional(),
  sagaid: uuidSchema.optional(),
  replyto: shortText.optional(),
  traceparent: headerValue.optional(),
  tracestate: headerValue.optional(),
  step: headerValue.optional(),
  phase: headerValue.optional(),
  attempt: headerValue.optional(),
  seq: headerValue.optional(),
  sagatype: headerValue.optional(),
  deadlinems: z.string().regex(/^[0-9]{1,12}$/).or(z.number().int().min(1).transform(String)).optional(),
});
export type CloudEvent = z.input<typeof cloudEventSchema>;

/** A parsed structured event (or the attributes of a binary-mode one plus its data) -> envelope. */
export function fromCloudEvent(raw: unknown): Envelope {
  if (raw !== null && typeof raw === 'object' && 'data_base64' in raw) {
    throw new PermanentError('UNSUPPORTED_CONTENT_TYPE', 'data_base64 is not supported: data must be JSON');
  }
  // The common, well-formed event is checked by hand (same rules, same output); anything the hand
  // check does not accept goes through zod, which accepts or refuses it and says why.
  let ce = checkedCloudEvent(raw);
  if (ce === undefined) {
    const parsed = cloudEventSchema.safeParse(raw);
    if (!parsed.success) throw new PermanentError('INVALID_ENVELOPE', `invalid CloudEvent: ${describeIssues(parsed.error)}`);
    ce = parsed.data;
  }
  if (ce.datacontenttype !== undefined && !isJsonContentType(ce.datacontenttype)) {
    throw new PermanentError('UNSUPPORTED_CONTENT_TYPE', `datacontenttype ${ce.datacontenttype.slice(0, 100)} is not supported (application/json only)`);
  }
  const headers: Record<string, string> = {};
  for (const [attr, header] of Object.entries(ATTRIBUTE_HEADERS)) {
    const v = ce[attr as keyof typeof ce];
    if (typeof v === 'string') headers[header] = v;
  }
  return canonicalIds({
    id: ce.id,
    type: ce.type,
    schemaVersion: ce.schemaversion ?? 1,
    tenantId: ce.tenantid ?? DEFAULT_TENANT,
    correlationId: ce.correlationid ?? ce.sagaid ?? ce.id,
    ...(ce.causationid !== undefined ? { causationId: ce.causationid } : {}),
    ...(ce.sagaid !== undefined ? { sagaId: ce.sagaid } : {}),
    ...(ce.replyto !== undefined ? { replyTo: ce.replyto } : {}),
    source: ce.source,
    // An event without `time` (optional in CloudEvents) is dated when it was read.
    occurredAt: ce.time ?? new Date().toISOString(),
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
    payload: ce.data,
  });
}

type ParsedCloudEvent = z.output<typeof cloudEventSchema>;

/** The patterns zod itself applies (read from the schemas, so the two checks cannot drift apart). */
const UUID_PATTERN: RegExp | undefined = (uuidSchema as unknown as { _zod?: { pattern?: RegExp } })._zod?.pattern;
const TIME_PATTERN: RegExp | undefined = (cloudEventSchema.shape.time.unwrap() as unknown as { _zod?: { pattern?: RegExp } })._zod?.pattern;
const DEADLINE_TEXT = /^[0-9]{1,12}$/;
const INTEGER_TEXT = /^[0-9]{1,9}$/;
/** Attributes holding text of 1..n characters when present: [name, n]. */
const TEXT_ATTRIBUTES: readonly (readonly [string, number])[] = [
  ['tenantid', 200],
  ['correlationid', 200],
  ['causationid', 200],
  ['replyto', 200],
  ['traceparent', 4096],
  ['tracestate', 4096],
  ['step', 4096],
  ['phase', 4096],
  ['attempt', 4096],
  ['seq', 4096],
  ['sagatype', 4096],
];

const isText = (v: unknown, min: number, max: number): v is string => typeof v === 'string' && v.length >= min && v.length <= max;
const absentOrText = (v: unknown, min: number, max: number): boolean => v === undefined || isText(v, min, max);

/**
 * `cloudEventSchema` written out by hand for the hot path: zod's object parse was the largest
 * single item in the workers' CPU profile. It accepts a subset of what the schema accepts (every
 * attribute in its plain form) and then returns what zod would return for it; for anything else
 * it returns undefined and the caller asks zod (test/unit/wire.test.ts compares the two).
 */
export function checkedCloudEvent(raw: unknown): ParsedCloudEvent | undefined {
  if (UUID_PATTERN === undefined || TIME_PATTERN === undefined) return undefined;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  if (r.specversion !== CE_SPECVERSION) return undefined;
  if (typeof r.id !== 'string' || !UUID_PATTERN.test(r.id)) return undefined;
  if (!isText(r.source, 1, 1024) || !isText(r.type, 1, 128)) return undefined;
  if (r.time !== undefined && (typeof r.time !== 'string' || !TIME_PATTERN.test(r.time))) return undefined;
  if (!absentOrText(r.datacontenttype, 0, 200) || !absentOrText(r.dataschema, 0, 1024) || !absentOrText(r.subject, 0, 1024)) return undefined;
  if (r.sagaid !== undefined && (typeof r.sagaid !== 'string' || !UUID_PATTERN.test(r.sagaid))) return undefined;
  for (const [name, max] of TEXT_ATTRIBUTES) if (!absentOrText(r[name], 1, max)) return undefined;
  if (r.deadlinems !== undefined && (typeof r.deadlinems !== 'string' || !DEADLINE_TEXT.test(r.deadlinems))) return undefined;
  let schemaversion: number | undefined;
  const sv = r.schemaversion;
  if (typeof sv === 'number') schemaversion = sv;
  else if (typeof sv === 'string' && INTEGER_TEXT.test(sv)) schemaversion = Number(sv);
  else if (sv !== undefined) return undefined;
  if (schemaversion !== undefined && (!Number.isInteger(schemaversion) || schemaversion < 1 || schemaversion > 1000)) return undefined;
  // Known attributes only, as zod's strip leaves them (unknown extensions are not read).
  const out: Record<string, unknown> = {};
  for (const k of KNOWN_ATTRIBUTES) if (r[k] !== undefined) out[k] = r[k];
  if ('data' in r) out.data = r.data;
  if (schemaversion !== undefined) out.schemaversion = schemaversion;
  return out as ParsedCloudEvent;
}
const KNOWN_ATTRIBUTES = Object.keys(cloudEventSchema.shape).filter((k) => k !== 'data');

/** Envelope -> the structured-mode event object; only documented attributes, in a fixed order. */
export function toCloudEvent(env: Envelope): Record<string, unknown> {
  const ce: Record<string, unknown> = {
    specversion: CE_SPECVERSION,
    id: env.id,
    source: env.source ?? DEFAULT_SOURCE,
    type: env.type,
    time: env.occurredAt,
    datacontenttype: CE_JSON,
    schemaversion: env.schemaVersion,
    tenantid: env.tenantId,
    correlationid: env.correlationId,
  };
  if (env.causationId !== undefined) ce.causationid = env.causationId;
  if (env.sagaId !== undefined) ce.sagaid = env.sagaId;
  if (env.replyTo !== undefined) ce.replyto = env.replyTo;
  for (const [header, value] of Object.entries(env.headers ?? {})) {
    const attr = HEADER_ATTRIBUTES[header];
    // Writers never emit an undocumented attribute: a header with no attribute is a caller's bug.
    if (attr === undefined) throw new PermanentError('INVALID_ENVELOPE', `header ${header} has no CloudEvents attribute; see docs/wire-protocol.md`);
    ce[attr] = value;
  }
  ce.data = env.payload;
  return ce;
}

/** The content types sagaflow writes, recognised without parsing (every message asks). */
const WRITTEN_STRUCTURED = `${CE_STRUCTURED}; charset=utf-8`;

export function isJsonContentType(ct: string): boolean {
  if (ct === CE_JSON) return true;
  const media = ct.split(';')[0]!.trim().toLowerCase();
  return media === CE_JSON || media.endsWith('+json');
}

export function isStructuredContentType(ct: string | undefined): boolean {
  if (ct === WRITTEN_STRUCTURED || ct === CE_STRUCTURED) return true;
  return ct !== undefined && ct.split(';')[0]!.trim().toLowerCase() === CE_STRUCTURED;
}

/**
 * Binary mode: the attributes travel as message headers (Kafka `ce_<name>`; AMQP application
 * properties `cloudEvents_<name>`, or `cloudEvents:<name>` as older producers write them), the body
 * is `data` alone, and the content type header is `datacontenttype`. Returns null when the
 * headers carry no `specversion` (not a binary-mode event).
 */
export function binaryAttributes(headers: Readonly<Record<string, string>>): Record<string, string> | null {
  const attrs: Record<string, string> = {};
  let found = false;
  for (const [k, v] of Object.entries(headers)) {
    const lower = k.toLowerCase();
    const name = lower.startsWith('ce_') ? lower.slice(3) : lower.startsWith('cloudevents_') || lower.startsWith('cloudevents:') ? lower.slice(12) : undefined;
    if (name === undefined || name === '' || name === 'data' || name === 'data_base64') continue;
    attrs[name] = v;
    if (name === 'specversion') found = true;
  }
  if (!found) return null;
  const ct = headers['content-type'];
  if (ct !== undefined) attrs.datacontenttype = ct;
  return attrs;
}
