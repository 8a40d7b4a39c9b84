import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { createClient } from '../../client.js';
import type { Db } from '../../db/db.js';
import { PermanentError } from '../../errors.js';
import type { MessageRegistry } from '../../messages/message.js';
import type { SagaDefinition } from '../../saga/definition.js';
import { HttpError, parseInput } from '../errors.js';
import { UUID } from '../pagination.js';

/**
 * POST /v1/messages {type, payload, sagaId?, tenantId?}: publishes a saga start message or a command
 * of the module (`sagaflow publish` over HTTP). It goes through the outbox, due at once with a
 * NOTIFY, so the admin API needs no broker connection: the workers' relays publish it, and with the
 * memory transport of `sagaflow dev` this is how a message reaches the one process that consumes it.
 */
const publishBody = z.strictObject({
  type: z.string().min(1).max(200),
  payload: z.unknown(),
  sagaId: z.string().regex(UUID, 'must be a UUID').optional(),
  tenantId: z.string().min(1).max(200).optional(),
});

export function messageRoutes(app: FastifyInstance, deps: { db: Db; schema: string; registry: MessageRegistry; sagas: readonly SagaDefinition<any, any>[] }): void {
  const client = createClient({ schema: deps.schema, db: deps.db });
  app.post('/messages', { config: { access: 'admin' } }, async (request, reply) => {
    const b = parseInput(publishBody, request.body, 'body');
    const def = deps.registry.get(b.type);
    if (!def) throw new HttpError(400, 'BAD_REQUEST', `invalid body: type: unknown message type ${b.type}; known: ${deps.registry.types().join(', ')}`);
    if (!def.topic) throw new HttpError(400, 'BAD_REQUEST', `invalid body: type: ${b.type} is a reply (it has no topic); publish commands or saga start messages`);
    const saga = deps.sagas.find((s) => s.start.type === b.type);
    const opts = { ...(b.sagaId ? { sagaId: b.sagaId.toLowerCase() } : {}), ...(b.tenantId ? { tenantId: b.tenantId } : {}) };
    try {
      const sent = saga ? await client.startSaga(saga, b.payload as never, opts) : await client.send(def, b.payload as never, opts);
      return reply.code(202).send({ type: b.type, ...sent, requestId: request.id });
    } catch (err) {
      if (err instanceof PermanentError && err.code === 'SCHEMA_INVALID') throw new HttpError(400, 'BAD_REQUEST', `invalid body: payload: ${err.message}`);
      throw err;
    }
  });
}
