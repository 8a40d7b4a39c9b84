import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Db } from '../db/db.js';
import type { AuditAction, AuditLog } from '../ops/audit.js';
import type { CircuitOperations } from '../ops/circuit-ops.js';
import type { DeadLetterOperations } from '../ops/dead-letter-ops.js';
import type { Actor, SagaOperations } from '../ops/saga-ops.js';
import type { SagaDefinition } from '../saga/definition.js';
import type { SagaStore } from '../saga/store.js';
import { UUID } from './pagination.js';

/** What every route module gets from buildAdminServer. */
export interface RouteContext {
  readonly db: Db;
  readonly sagaStore: SagaStore;
  readonly sagaOps: SagaOperations;
  readonly deadLetters: DeadLetterOperations;
  readonly audit: AuditLog;
  readonly circuits: CircuitOperations;
  readonly definitions: readonly SagaDefinition<any, any>[];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Marks an operator action: a caller refused for its role is still written to the audit trail. */
    auditAs?: { readonly action: AuditAction; readonly targetType: 'saga' | 'dead_letter' | 'circuit' };
  }
}

/** Who acts, for the ops layer: the token's name (never the token) and the request id (idempotency key). */
export function actorOf(request: FastifyRequest): Actor {
  const p = request.principal;
  if (!p) throw new Error('operator route reached without an authenticated principal');
  return { name: p.name, requestId: request.id };
}

export const sagaIdParams = z.strictObject({
  id: z.string().regex(UUID, 'must be a UUID').transform((s) => s.toLowerCase()),
});

export const deadLetterIdParams = z.strictObject({
  id: z.string().regex(/^\d{1,18}$/, 'must be a dead letter id (a positive integer)'),
});

/** An ISO time with offset, or a duration back from now: 30s, 15m, 2h, 7d. */
export const sinceSchema = z
  .string()
  .max(64)
  .transform((s, ctx): Date => {
    const rel = /^(\d{1,9})([smhd])$/.exec(s);
    if (rel) return new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[rel[2] as 's']);
    const d = z.iso.datetime({ offset: true }).safeParse(s);
    if (d.success) return new Date(d.data);
    ctx.addIssue({ code: 'custom', message: 'must be an ISO time with offset (2026-01-31T12:00:00Z) or a duration like 30m, 2h, 7d' });
    return z.NEVER;
  });

export const reasonSchema = z.string().trim().min(1, 'must not be empty').max(1000);
/** A free-text filter value (type, consumer, reason code). */
export const filterText = z.string().min(1).max(200);
