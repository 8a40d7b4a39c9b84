import { createHash } from 'node:crypto';
import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import { H, type Delivery } from '../transport/contract.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Postgres text and jsonb cannot hold U+0000, and a hostile message can put one into an error text
 * or a header (a NUL body's JSON.parse message quotes it; so does an UNKNOWN_TYPE error for a type
 * with a NUL). Unreplaced, the INSERT fails on every try and the dead letter ends up filed under the
 * recorder itself, with its original reason and consumer lost. Replace it before writing.
 */
const clean = (s: string): string => s.replaceAll('\u0000', '\uFFFD');
const cleanOpt = (s: string | undefined): string | undefined => (s === undefined ? undefined : clean(s));

export interface DeadLetterRecord {
  /** The message's id as its envelope or headers name it (lower case when a UUID); null when none is readable. */
  readonly messageId: string | null;
  readonly consumer: string;
  readonly topic: string;
  readonly reasonCode: string;
  readonly error: string | undefined;
  readonly type: string | undefined;
  /** SHA-256 of the body (the table computes its own `body_sha256`): with consumer, id and key, the row's key. */
  readonly bodySha256: Buffer;
}

/** CloudEvents binary-mode attributes as Kafka (`ce_`), HTTP (`ce-`) and AMQP (`cloudEvents:` / `cloudEvents_`) carry them. */
const CE_PREFIXES = ['ce_', 'ce-', 'cloudEvents:', 'cloudEvents_'];
/** A body larger than this is not parsed for its id and type (a dead letter is stored whole anyway). */
const MAX_PARSED_BODY = 4 * 1024 * 1024;
const MAX_ID_LENGTH = 200;

function ceAttribute(headers: Readonly<Record<string, string>>, name: string): string | undefined {
  for (const p of CE_PREFIXES) {
    const v = headers[`${p}${name}`];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

/**
 * The id and type a dead letter's envelope names, read leniently: the envelope is often invalid
 * (that may be why it is a dead letter), but an id or a type it does name should still file the row.
 * JSON objects (sagaflow's and CloudEvents structured mode) give `id` / `type`; CloudEvents binary
 * mode gives them in headers.
 */
export function lenientEnvelope(body: Buffer, headers: Readonly<Record<string, string>>): { id?: string; type?: string } {
  const out: { id?: string; type?: string } = {};
  const ceId = ceAttribute(headers, 'id');
  const ceType = ceAttribute(headers, 'type');
  if (ceId !== undefined) out.id = ceId;
  if (ceType !== undefined) out.type = ceType;
  if (out.id !== undefined && out.type !== undefined) return out;
  if (body.length === 0 || body.length > MAX_PARSED_BODY) return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return out;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return out;
  const env = parsed as Record<string, unknown>;
  if (out.id === undefined && (typeof env.id === 'string' || typeof env.id === 'number') && String(env.id) !== '') out.id = String(env.id);
  if (out.type === undefined && typeof env.type === 'string' && env.type !== '') out.type = env.type;
  return out;
}

function normaliseId(id: string | undefined): string | null {
  if (id === undefined || id === '') return null;
  const trimmed = clean(id.trim()).slice(0, MAX_ID_LENGTH);
  if (trimmed === '') return null;
  return UUID.test(trimmed) ? trimmed.toLowerCase() : trimmed;
}

/**
 * Moves dead letters from the broker's dead-letter topic into Postgres, whatever transport they
 * came from, so operators list, inspect, redrive and discard them in one place; the transports'
 * DeadLetterSink writes here too when the broker refuses a dead-letter copy. The broker message is
 * acked only after the row committed: dead-lettering stays at least once end to end.
 *
 * A row is keyed by (consumer, message id or NULL, message key or NULL, SHA-256 of the body): every
 * distinct message keeps its own row (two bodies under one id, one body under two keys), and only a
 * true repeat (same id, key and body) counts up `times_seen`.
 */
export class DeadLetterRecorder {
  readonly #t: string;
  constructor(schema: string) {
    this.#t = `${quoteSchema(schema)}.dead_letters`;
  }

  describe(d: Delivery): DeadLetterRecord {
    const h = d.headers;
    const lenient = h[H.messageId] === undefined && d.id === undefined ? lenientEnvelope(d.body, h) : undefined;
    const type = h[H.type] ?? d.type ?? (lenient ?? lenientEnvelope(d.body, h)).type;
    return {
      messageId: normaliseId(h[H.messageId] ?? d.id ?? lenient?.id),
      consumer: clean(h[H.consumer] ?? 'unknown'),
      topic: clean(h[H.originalTopic] ?? d.topic),
      reasonCode: clean(h[H.reason] ?? 'UNKNOWN'),
      error: cleanOpt(h[H.error]),
      type: cleanOpt(type),
      bodySha256: createHash('sha256').update(d.body).digest(),
    };
  }

  async record(db: Queryable, d: Delivery): Promise<DeadLetterRecord> {
    const r = this.describe(d);
    const attempts = Number(d.headers[H.attempt]);
    await db.query(
      `INSERT INTO ${this.#t} (message_id, consumer, topic, msg_type, msg_key, reason_code, error, headers, body, attempts)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (consumer, (coalesce(message_id, '')), (coalesce(msg_key, '')), body_sha256) DO UPDATE SET
         times_seen = ${this.#t}.times_seen + 1, last_seen_at = now(), reason_code = excluded.reason_code,
         error = excluded.error, headers = excluded.headers, attempts = excluded.attempts,
         msg_type = coalesce(excluded.msg_type, ${this.#t}.msg_type),
         status = 'new', resolved_at = NULL, resolved_by = NULL, resolution_note = NULL`,
      [
        r.messageId,
        r.consumer,
        r.topic,
        r.type ?? null,
        cleanOpt(d.headers[H.key] ?? d.key) ?? null,
        r.reasonCode,
        r.error ?? null,
        JSON.stringify(Object.fromEntries(Object.entries(d.headers).map(([k, v]) => [clean(k), clean(v)]))),
        d.body,
        Number.isFinite(attempts) ? attempts : null,
      ],
    );
    return r;
  }
}
