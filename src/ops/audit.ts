import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';

export type AuditAction = 'replay' | 'cancel' | 'redrive' | 'discard' | 'circuit-open' | 'circuit-close';
export type AuditOutcome = 'accepted' | 'refused' | 'dry-run' | 'duplicate';

export interface AuditEntry {
  readonly actor: string;
  readonly action: AuditAction;
  readonly targetType: 'saga' | 'dead_letter' | 'circuit';
  readonly targetId: string;
  readonly reason?: string | undefined;
  readonly requestId?: string | undefined;
  readonly outcome: AuditOutcome;
  readonly detail?: unknown;
}

export interface AuditRow extends AuditEntry {
  readonly id: string;
  readonly at: Date;
}

/** The audit trail: one row per operator action, accepted or not. */
export class AuditLog {
  readonly #t: string;
  constructor(schema: string) {
    this.#t = `${quoteSchema(schema)}.audit_log`;
  }

  async record(db: Queryable, e: AuditEntry): Promise<string> {
    const { rows } = await db.query<{ id: string }>(
      `INSERT INTO ${this.#t} (actor, action, target_type, target_id, reason, request_id, outcome, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
      [e.actor, e.action, e.targetType, e.targetId, e.reason ?? null, e.requestId ?? null, e.outcome, JSON.stringify(e.detail ?? {})],
    );
    return rows[0]!.id;
  }

  /** The accepted action an earlier request with this id already caused, if any. */
  async accepted(db: Queryable, action: AuditAction, targetId: string, requestId: string): Promise<AuditRow | undefined> {
    const { rows } = await db.query<AuditRow>(
      `${SELECT} FROM ${this.#t} WHERE action = $1 AND target_id = $2 AND request_id = $3 AND outcome = 'accepted'`,
      [action, targetId, requestId],
    );
    return rows[0];
  }

  async list(db: Queryable, f: { targetId?: string; action?: AuditAction; limit?: number; beforeId?: string } = {}): Promise<AuditRow[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    if (f.targetId) where.push(`target_id = $${values.push(f.targetId)}`);
    if (f.action) where.push(`action = $${values.push(f.action)}`);
    if (f.beforeId) where.push(`id < $${values.push(f.beforeId)}`);
    const { rows } = await db.query<AuditRow>(
      `${SELECT} FROM ${this.#t} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${values.push(f.limit ?? 50)}`,
      values,
    );
    return rows;
  }
}

const SELECT = `SELECT id::text, at, actor, action, target_type AS "targetType", target_id AS "targetId", reason,
  request_id AS "requestId", outcome, detail`;
