import { randomUUID } from 'node:crypto';
import type { Db, Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import { NotFoundError, RefusedError, SagaflowError } from '../errors.js';
import type { Logger } from '../log.js';
import { OutboxStore } from '../outbox/store.js';
import { H, type OutgoingMessage } from '../transport/contract.js';
import { AuditLog } from './audit.js';
import type { ActionResult, Actor } from './saga-ops.js';

export type DeadLetterStatus = 'new' | 'redriven' | 'discarded';

export interface DeadLetter {
  readonly id: string;
  /** The id its envelope or headers named; null when the message had no readable id. */
  readonly messageId: string | null;
  readonly consumer: string;
  readonly topic: string;
  readonly type: string | null;
  readonly key: string | null;
  readonly reasonCode: string;
  readonly error: string | null;
  readonly attempts: number | null;
  readonly timesSeen: number;
  readonly status: DeadLetterStatus;
  readonly firstSeenAt: Date;
  readonly lastSeenAt: Date;
  readonly resolvedAt: Date | null;
  readonly resolvedBy: string | null;
  readonly resolutionNote: string | null;
}

export interface DeadLetterDetail extends DeadLetter {
  readonly headers: Record<string, string>;
  /** The body as text when it is UTF-8, else base64; the raw bytes stay in the table. */
  readonly body: string;
  readonly bodyEncoding: 'utf8' | 'base64';
}

export interface DeadLetterFilter {
  readonly status?: DeadLetterStatus | undefined;
  readonly consumer?: string | undefined;
  readonly reason?: string | undefined;
  readonly type?: string | undefined;
  readonly since?: Date | undefined;
  readonly beforeId?: string | undefined;
  readonly limit?: number | undefined;
}

const COLUMNS = `id::text, message_id AS "messageId", consumer, topic, msg_type AS "type", msg_key AS "key", reason_code AS "reasonCode",
  error, attempts, times_seen AS "timesSeen", status, first_seen_at AS "firstSeenAt", last_seen_at AS "lastSeenAt",
  resolved_at AS "resolvedAt", resolved_by AS "resolvedBy", resolution_note AS "resolutionNote"`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Dead letters kept in Postgres: list and inspect them, redrive one (publish the original message
 * again through the outbox, same id by default so consumers' inboxes still process it once), or
 * discard it. Every redrive and discard is an audited state change of the dead-letter row.
 */
export class DeadLetterOperations {
  readonly #t: string;
  readonly #outbox: OutboxStore;
  readonly #audit: AuditLog;

  constructor(private readonly deps: { db: Db; schema: string; logger: Logger }) {
    this.#t = `${quoteSchema(deps.schema)}.dead_letters`;
    this.#outbox = new OutboxStore(deps.schema);
    this.#audit = new AuditLog(deps.schema);
  }

  async list(f: DeadLetterFilter = {}): Promise<DeadLetter[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    if (f.status) where.push(`status = $${values.push(f.status)}`);
    if (f.consumer) where.push(`consumer = $${values.push(f.consumer)}`);
    if (f.reason) where.push(`reason_code = $${values.push(f.reason)}`);
    if (f.type) where.push(`msg_type = $${values.push(f.type)}`);
    if (f.since) where.push(`last_seen_at >= $${values.push(f.since)}`);
    if (f.beforeId) where.push(`id < $${values.push(f.beforeId)}`);
    const { rows } = await this.deps.db.query<DeadLetter>(
      `SELECT ${COLUMNS} FROM ${this.#t} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${values.push(f.limit ?? 50)}`,
      values,
    );
    return rows;
  }

  async show(id: string): Promise<DeadLetterDetail> {
    const row = await this.#get(this.deps.db, id, false);
    let body: string;
    let bodyEncoding: 'utf8' | 'base64' = 'utf8';
    try {
      body = utf8.decode(row.body);
    } catch {
      body = row.body.toString('base64');
      bodyEncoding = 'base64';
    }
    const { body: _raw, ...rest } = row;
    return { ...rest, body, bodyEncoding };
  }

  /**
   * Publishes the dead-lettered message again to its original topic. With `newId`, the envelope
   * gets a fresh id (a deliberate re-run that consumers' inboxes will not recognise).
   */
  async redrive(id: string, actor: Actor, opts: { newId?: boolean; force?: boolean; reason?: string; dryRun?: boolean } = {}): Promise<ActionResult & { messageId: string }> {
    const base = { actor: actor.name, action: 'redrive' as const, targetType: 'dead_letter' as const, targetId: id, reason: opts.reason, requestId: actor.requestId };
    try {
      return await this.deps.db.transaction(async (tx) => {
        const row = await this.#get(tx, id, true);
        if (actor.requestId && !opts.dryRun) {
          const earlier = await this.#audit.accepted(tx, 'redrive', id, actor.requestId);
          if (earlier) {
            const auditId = await this.#audit.record(tx, { ...base, outcome: 'duplicate', detail: { earlierAuditId: earlier.id } });
            return { outcome: 'duplicate' as const, plan: undefined, auditId, messageId: (earlier.detail as { messageId: string }).messageId };
          }
        }
        if (row.status !== 'new' && !opts.force) {
          throw new RefusedError('INVALID_STATE', `dead letter ${id} is ${row.status}; use --force to redrive it again`);
        }
        const message = rebuild(row, opts.newId === true);
        const detail = { messageId: message.id, originalMessageId: row.messageId, topic: message.topic, newId: opts.newId === true };
        if (opts.dryRun) {
          const auditId = await this.#audit.record(tx, { ...base, outcome: 'dry-run', detail });
          return { outcome: 'dry-run' as const, plan: undefined, auditId, messageId: message.id };
        }
        await this.#outbox.enqueue(tx, [message]);
        await tx.query(
          `UPDATE ${this.#t} SET status = 'redriven', resolved_at = now(), resolved_by = $2, resolution_note = $3 WHERE id = $1`,
          [id, actor.name, opts.reason ?? null],
        );
        const auditId = await this.#audit.record(tx, { ...base, outcome: 'accepted', detail });
        this.deps.logger.info({ deadLetter: id, messageId: message.id, topic: message.topic, actor: actor.name }, 'dead letter redriven');
        return { outcome: 'accepted' as const, plan: undefined, auditId, messageId: message.id };
      });
    } catch (err) {
      if (err instanceof RefusedError || err instanceof NotFoundError) {
        await this.#audit.record(this.deps.db, { ...base, outcome: 'refused', detail: { code: err.code, message: err.message } });
      }
      throw err;
    }
  }

  async discard(id: string, actor: Actor, opts: { reason: string }): Promise<ActionResult> {
    if (!opts.reason?.trim()) throw new SagaflowError('USAGE', 'a discard needs a reason');
    const base = { actor: actor.name, action: 'discard' as const, targetType: 'dead_letter' as const, targetId: id, reason: opts.reason, requestId: actor.requestId };
    try {
      return await this.deps.db.transaction(async (tx) => {
        const row = await this.#get(tx, id, true);
        if (row.status === 'discarded') {
          const auditId = await this.#audit.record(tx, { ...base, outcome: 'duplicate', detail: {} });
          return { outcome: 'duplicate' as const, plan: undefined, auditId };
        }
        await tx.query(`UPDATE ${this.#t} SET status = 'discarded', resolved_at = now(), resolved_by = $2, resolution_note = $3 WHERE id = $1`, [
          id,
          actor.name,
          opts.reason,
        ]);
        const auditId = await this.#audit.record(tx, { ...base, outcome: 'accepted', detail: { from: row.status } });
        return { outcome: 'accepted' as const, plan: undefined, auditId };
      });
    } catch (err) {
      if (err instanceof NotFoundError) await this.#audit.record(this.deps.db, { ...base, outcome: 'refused', detail: { code: err.code } });
      throw err;
    }
  }

  async #get(q: Queryable, id: string, lock: boolean): Promise<DeadLetter & { headers: Record<string, string>; body: Buffer }> {
    if (!/^\d{1,18}$/.test(id)) throw new NotFoundError(`no dead letter ${id}`);
    const { rows } = await q.query<DeadLetter & { headers: Record<string, string>; body: Buffer }>(
      `SELECT ${COLUMNS}, headers, body FROM ${this.#t} WHERE id = $1 ${lock ? 'FOR UPDATE' : ''}`,
      [id],
    );
    if (!rows[0]) throw new NotFoundError(`no dead letter ${id}`);
    return rows[0];
  }
}

/** Dead-letter headers are stripped: the redriven message looks like the original did. */
function rebuild(row: DeadLetter & { headers: Record<string, string>; body: Buffer }, newId: boolean): OutgoingMessage {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(row.headers ?? {})) {
    if (k.startsWith('x-sagaflow-') || k.startsWith('x-death') || k.startsWith('x-first-death') || k.startsWith('x-last-death')) continue;
    if (typeof v === 'string') headers[k] = v;
  }
  let body = row.body;
  // The outbox (and every consumer's inbox) keys by UUID: a message without one, or with a foreign
  // id that is not a UUID, goes out under a fresh id, its body unchanged.
  let id = row.messageId !== null && UUID.test(row.messageId) ? row.messageId : randomUUID();
  if (newId) {
    // A fresh id needs a readable envelope; a message that never had one is republished as-is.
    let env: unknown;
    try {
      env = JSON.parse(body.toString('utf8'));
    } catch {
      throw new RefusedError('INVALID_STATE', 'the dead letter has no readable envelope; it can only be redriven unchanged');
    }
    if (env && typeof env === 'object' && !Array.isArray(env)) {
      id = randomUUID();
      (env as Record<string, unknown>).id = id;
      body = Buffer.from(JSON.stringify(env), 'utf8');
    }
  }
  return { topic: row.topic, key: row.key ?? id, id, type: row.type ?? 'unknown', body, headers: { ...headers, [H.messageId]: id } };
}
