import { DefinitionSet } from '../../saga/versions.js';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { OverviewQueries, WINDOWS, type Window } from '../../ops/overview.js';
import { SAGA_STATUSES, type SagaStatus } from '../../saga/state.js';
import type { AuthFailureLimiter } from '../auth-failures.js';
import type { TokenVerifier } from '../auth.js';
import type { RateLimiter } from '../rate-limit.js';
import { HttpError, mapError, parseInput } from '../errors.js';
import { decodeSagaCursor, encodeSagaCursor, idCursorSchema, page as keysetPage, UUID } from '../pagination.js';
import { redactPlan } from '../routes/sagas.js';
import { deadLetterIdParams, filterText, reasonSchema, sagaIdParams, sinceSchema, type RouteContext } from '../shared.js';
import { APP_CSS, APP_JS } from './assets.js';
import type { Html } from './html.js';
import { page, type Flash, type NavItem, type Viewer } from './layout.js';
import { deadLetterListPage, deadLetterPage } from './pages/dead-letters.js';
import { errorPage, loginPage } from './pages/login.js';
import { overviewPage } from './pages/overview.js';
import { planPage, sagaDetailPage } from './pages/saga-detail.js';
import { sagaListPage } from './pages/saga-list.js';
import { clearedCookie, cookieValue, csrfMatches, sameOrigin, sessionCookie, SessionStore, type Session, type SessionOptions } from './session.js';

/**
 * The operator dashboard under /ui: server-rendered pages over the same operations as the JSON API
 * (and the same tokens and roles), with one small script for live refresh and confirmations.
 *
 * Security, in the order a request meets it:
 *   - every answer carries a strict Content-Security-Policy (scripts and styles from this origin
 *     only, no inline script, no framing) and is never cached;
 *   - a page needs a session (cookie set at login; the token itself is never stored or rendered);
 *   - a POST must come from this origin (Origin header) and carry the session's CSRF token;
 *   - an action needs the admin role: a read session sees no action forms, and a forged POST is
 *     answered 403 and written to the audit trail as refused.
 */
export interface UiDeps {
  readonly ctx: RouteContext;
  readonly schema: string;
  readonly verifier: TokenVerifier;
  readonly failures: AuthFailureLimiter | undefined;
  /** The API's per-token budget, shared: a session spends from its token's name. */
  readonly limiter: RateLimiter | undefined;
  readonly whenReady: () => Promise<void>;
  readonly sessions?: SessionOptions;
}

export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "object-src 'none'",
].join('; ');

declare module 'fastify' {
  interface FastifyRequest {
    uiSession: Session | null;
  }
}

type FlashSession = Session & { flash?: Flash };

const listQuery = z.strictObject({
  status: z.union([z.literal(''), z.enum(SAGA_STATUSES as readonly [SagaStatus, ...SagaStatus[]])]).optional(),
  type: z.union([z.literal(''), filterText]).optional(),
  since: z.string().max(64).optional(),
  q: z.string().trim().max(200).optional(),
  cursor: z.string().max(400).optional(),
});

const dlQuery = z.strictObject({
  status: z.enum(['', 'new', 'redriven', 'discarded']).optional(),
  consumer: z.string().max(200).optional(),
  reason: z.string().max(200).optional(),
  cursor: idCursorSchema.optional(),
});

const checkbox = z.literal('1').optional().transform((v) => v === '1');
const csrfField = z.string().max(200).optional();
const replayForm = z.strictObject({
  _csrf: csrfField,
  fromStep: z.string().max(200).optional().transform((s) => (s ? s : undefined)),
  force: checkbox,
  reason: reasonSchema,
  key: z.string().regex(UUID).optional(),
});
const cancelForm = z.strictObject({ _csrf: csrfField, reason: reasonSchema, key: z.string().regex(UUID).optional() });
const redriveForm = z.strictObject({ _csrf: csrfField, newId: checkbox, force: checkbox, reason: reasonSchema });
const discardForm = z.strictObject({ _csrf: csrfField, reason: reasonSchema });

const PAGE_SIZE = 50;

