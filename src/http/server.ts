import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { AdminToken } from '../config.js';
import type { Db } from '../db/db.js';
import { assertSchemaCurrent } from '../db/migrate.js';
import { UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { AuditLog } from '../ops/audit.js';
import { DeadLetterOperations } from '../ops/dead-letter-ops.js';
import { SagaOperations } from '../ops/saga-ops.js';
import type { SagaDefinition } from '../saga/definition.js';
import { SagaStore } from '../saga/store.js';
import { transitionSettings, type TransitionSettings } from '../transaction/transitions.js';
import { AuthFailureLimiter, DEFAULT_AUTH_FAILURES, type AuthFailureOptions } from './auth-failures.js';
import { TokenVerifier, authHook, type Principal, type Role } from './auth.js';
import { HttpError, errorBody, sendError } from './errors.js';
import { UUID } from './pagination.js';
import { DEFAULT_RATE_LIMIT, RateLimiter, type RateLimitOptions } from './rate-limit.js';
import { Readiness, type ReadinessOptions } from './readiness.js';
import { REQUEST_ID_REPLACED_HEADER, REQUEST_ID_HEADER, REQUEST_ID_RULE, genRequestId, hasMalformedRequestId } from './request-id.js';
import type { MessageDefinition } from '../messages/message.js';
import { moduleRegistry } from '../module.js';
import { auditRoutes } from './routes/audit.js';
import { messageRoutes } from './routes/messages.js';
import { CIRCUIT_NAME, circuitRoutes } from './routes/circuits.js';
import { CircuitOperations } from '../ops/circuit-ops.js';
import { deadLetterRoutes } from './routes/dead-letters.js';
import { sagaRoutes } from './routes/sagas.js';
import type { RouteContext } from './shared.js';
import type { SessionOptions } from './ui/session.js';
import { uiRoutes } from './ui/routes.js';

/**
 * The admin HTTP API (JSON over Fastify): the operator actions of the CLI (list and show sagas,
 * replay, cancel, dead letters, the audit trail) for dashboards and scripts.
 *
 *   GET  /healthz                          no auth; { ok: true } while the process serves (liveness)
 *   GET  /readyz                           no auth; 200 { ready: true } once the database answers and its
 *                                          schema is current, else 503 with the reason (the /v1 routes
 *                                          answer 503 meanwhile)
 *   GET  /metrics                          no auth; Prometheus text (when built with a registry)
 *   GET  /v1/sagas                         read   ?status&type&since&limit&cursor -> { items, nextCursor }
 *   GET  /v1/sagas/:id                     read   the saga with its step history (`steps`)
 *   POST /v1/sagas/:id/replay              admin  { fromStep?, force?, dryRun?, reason? } -> { outcome, plan, auditId }
 *   POST /v1/sagas/replay                  admin  { status: 'failed', type?, since?, limit?, dryRun?, reason? } -> { results, summary }
 *   POST /v1/sagas/:id/cancel              admin  { reason, dryRun? }
 *   GET  /v1/dead-letters                  read   ?status&consumer&reason&type&since&limit&cursor -> { items, nextCursor }
 *   GET  /v1/dead-letters/:id              read
 *   POST /v1/dead-letters/:id/redrive      admin  { newId?, force?, reason?, dryRun? }
 *   POST /v1/dead-letters/:id/discard      admin  { reason }
 *   GET  /v1/audit                         read   ?target&action&limit&cursor -> { items, nextCursor }
 *   POST /v1/messages                      admin  { type, payload, sagaId?, tenantId? } -> 202 { messageId, sagaId? } (through the outbox)
 *   GET  /ui ...                           the operator dashboard (HTML, session cookie; see ui/routes.ts)
 *
 * Errors are `{ error: { code, message }, requestId }`: 400 bad input, 401 no/unknown token,
 * 403 role too low, 404 unknown target, 409 the target's state refuses the action, 413 body too
 * large, 429 rate limited (per token, or per address after failed authentications), 503 database
 * down or not ready, 500 anything else (details only in the log). Every answer carries
 * `x-request-id` (see request-id.ts). Only bearer tokens authenticate (see auth.ts on CSRF).
 *
 * The function only builds the server; the caller listens (`sagaflow serve`) or injects (tests).
 */
export interface AdminServerDeps {
  readonly db: Db;
  readonly schema: string;
  /** Saga definitions of the module: replay and cancel decide with them. */
  readonly sagas: readonly SagaDefinition<any, any>[];
  /** Further message types POST /v1/messages may publish (saga start messages and commands are known anyway). */
  readonly messages?: readonly MessageDefinition[];
  readonly tokens: readonly AdminToken[];
  readonly logger: Logger;
  readonly transitions?: TransitionSettings;
  /** Per-token request budget (default 120 at once, 20/s); false turns it off. */
  readonly rateLimit?: RateLimitOptions | false;
  /** Largest request body in bytes (default 64 KiB). */
  readonly bodyLimit?: number;
  /** Failed authentications per client address (default 10 at once, then one per 10 s); false turns it off. */
  readonly authFailures?: AuthFailureOptions | false;
  /** How /readyz and the background check retry and cache (see readiness.ts). */
  readonly readiness?: ReadinessOptions;
  /** The dashboard under /ui (see ui/routes.ts): its sessions' lifetime and cookie; false leaves it out. */
  readonly ui?: SessionOptions | false;
  /** Served at /metrics without authentication, as Prometheus scrapes (counts and ages, no saga data). */
  readonly metrics?: Registry;
}

/**
 * Fastify's per-request lines, adjusted: "incoming request" only at debug ("request completed"
 * says the same at info), and nothing for a request refused for its credentials, which the
 * failed-authentication limiter logs once per burst instead of once per request.
 */
class AdminLogController extends LogController {
  constructor() {
    super({ disableRequestLogging: (request) => request.authFailed === true });
  }

  override incomingRequest(request: FastifyRequest): void {
    if (!this.isLogDisabled(request)) request.log.debug({ req: request }, 'incoming request');
  }
}


export function buildAdminServer(deps: AdminServerDeps): FastifyInstance {
  checkTokens(deps.tokens);
  const logger = deps.logger.child({ component: 'admin-http' });
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; typed as such so the instance is a plain FastifyInstance.
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit ?? 64 * 1024,
    // genRequestId reads and validates x-request-id itself; Fastify must not take it unchecked.
    requestIdHeader: false,
    genReqId: genRequestId,
    trustProxy: false,
    requestTimeout: 120_000,
    return503OnClosing: true,
    logController: new AdminLogController(),
  });
  const readiness = new Readiness(
    async () => {
      await deps.db.query('SELECT 1');
      await assertSchemaCurrent(deps.db, deps.schema);
    },
    logger,
    deps.readiness,
  );

  const ctx: RouteContext = {
    db: deps.db,
    sagaStore: new SagaStore(deps.schema),
    sagaOps: new SagaOperations({
      db: deps.db,
      schema: deps.schema,
      sagas: deps.sagas,
      transitions: deps.transitions ?? transitionSettings(),
      logger,
    }),
    deadLetters: new DeadLetterOperations({ db: deps.db, schema: deps.schema, logger }),
    audit: new AuditLog(deps.schema),
    circuits: new CircuitOperations({ db: deps.db, schema: deps.schema, logger }),
    definitions: deps.sagas,
  };

  if (deps.tokens.length === 0) {
    logger.warn('admin API: no tokens configured (SAGAFLOW_ADMIN_TOKENS); every /v1 request will be answered 401');
  } else {
    logger.info(
      { tokens: deps.tokens.map((t) => ({ name: t.name, role: t.role })) },
      'admin API: bearer-token authentication enabled',
    );
  }

  // Only JSON bodies: a text/plain POST is a 415, not a string that happens to fail validation.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('principal', null);
  app.decorateRequest('authFailed', false);
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!.slice(0, 200);
    return reply.code(404).send(errorBody(request.id, 'NOT_FOUND', `no route ${request.method} ${path}`));
  });

  app.addHook('onRequest', async (request) => {
    if (hasMalformedRequestId(request.raw)) request.log.info({ replacedBy: request.id }, 'malformed x-request-id replaced by a generated one');
  });
  app.addHook('onSend', async (request, reply, payload) => {
    void reply.header(REQUEST_ID_HEADER, request.id);
    if (hasMalformedRequestId(request.raw)) void reply.header(REQUEST_ID_REPLACED_HEADER, REQUEST_ID_RULE);
    void reply.header('cache-control', 'no-store');
    void reply.header('x-content-type-options', 'nosniff');
    return payload;
  });
  app.addHook('onReady', async () => readiness.start());
  app.addHook('onClose', async () => readiness.stop());

  // Liveness: the process serves. Whether it can do anything useful is /readyz.
  app.get('/healthz', async () => ({ ok: true }));
  const registry = deps.metrics;
  if (registry) {
    app.get('/metrics', async (_request, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()));
  }
  app.get('/readyz', async (request, reply) => {
    const s = await readiness.probe();
    if (s.ready) return { ready: true };
    return reply.code(503).header('retry-after', '5').send({ ready: false, ...errorBody(request.id, 'UNAVAILABLE', `not ready: ${s.reason}`) });
  });

  const limiter = deps.rateLimit === false ? undefined : new RateLimiter(deps.rateLimit ?? DEFAULT_RATE_LIMIT);
  const failures = deps.authFailures === false ? undefined : new AuthFailureLimiter(deps.authFailures ?? DEFAULT_AUTH_FAILURES);
  // Until the database answers with a current schema every route would fail anyway: say why, once.
  const whenReady = async (): Promise<void> => {
    const s = readiness.state.ready ? readiness.state : await readiness.probe();
    if (!s.ready) throw new HttpError(503, 'UNAVAILABLE', `not ready: ${s.reason}`, undefined, { 'retry-after': '5' });
  };
  const onForbidden = async (request: FastifyRequest, principal: Principal, needed: Role): Promise<void> => {
    const a = request.routeOptions.config.auditAs;
    if (!a) return;
    const id = (request.params as { id?: unknown }).id;
    // Bulk routes have no single target ('*'); a malformed id is not worth an audit row.
    const targetId =
      id === undefined
        ? '*'
        : typeof id !== 'string'
          ? undefined
          : a.targetType === 'circuit'
            ? CIRCUIT_NAME.test(id)
              ? id // breaker names are case-sensitive
              : undefined
            : (a.targetType === 'saga' ? UUID.test(id) : /^\d{1,18}$/.test(id))
              ? id.toLowerCase()
              : undefined;
    if (targetId === undefined) return;
    try {
      await ctx.audit.record(deps.db, {
        actor: principal.name,
        action: a.action,
        targetType: a.targetType,
        targetId,
        requestId: request.id,
        outcome: 'refused',
        detail: { code: 'FORBIDDEN', role: principal.role, needed },
      });
    } catch (err) {
      request.log.warn({ err: (err as Error).message }, 'could not audit a forbidden request');
    }
  };

  const verifier = new TokenVerifier(deps.tokens);
  void app.register(
    async (v1) => {
      v1.addHook('onRequest', authHook({ verifier, limiter, failures, onForbidden }));
      v1.addHook('onRequest', whenReady);
      sagaRoutes(v1, ctx);
      deadLetterRoutes(v1, ctx);
      auditRoutes(v1, ctx);
      messageRoutes(v1, { db: deps.db, schema: deps.schema, sagas: deps.sagas, registry: moduleRegistry({ sagas: deps.sagas, messages: deps.messages ?? [] }) });
      circuitRoutes(v1, ctx);
    },
    { prefix: '/v1' },
  );
  if (deps.ui !== false) {
    // Its own plugin scope: the HTML error pages, form parser and CSP stay out of the JSON API.
    void app.register(async (ui) => uiRoutes(ui, { ctx, schema: deps.schema, verifier, failures, limiter, whenReady, ...(deps.ui ? { sessions: deps.ui } : {}) }), {
      prefix: '/ui',
    });
  }

  return app;
}

function checkTokens(tokens: readonly AdminToken[]): void {
  const names = new Set<string>();
  const values = new Set<string>();
  for (const t of tokens) {
    if (t.role !== 'admin' && t.role !== 'read') throw new UsageError(`admin token ${t.name}: role must be admin or read`, 'CONFIG_INVALID');
    if (t.token.length < 16) throw new UsageError(`admin token ${t.name} is shorter than 16 characters`, 'CONFIG_INVALID');
    if (names.has(t.name)) throw new UsageError(`two admin tokens are named ${t.name}; names identify actors in the audit trail`, 'CONFIG_INVALID');
    if (values.has(t.token)) throw new UsageError(`admin token ${t.name} has the same value as another token`, 'CONFIG_INVALID');
    names.add(t.name);
    values.add(t.token);
  }
}
