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
  readonly messageId: string;
  readonly consumer: string;
  readonly topic: string;
  readonly reasonCode: string;
  readonly error: string | undefined;
  readonly type: string | undefined;
}

/**
 * Moves dead letters from the broker's dead-letter topic into Postgres, whatever transport they
 * came from, so operators list, inspect, redrive and discard them in one place. The broker message
 * is acked only after the row committed: dead-lettering stays at least once end to end.
 */
export class DeadLetterRecorder {
  readonly #t: string;
  constructor(schema: string) {
    this.#t = `${quoteSchema(schema)}.dead_letters`;
  }

  describe(d: Delivery): DeadLetterRecord {
    const h = d.headers;
    const id = h[H.messageId] ?? d.id;
    return {
      messageId: id && UUID.test(id) ? id.toLowerCase() : `sha256:${createHash('sha256').update(d.body).digest('hex')}`,
      consumer: clean(h[H.consumer] ?? 'unknown'),
      topic: clean(h[H.originalTopic] ?? d.topic),
      reasonCode: clean(h[H.reason] ?? 'UNKNOWN'),
      error: cleanOpt(h[H.error]),
      type: cleanOpt(h[H.type] ?? d.type),
    };
  }

  async record(db: Queryable, d: Delivery): Promise<DeadLetterRecord> {
    const r = this.describe(d);
    const attempts = Number(d.headers[H.attempt]);
    await db.query(
      `INSERT INTO ${this.#t} (message_id, consumer, topic, msg_type, msg_key, reason_code, error, headers, body, attempts)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (consumer, message_id) DO UPDATE SET
         times_seen = ${this.#t}.times_seen + 1, last_seen_at = now(), reason_code = excluded.reason_code,
         error = excluded.error, headers = excluded.headers, attempts = excluded.attempts,
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