export function uiRoutes(app: FastifyInstance, deps: UiDeps): void {
  const { ctx } = deps;
  const sessions = new SessionStore(deps.sessions);
  const secure = deps.sessions?.secureCookie === true;
  const overview = new OverviewQueries(deps.schema);
  // A saga is shown with the steps of the version it runs on, not the newest one.
  const defs = new DefinitionSet(ctx.definitions);
  const knownSteps = new Set(ctx.definitions.flatMap((d) => d.steps.map((s) => s.name)));

  app.decorateRequest('uiSession', null);
  // HTML forms post urlencoded bodies; only in this scope (the JSON API stays JSON-only).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_req, body, done) => {
    const out: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(body as string)) out[k] = v;
    done(null, out);
  });

  app.addHook('onSend', async (_request, reply, payload) => {
    void reply.header('content-security-policy', CSP);
    void reply.header('x-frame-options', 'DENY');
    void reply.header('referrer-policy', 'no-referrer');
    void reply.header('cross-origin-opener-policy', 'same-origin');
    return payload;
  });

  const send = (reply: FastifyReply, status: number, body: Html): FastifyReply => reply.code(status).type('text/html; charset=utf-8').send(body.value);

  app.setErrorHandler((err, request, reply) => {
    const m = mapError(err);
    if (m.status >= 500) request.log.error({ err, method: request.method, route: request.routeOptions.url }, 'dashboard request failed');
    else request.log.info({ code: m.code, status: m.status, route: request.routeOptions.url }, 'dashboard request refused');
    for (const [k, v] of Object.entries(m.headers ?? {})) void reply.header(k, v);
    // The actions answer on the page they came from, so a refusal (409 and such) reads in context.
    const s = request.uiSession as FlashSession | null;
    const back = request.method === 'POST' && s && m.status === 409 ? backTo(request) : undefined;
    if (back && s) {
      s.flash = { kind: 'err', text: `${m.code}: ${m.message}` };
      return reply.code(303).header('location', back).send();
    }
    return send(reply, m.status, errorPage(m.status, m.code, m.message, request.id, s !== null));
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!.slice(0, 200);
    return send(reply, 404, errorPage(404, 'NOT_FOUND', `no page ${request.method} ${path}`, request.id, sessions.touch(cookieValue(request), false) !== undefined));
  });

  // Assets need no session: the login page uses them too.
  app.get('/assets/app.js', async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(APP_JS));
  app.get('/assets/app.css', async (_req, reply) => reply.type('text/css; charset=utf-8').send(APP_CSS));

  app.get('/login', async (request, reply) => {
    if (sessions.touch(cookieValue(request))) return reply.code(303).header('location', '/ui').send();
    return send(reply, 200, loginPage());
  });

  app.post('/login', async (request, reply) => {
    if (!sameOrigin(request)) throw new HttpError(403, 'CSRF', 'the sign-in form must be sent from this dashboard');
    const blockedMs = deps.failures?.refuse(request.ip, request.log) ?? 0;
    if (blockedMs > 0) return send(reply.header('retry-after', String(Math.ceil(blockedMs / 1000))), 429, loginPage('Too many failed sign-ins from this address; wait and try again.'));
    const token = (request.body as { token?: unknown } | undefined)?.token;
    const principal = typeof token === 'string' && token.length > 0 && token.length <= 4096 ? deps.verifier.verify(token) : null;
    if (!principal) {
      deps.failures?.fail(request.ip, request.log, { route: '/ui/login', why: 'invalid token' });
      return send(reply, 401, loginPage('That token is not valid.'));
    }
    sessions.end(cookieValue(request));
    const s = sessions.create(principal);
    request.log.info({ actor: principal.name, role: principal.role }, 'dashboard sign-in');
    return reply.code(303).header('set-cookie', sessionCookie(s.id, secure)).header('location', '/ui').send();
  });

  // Everything else needs a session; POSTs also need this origin and the session's CSRF token.
  void app.register(async (ui) => {
    ui.addHook('onRequest', async (request, reply) => {
      const s = sessions.touch(cookieValue(request), request.headers['x-sagaflow-live'] === undefined);
      if (!s) {
        if (request.method === 'GET') return reply.code(303).header('location', '/ui/login').send();
        throw new HttpError(401, 'UNAUTHORIZED', 'not signed in (or the session ended); sign in again');
      }
      request.uiSession = s;
      request.principal = s.principal;
      const wait = deps.limiter?.take(s.principal.name) ?? 0;
      if (wait > 0) {
        const seconds = Math.max(1, Math.ceil(wait / 1000));
        throw new HttpError(429, 'RATE_LIMITED', `too many requests for token ${s.principal.name}; retry in ${seconds} s`, undefined, { 'retry-after': String(seconds) });
      }
    });
    ui.addHook('preHandler', async (request) => {
      if (request.method !== 'POST') return;
      if (!sameOrigin(request)) throw new HttpError(403, 'CSRF', 'refused: the request did not come from this dashboard (Origin)');
      if (!csrfMatches(request.uiSession!, (request.body as { _csrf?: unknown } | undefined)?._csrf)) {
        throw new HttpError(403, 'CSRF', 'refused: the form token is missing or stale; reload the page and try again');
      }
      if (request.routeOptions.config.access === 'read') return;
      const p = request.uiSession!.principal;
      if (p.role !== 'admin') {
        await auditRefusal(request);
        throw new HttpError(403, 'FORBIDDEN', `token ${p.name} has role ${p.role}; this action needs role admin`);
      }
    });
    ui.addHook('onRequest', async (request) => {
      if (request.uiSession) await deps.whenReady();
    });

    const viewerOf = (request: FastifyRequest): Viewer => ({ principal: request.uiSession!.principal, csrf: request.uiSession!.csrf });
    const show = (request: FastifyRequest, reply: FastifyReply, title: string, nav: NavItem | undefined, content: Html) => {
      const s = request.uiSession as FlashSession;
      // A live refresh must not consume the flash meant for the page the operator is reading.
      const flash = request.headers['x-sagaflow-live'] ? undefined : s.flash;
      if (flash) s.flash = undefined;
      return send(reply, 200, page(viewerOf(request), { title, ...(nav ? { nav } : {}), flash }, content));
    };
    const flash = (request: FastifyRequest, f: Flash) => ((request.uiSession as FlashSession).flash = f);
    const actor = (request: FastifyRequest, key?: string) => ({ name: request.uiSession!.principal.name, requestId: key ?? request.id });

    async function auditRefusal(request: FastifyRequest): Promise<void> {
      const m = /^\/ui\/(sagas|dead-letters)\/([^/]+)\/(replay|cancel|redrive|discard)/.exec(request.url);
      if (!m) return;
      const targetType = m[1] === 'sagas' ? ('saga' as const) : ('dead_letter' as const);
      const id = m[2]!;
      if (targetType === 'saga' ? !UUID.test(id) : !/^\d{1,18}$/.test(id)) return;
      try {
        await ctx.audit.record(ctx.db, {
          actor: request.uiSession!.principal.name,
          action: m[3] as 'replay',
          targetType,
          targetId: id.toLowerCase(),
          requestId: request.id,
          outcome: 'refused',
          detail: { code: 'FORBIDDEN', role: request.uiSession!.principal.role, needed: 'admin', via: 'dashboard' },
        });
      } catch (err) {
        request.log.warn({ err: (err as Error).message }, 'could not audit a forbidden dashboard request');
      }
    }

    ui.post('/logout', { config: { access: 'read' } }, async (request, reply) => {
      sessions.end(request.uiSession!.id);
      return reply.code(303).header('set-cookie', clearedCookie(secure)).header('location', '/ui/login').send();
    });

    ui.get('/', async (request, reply) => {
      const w = (request.query as { window?: unknown }).window;
      const window: Window = typeof w === 'string' && w in WINDOWS ? (w as Window) : '1h';
      const figures = await overview.figures(ctx.db, window);
      return show(request, reply, 'Overview', 'overview', overviewPage(figures, window, new Date()));
    });

    ui.get('/sagas', async (request, reply) => {
      const q = parseInput(listQuery, request.query, 'query');
      const status = q.status || undefined;
      const type = q.type || undefined;
      const since = q.since ? parseInput(sinceSchema, q.since, 'query') : undefined;
      const types = ctx.definitions.map((d) => d.name);
      if (q.q) {
        const rows = await overview.search(ctx.db, q.q, PAGE_SIZE);
        return show(request, reply, 'Sagas', 'sagas', sagaListPage({ q: q.q }, types, rows, null));
      }
      const rows = await ctx.sagaStore.list(ctx.db, {
        ...(status ? { status } : {}),
        ...(type ? { type } : {}),
        ...(since ? { since } : {}),
        ...(q.cursor ? { before: decodeSagaCursor(q.cursor) } : {}),
        limit: PAGE_SIZE + 1,
      });
      const p = keysetPage(rows, PAGE_SIZE, (last) => encodeSagaCursor(last));
      return show(request, reply, 'Sagas', 'sagas', sagaListPage({ status, type, since: q.since || undefined }, types, p.items, p.nextCursor));
    });

    ui.get('/sagas/:id', async (request, reply) => {
      const { id } = parseInput(sagaIdParams, request.params, 'path');
      const saga = await ctx.sagaStore.get(ctx.db, id);
      if (!saga) throw new HttpError(404, 'NOT_FOUND', `no saga ${id}`);
      const [steps, audit] = await Promise.all([ctx.sagaStore.history(ctx.db, id), ctx.audit.list(ctx.db, { targetId: id, limit: 50 })]);
      return show(request, reply, `Saga ${id.slice(0, 8)}`, 'sagas', sagaDetailPage(viewerOf(request), saga, defs.get(saga.type, saga.definitionVersion), steps, audit));
    });

    const checkStep = (fromStep: string | undefined) => {
      if (fromStep !== undefined && !knownSteps.has(fromStep)) throw new HttpError(400, 'BAD_REQUEST', `no saga defines a step ${JSON.stringify(fromStep)}`);
    };

    ui.post('/sagas/:id/replay/plan', async (request, reply) => {
      const { id } = parseInput(sagaIdParams, request.params, 'path');
      const f = parseInput(replayForm, request.body, 'body');
      checkStep(f.fromStep);
      const r = await ctx.sagaOps.replay(id, actor(request), { fromStep: f.fromStep, force: f.force, reason: f.reason, dryRun: true });
      return show(request, reply, 'Replay plan', 'sagas', planPage(viewerOf(request), 'replay', redactPlan(r.plan)!, f, randomUUID()));
    });

    ui.post('/sagas/:id/replay', async (request, reply) => {
      const { id } = parseInput(sagaIdParams, request.params, 'path');
      const f = parseInput(replayForm, request.body, 'body');
      checkStep(f.fromStep);
      const r = await ctx.sagaOps.replay(id, actor(request, f.key), { fromStep: f.fromStep, force: f.force, reason: f.reason });
      flash(request, { kind: 'ok', text: r.outcome === 'duplicate' ? 'This replay was already accepted (sent twice); nothing more was done.' : `Replay accepted: the saga is ${r.plan?.to ?? 'running'} again.` });
      return reply.code(303).header('location', `/ui/sagas/${id}`).send();
    });

    ui.post('/sagas/:id/cancel/plan', async (request, reply) => {
      const { id } = parseInput(sagaIdParams, request.params, 'path');
      const f = parseInput(cancelForm, request.body, 'body');
      const r = await ctx.sagaOps.cancel(id, actor(request), { reason: f.reason, dryRun: true });
      return show(request, reply, 'Cancel plan', 'sagas', planPage(viewerOf(request), 'cancel', redactPlan(r.plan)!, f, randomUUID()));
    });

    ui.post('/sagas/:id/cancel', async (request, reply) => {
      const { id } = parseInput(sagaIdParams, request.params, 'path');
      const f = parseInput(cancelForm, request.body, 'body');
      const r = await ctx.sagaOps.cancel(id, actor(request, f.key), { reason: f.reason });
      flash(request, { kind: 'ok', text: r.outcome === 'duplicate' ? 'This cancel was already accepted; nothing more was done.' : 'Cancel accepted: the saga compensates.' });
      return reply.code(303).header('location', `/ui/sagas/${id}`).send();
    });

    ui.get('/dead-letters', async (request, reply) => {
      const q = parseInput(dlQuery, request.query, 'query');
      const filter = { status: q.status || undefined, consumer: q.consumer || undefined, reason: q.reason || undefined };
      const [rows, figures] = await Promise.all([
        ctx.deadLetters.list({ ...filter, beforeId: q.cursor, limit: PAGE_SIZE + 1 }),
        overview.deadLettersWaiting(ctx.db),
      ]);
      const p = keysetPage(rows, PAGE_SIZE, (last) => last.id);
      return show(request, reply, 'Dead letters', 'dead-letters', deadLetterListPage(filter, figures, p.items, p.nextCursor));
    });

    ui.get('/dead-letters/:id', async (request, reply) => {
      const { id } = parseInput(deadLetterIdParams, request.params, 'path');
      const [d, audit] = await Promise.all([ctx.deadLetters.show(id), ctx.audit.list(ctx.db, { targetId: id, limit: 50 })]);
      return show(request, reply, `Dead letter #${id}`, 'dead-letters', deadLetterPage(viewerOf(request), d, audit.filter((a) => a.targetType === 'dead_letter')));
    });

    ui.post('/dead-letters/:id/redrive', async (request, reply) => {
      const { id } = parseInput(deadLetterIdParams, request.params, 'path');
      const f = parseInput(redriveForm, request.body, 'body');
      const r = await ctx.deadLetters.redrive(id, actor(request), { newId: f.newId, force: f.force, reason: f.reason });
      flash(request, { kind: 'ok', text: `Redriven: message ${r.messageId} is on its way again.` });
      return reply.code(303).header('location', `/ui/dead-letters/${id}`).send();
    });

    ui.post('/dead-letters/:id/discard', async (request, reply) => {
      const { id } = parseInput(deadLetterIdParams, request.params, 'path');
      const f = parseInput(discardForm, request.body, 'body');
      const r = await ctx.deadLetters.discard(id, actor(request), { reason: f.reason });
      flash(request, { kind: 'ok', text: r.outcome === 'duplicate' ? 'Already discarded.' : 'Discarded.' });
      return reply.code(303).header('location', `/ui/dead-letters/${id}`).send();
    });
  });
}

/** The page an action form was on: its saga or dead letter. */
function backTo(request: FastifyRequest): string | undefined {
  const m = /^\/ui\/(sagas|dead-letters)\/([0-9a-fA-F-]{1,36})\//.exec(request.url);
  return m ? `/ui/${m[1]}/${m[2]!.toLowerCase()}` : undefined;
}
