import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { DeadLetterStatus } from '../../ops/dead-letter-ops.js';
import { HttpError, parseInput } from '../errors.js';
import { idCursorSchema, limitSchema, page } from '../pagination.js';
import { redact, redactJsonText } from '../redact.js';
import { actorOf, deadLetterIdParams, filterText, reasonSchema, sinceSchema, type RouteContext } from '../shared.js';

/** Dead letters: list, show (headers and body redacted), redrive, discard. */
const STATUSES = ['new', 'redriven', 'discarded'] as const satisfies readonly DeadLetterStatus[];

const listQuery = z.strictObject({
  status: z.enum(STATUSES).optional(),
  consumer: filterText.optional(),
  reason: filterText.optional(),
  type: filterText.optional(),
  since: sinceSchema.optional(),
  limit: limitSchema,
  cursor: idCursorSchema.optional(),
});

const redriveBody = z.strictObject({
  newId: z.boolean().optional(),
  force: z.boolean().optional(),
  reason: reasonSchema.optional(),
  dryRun: z.boolean().optional(),
});

const discardBody = z.strictObject({ reason: reasonSchema.optional() });

export function deadLetterRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/dead-letters', { config: { access: 'read' } }, async (request) => {
    const q = parseInput(listQuery, request.query, 'query');
    const rows = await ctx.deadLetters.list({
      status: q.status,
      consumer: q.consumer,
      reason: q.reason,
      type: q.type,
      since: q.since,
      beforeId: q.cursor,
      limit: q.limit + 1,
    });
    return page(rows, q.limit, (last) => last.id);
  });

  app.get('/dead-letters/:id', { config: { access: 'read' } }, async (request) => {
    const { id } = parseInput(deadLetterIdParams, request.params, 'path');
    const d = await ctx.deadLetters.show(id);
    return { ...d, headers: redact(d.headers), body: d.bodyEncoding === 'utf8' ? redactJsonText(d.body) : d.body };
  });

  app.post('/dead-letters/:id/redrive', { config: { access: 'admin', auditAs: { action: 'redrive', targetType: 'dead_letter' } } }, async (request) => {
    const { id } = parseInput(deadLetterIdParams, request.params, 'path');
    const b = parseInput(redriveBody, request.body, 'body');
    const r = await ctx.deadLetters.redrive(id, actorOf(request), b);
    return { outcome: r.outcome, messageId: r.messageId, auditId: r.auditId, requestId: request.id };
  });

  app.post('/dead-letters/:id/discard', { config: { access: 'admin', auditAs: { action: 'discard', targetType: 'dead_letter' } } }, async (request) => {
    const { id } = parseInput(deadLetterIdParams, request.params, 'path');
    const b = parseInput(discardBody, request.body, 'body');
    if (b.reason === undefined) {
      throw new HttpError(400, 'BAD_REQUEST', 'invalid body: reason: a discard needs a reason (it is kept in the audit trail)', [
        { path: 'reason', message: 'required' },
      ]);
    }
    const r = await ctx.deadLetters.discard(id, actorOf(request), { reason: b.reason });
    return { outcome: r.outcome, auditId: r.auditId, requestId: request.id };
  });
}
