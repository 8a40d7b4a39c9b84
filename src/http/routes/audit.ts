import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AuditAction } from '../../ops/audit.js';
import { parseInput } from '../errors.js';
import { idCursorSchema, limitSchema, page } from '../pagination.js';
import { redact } from '../redact.js';
import { filterText, type RouteContext } from '../shared.js';

/** The audit trail, newest first: who did what to which saga or dead letter, why, and how it ended. */
const ACTIONS = ['replay', 'cancel', 'redrive', 'discard', 'circuit-open', 'circuit-close'] as const satisfies readonly AuditAction[];

const listQuery = z.strictObject({
  target: filterText.optional(),
  action: z.enum(ACTIONS).optional(),
  limit: limitSchema,
  cursor: idCursorSchema.optional(),
});

export function auditRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/audit', { config: { access: 'read' } }, async (request) => {
    const q = parseInput(listQuery, request.query, 'query');
    const rows = await ctx.audit.list(ctx.db, {
      ...(q.target ? { targetId: normaliseTarget(q.target) } : {}),
      ...(q.action ? { action: q.action } : {}),
      ...(q.cursor ? { beforeId: q.cursor } : {}),
      limit: q.limit + 1,
    });
    return page(
      rows.map((r) => ({ ...r, detail: redact(r.detail) })),
      q.limit,
      (last) => last.id,
    );
  });
}

/** Saga ids are stored lower-case; a dead-letter id is digits. Anything else is matched as given. */
function normaliseTarget(t: string): string {
  return /^[0-9A-Fa-f-]{36}$/.test(t) ? t.toLowerCase() : t;
}
