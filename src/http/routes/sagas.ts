import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { BulkResult, Plan } from '../../ops/saga-ops.js';
import { SAGA_STATUSES, type SagaStatus } from '../../saga/state.js';
import { HttpError, parseInput } from '../errors.js';
import { decodeSagaCursor, encodeSagaCursor, limitSchema, page } from '../pagination.js';
import { redact } from '../redact.js';
import { actorOf, filterText, reasonSchema, sagaIdParams, sinceSchema, type RouteContext } from '../shared.js';

/**
 * Sagas: list (filter + keyset pages), show (with its step history), replay one, replay the failed
 * ones in bulk, cancel. Mutating routes need the `admin` role and are audited by the ops layer.
 * Bodies are strict: an unknown field (a typo such as `dry_run`) is a 400, never silently a real run.
 */
const listQuery = z.strictObject({
  status: z.enum(SAGA_STATUSES as readonly [SagaStatus, ...SagaStatus[]]).optional(),
  type: filterText.optional(),
  since: sinceSchema.optional(),
  limit: limitSchema,
  cursor: z.string().max(400).optional(),
});

const stepName = z.string().min(1).max(200);

const replayBody = z.strictObject({
  fromStep: stepName.optional(),
  force: z.boolean().optional(),
  dryRun: z.boolean().optional(),
  reason: reasonSchema.optional(),
});

const bulkReplayBody = z.strictObject({
  status: z.literal('failed', { message: 'bulk replay takes status "failed" (only failed sagas can be replayed)' }),
  type: filterText.optional(),
  since: sinceSchema.optional(),
  limit: z.number().int().min(1).max(500).default(100),
  dryRun: z.boolean().optional(),
  reason: reasonSchema.optional(),
});

const cancelBody = z.strictObject({
  reason: reasonSchema.optional(),
  dryRun: z.boolean().optional(),
});

export function redactPlan(plan: Plan | undefined): Plan | undefined {
  return plan && { ...plan, commands: plan.commands.map((c) => ({ ...c, payload: redact(c.payload) })) };
}

export function sagaRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const knownSteps = new Set(ctx.definitions.flatMap((d) => d.steps.map((s) => s.name)));

  app.get('/sagas', { config: { access: 'read' } }, async (request) => {
    const q = parseInput(listQuery, request.query, 'query');
    const rows = await ctx.sagaStore.list(ctx.db, {
      ...(q.status ? { status: q.status } : {}),
      ...(q.type ? { type: q.type } : {}),
      ...(q.since ? { since: q.since } : {}),
      ...(q.cursor ? { before: decodeSagaCursor(q.cursor) } : {}),
      limit: q.limit + 1,
    });
    return page(rows, q.limit, (last) => encodeSagaCursor(last));
  });

  app.get('/sagas/:id', { config: { access: 'read' } }, async (request) => {
    const { id } = parseInput(sagaIdParams, request.params, 'path');
    const saga = await ctx.sagaStore.get(ctx.db, id);
    if (!saga) throw new HttpError(404, 'NOT_FOUND', `no saga ${id}`);
    const steps = await ctx.sagaStore.history(ctx.db, id);
    return { ...saga, data: redact(saga.data), state: redact(saga.state), steps: steps.map((s) => ({ ...s, kept: redact(s.kept) })) };
  });

  app.post('/sagas/replay', { config: { access: 'admin', auditAs: { action: 'replay', targetType: 'saga' } } }, async (request) => {
    const b = parseInput(bulkReplayBody, request.body, 'body');
    const results = await ctx.sagaOps.replayFailed({ type: b.type, since: b.since, limit: b.limit }, actorOf(request), {
      dryRun: b.dryRun,
      reason: b.reason,
    });
    return { results: results.map((r) => ({ ...r, plan: redactPlan(r.plan) })), summary: summarise(results) };
  });

  app.post('/sagas/:id/replay', { config: { access: 'admin', auditAs: { action: 'replay', targetType: 'saga' } } }, async (request) => {
    const { id } = parseInput(sagaIdParams, request.params, 'path');
    const b = parseInput(replayBody, request.body, 'body');
    // A step no definition has is a bad request, not "saga not found" (which the engine would say).
    if (b.fromStep !== undefined && !knownSteps.has(b.fromStep)) {
      throw new HttpError(400, 'BAD_REQUEST', `invalid body: fromStep: no saga defines a step ${JSON.stringify(b.fromStep)}`, [
        { path: 'fromStep', message: 'unknown step' },
      ]);
    }
    const r = await ctx.sagaOps.replay(id, actorOf(request), b);
    return { outcome: r.outcome, plan: redactPlan(r.plan), auditId: r.auditId, requestId: request.id };
  });

  app.post('/sagas/:id/cancel', { config: { access: 'admin', auditAs: { action: 'cancel', targetType: 'saga' } } }, async (request) => {
    const { id } = parseInput(sagaIdParams, request.params, 'path');
    const b = parseInput(cancelBody, request.body, 'body');
    if (b.reason === undefined) {
      throw new HttpError(400, 'BAD_REQUEST', 'invalid body: reason: a cancel needs a reason (it is kept in the audit trail)', [
        { path: 'reason', message: 'required' },
      ]);
    }
    const r = await ctx.sagaOps.cancel(id, actorOf(request), { reason: b.reason, dryRun: b.dryRun ?? false });
    return { outcome: r.outcome, plan: redactPlan(r.plan), auditId: r.auditId, requestId: request.id };
  });
}

function summarise(results: readonly BulkResult[]): Record<'total' | 'accepted' | 'dryRun' | 'duplicate' | 'refused' | 'error', number> {
  const n = (o: BulkResult['outcome']) => results.filter((r) => r.outcome === o).length;
  return { total: results.length, accepted: n('accepted'), dryRun: n('dry-run'), duplicate: n('duplicate'), refused: n('refused'), error: n('error') };
}
