import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { HttpError, parseInput } from '../errors.js';
import { actorOf, reasonSchema, type RouteContext } from '../shared.js';

/**
 * Circuit breakers: list them (state, sagas waiting, failures, opens, probes), open one by hand
 * (held open until closed by hand) or close one (the waiting sagas are released at a controlled
 * rate). Both actions need the `admin` role and a reason, and are audited.
 */
export const CIRCUIT_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const params = z.strictObject({ id: z.string().regex(CIRCUIT_NAME, 'must be a circuit name (1-128 letters, digits or _.:-)') });
const body = z.strictObject({ reason: reasonSchema.optional() });

export function circuitRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/circuits', { config: { access: 'read' } }, async () => ({ items: await ctx.circuits.list() }));

  for (const verb of ['open', 'close'] as const) {
    app.post(`/circuits/:id/${verb}`, { config: { access: 'admin', auditAs: { action: `circuit-${verb}`, targetType: 'circuit' } } }, async (request) => {
      const { id } = parseInput(params, request.params, 'path');
      const b = parseInput(body, request.body ?? {}, 'body');
      if (b.reason === undefined) {
        throw new HttpError(400, 'BAD_REQUEST', `invalid body: reason: ${verb === 'open' ? 'opening' : 'closing'} a breaker by hand needs a reason (it is kept in the audit trail)`, [
          { path: 'reason', message: 'required' },
        ]);
      }
      const r = verb === 'open' ? await ctx.circuits.open(id, actorOf(request), b.reason) : await ctx.circuits.close(id, actorOf(request), b.reason);
      return { ...r, requestId: request.id };
    });
  }
}
