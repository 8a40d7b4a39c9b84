/**
 * The admin HTTP API against a real Postgres and the real worker (memory transport, order example):
 * authentication (401 / 403, no tokens configured, failed attempts limited per address), request
 * ids (a malformed one replaced), readiness (/healthz alive, /readyz and the API 503 until the
 * database answers with a current schema), validation and not-found answers,
 * keyset pagination over 120 sagas, replay (accepted, refused, dry run, NEEDS_FORCE, bulk, two at
 * once), cancel, dead-letter redrive and discard, and the audit row of every operator action.
 * Requests go through `fastify.inject()`; one test listens on a real port and uses fetch.
 *
 * Two sagaflow schemas: `main` runs the full worker (sagas complete, or fail during a payment
 * outage); `stalled` runs only the orchestrator, so its sagas stay `running` at their first step.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../../src/client.js';
import type { AdminToken } from '../../src/config.js';
import { buildAdminServer } from '../../src/http/server.js';
import { silentLogger } from '../../src/log.js';
import type { SagaStatus } from '../../src/saga/state.js';
import { SagaStore } from '../../src/saga/store.js';
import { MemoryTransport } from '../../src/transport/memory.js';
import { DEAD_LETTER_TOPIC, H } from '../../src/transport/contract.js';
import { createWorker, type Worker } from '../../src/worker/worker.js';
import { migrateExample, orderParticipants, orderSaga, PlaceOrder } from '../../examples/order/index.js';
import { makeOrders, publishOrders } from '../../examples/order/run.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { createDb } from '../../src/db/db.js';
import { migrate } from '../../src/db/migrate.js';
import { closedPort } from '../helpers/ports.js';
import { createTestDb, uniqueName, type TestDb } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

const ADMIN: AdminToken = { name: 'ops-alice', token: 'adm-4f1c9e0b7d2a6c35e8', role: 'admin' };
const READER: AdminToken = { name: 'viewer-bob', token: 'rd-9a8b7c6d5e4f3a2b1c', role: 'read' };
const TOKENS = [ADMIN, READER];
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Env {
  t: TestDb;
  exampleSchema: string;
  transport: MemoryTransport;
  worker: Worker;
  app: FastifyInstance;
  sagas: SagaStore;
}

const logs = captureLogger('info');
let main: Env;
let stalled: Env;

async function startEnv(prefix: string, role: 'all' | 'orchestrator'): Promise<Env> {
  const t = await createTestDb({ prefix, pool: 12 });
  const exampleSchema = uniqueName(`${prefix}_ex`);
  if (role === 'all') await migrateExample(t.db, exampleSchema, 100);
  const transport = new MemoryTransport({ retryDelayFactor: 0 });
  const worker = createWorker({
    db: t.db,
    transport,
    module: { sagas: [orderSaga], participants: orderParticipants(exampleSchema) },
    logger: silentLogger(),
    options: { schema: t.schema, role, relay: { fallbackPollMs: 1000 } },
  });
  await worker.start();
  const app = buildAdminServer({ db: t.db, schema: t.schema, sagas: [orderSaga], tokens: TOKENS, logger: logs.logger, rateLimit: false });
  await app.ready();
  return { t, exampleSchema, transport, worker, app, sagas: new SagaStore(t.schema) };
}

async function stopEnv(e: Env | undefined): Promise<void> {
  if (!e) return;
  await e.app.close();
  await e.worker.stop();
  await e.transport.close();
  await e.t.db.query(`DROP SCHEMA IF EXISTS "${e.exampleSchema}" CASCADE`);
  await e.t.drop();
}

beforeAll(async () => {
  [main, stalled] = await Promise.all([startEnv('sf_http', 'all'), startEnv('sf_http_st', 'orchestrator')]);
});

afterAll(async () => {
  await stopEnv(stalled);
  await stopEnv(main);
});

interface Res {
  status: number;
  body: any;
  headers: LightMyRequestResponse['headers'];
}

async function call(
  app: FastifyInstance,
  method: 'GET' | 'POST',
  url: string,
  opts: { token?: AdminToken | string; body?: unknown; requestId?: string; headers?: Record<string, string> } = {},
): Promise<Res> {
  const token = typeof opts.token === 'string' ? opts.token : opts.token?.token;
  const res = await app.inject({
    method,
    url,
    headers: {
      ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
      ...(opts.requestId !== undefined ? { 'x-request-id': opts.requestId } : {}),
      ...opts.headers,
    },
    ...(opts.body !== undefined ? { payload: opts.body as string | object } : {}),
  });
  let body: unknown;
  try {
    body = res.json();
  } catch {
    body = res.body;
  }
  return { status: res.statusCode, body, headers: res.headers };
}

/** GET with a token (ADMIN unless given; null: no Authorization header). */
const get = (app: FastifyInstance, url: string, token: AdminToken | null = ADMIN, requestId?: string) =>
  call(app, 'GET', url, { ...(token ? { token } : {}), ...(requestId ? { requestId } : {}) });
const post = (app: FastifyInstance, url: string, body: unknown, token: AdminToken = ADMIN, requestId?: string) =>
  call(app, 'POST', url, { token, body, ...(requestId ? { requestId } : {}) });

interface AuditRow {
  id: string;
  actor: string;
  action: string;
  target_id: string;
  reason: string | null;
  request_id: string | null;
  outcome: string;
  detail: any;
}

async function auditRows(e: Env, targetId: string): Promise<AuditRow[]> {
  const { rows } = await e.t.db.query<AuditRow>(
    `SELECT id::text, actor, action, target_id, reason, request_id, outcome, detail FROM "${e.t.schema}".audit_log WHERE target_id = $1 ORDER BY id`,
    [targetId],
  );
  return rows;
}

async function sagaRow(e: Env, id: string) {
  const s = await e.sagas.get(e.t.db, id);
  if (!s) throw new Error(`saga ${id} missing`);
  return s;
}

async function waitStatus(e: Env, ids: readonly string[], statuses: readonly SagaStatus[], timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `${ids.length} saga(s) to be ${statuses.join('/')}`,
    async () => (await e.t.db.query<{ status: SagaStatus }>(`SELECT status FROM "${e.t.schema}".sagas WHERE id = ANY($1::uuid[])`, [ids])).rows,
    (rows) => rows.length === ids.length && rows.every((r) => statuses.includes(r.status)),
    { timeoutMs },
  );
}

async function placeOrders(e: Env, n: number): Promise<string[]> {
  return publishOrders(e.transport.publisher, makeOrders(n, { failEvery: 0, skus: 100 }), { schema: e.t.schema });
}

async function setPaymentOutage(e: Env, down: boolean): Promise<void> {
  await e.t.db.query(
    `INSERT INTO "${e.exampleSchema}".settings (key, value) VALUES ('payment_outage', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    [JSON.stringify(down)],
  );
}

/** Orders that fail at the payment step (outage), leaving `failed` sagas to replay. */
async function failedSagas(n: number): Promise<string[]> {
  await setPaymentOutage(main, true);
  try {
    const ids = await placeOrders(main, n);
    await waitStatus(main, ids, ['failed']);
    return ids;
  } finally {
    await setPaymentOutage(main, false);
  }
}

describe('authentication', () => {
  it('GET /healthz answers without a token', async () => {
    const r = await get(main.app, '/healthz', null);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ ok: true });
    expect(r.headers['x-request-id']).toMatch(UUID_RE);
  });

  it('401 without a token, with a wrong token and with a non-bearer scheme', async () => {
    const none = await get(main.app, '/v1/sagas', null);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="sagaflow-admin"');
    expect(none.body).toEqual({ error: { code: 'UNAUTHORIZED', message: expect.stringContaining('missing bearer token') }, requestId: none.headers['x-request-id'] });

    const wrong = await call(main.app, 'GET', '/v1/sagas', { token: `${ADMIN.token}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(wrong.body.error.code).toBe('UNAUTHORIZED');

    const basic = await call(main.app, 'GET', '/v1/sagas', { headers: { authorization: `Basic ${Buffer.from(`x:${ADMIN.token}`).toString('base64')}` } });
    expect(basic.status).toBe(401);

    // Authentication comes first: an anonymous mutating request with a bad body is still a 401.
    const anonPost = await call(main.app, 'POST', `/v1/sagas/${randomUUID()}/replay`, { body: { bogus: true } });
    expect(anonPost.status).toBe(401);
  });

  it('with no tokens configured every /v1 route answers 401 and the server says so at start', async () => {
    const cap = captureLogger('info');
    const open = buildAdminServer({ db: main.t.db, schema: main.t.schema, sagas: [orderSaga], tokens: [], logger: cap.logger });
    try {
      expect(cap.count(/no tokens configured/)).toBe(1);
      for (const [method, url] of [
        ['GET', '/v1/sagas'],
        ['GET', '/v1/dead-letters'],
        ['GET', '/v1/audit'],
        ['POST', `/v1/sagas/${randomUUID()}/replay`],
      ] as const) {
        const r = await call(open, method, url, { token: ADMIN, ...(method === 'POST' ? { body: {} } : {}) });
        expect(r.status, `${method} ${url}`).toBe(401);
        expect(r.body.error.message).toContain('no admin tokens are configured');
      }
      expect((await get(open, '/healthz', null)).status).toBe(200);
    } finally {
      await open.close();
    }
  });

  it('a read-only token reads but gets 403 on replay, bulk replay, cancel, redrive and discard (and the attempt is audited)', async () => {
    expect((await get(main.app, '/v1/sagas?limit=1', READER)).status).toBe(200);
    expect((await get(main.app, '/v1/dead-letters?limit=1', READER)).status).toBe(200);
    expect((await get(main.app, '/v1/audit?limit=1', READER)).status).toBe(200);

    const sagaId = randomUUID();
    for (const [url, body] of [
      [`/v1/sagas/${sagaId}/replay`, {}],
      ['/v1/sagas/replay', { status: 'failed' }],
      [`/v1/sagas/${sagaId}/cancel`, { reason: 'test' }],
      ['/v1/dead-letters/1/redrive', {}],
      ['/v1/dead-letters/1/discard', { reason: 'test' }],
    ] as const) {
      const r = await post(main.app, url, body, READER);
      expect(r.status, url).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
      expect(r.headers['www-authenticate']).toContain('insufficient_scope');
    }
    const rows = await auditRows(main, sagaId);
    expect(rows.map((r) => [r.actor, r.action, r.outcome, r.detail.code])).toEqual([
      ['viewer-bob', 'replay', 'refused', 'FORBIDDEN'],
      ['viewer-bob', 'cancel', 'refused', 'FORBIDDEN'],
    ]);
  });

  it('a per-token rate limit answers 429 with Retry-After', async () => {
    const limited = buildAdminServer({
      db: main.t.db,
      schema: main.t.schema,
      sagas: [orderSaga],
      tokens: TOKENS,
      logger: silentLogger(),
      rateLimit: { burst: 2, perSecond: 0.01 },
    });
    try {
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await get(limited, '/v1/audit?limit=1')).status);
      expect(statuses).toEqual([200, 200, 429]);
      const r = await get(limited, '/v1/audit?limit=1');
      expect(r.body.error.code).toBe('RATE_LIMITED');
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
      // Buckets are per token: the other token is not affected.
      expect((await get(limited, '/v1/audit?limit=1', READER)).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('request ids', () => {
  it('an incoming x-request-id is echoed in the header and in error bodies; otherwise one is generated', async () => {
    const mine = 'trace-2026.11_26-abc';
    const ok = await get(main.app, '/v1/sagas?limit=1', ADMIN, mine);
    expect(ok.headers['x-request-id']).toBe(mine);
    const missing = await get(main.app, `/v1/sagas/${randomUUID()}`, ADMIN, mine);
    expect(missing.status).toBe(404);
    expect(missing.headers['x-request-id']).toBe(mine);
    expect(missing.body.requestId).toBe(mine);
    const generated = await get(main.app, '/v1/sagas?limit=1');
    expect(generated.headers['x-request-id']).toMatch(UUID_RE);
  });

  it('a malformed x-request-id is replaced by a generated id, and the answer and the log say so', async () => {
    const cap = captureLogger('info');
    const app = buildAdminServer({ db: main.t.db, schema: main.t.schema, sagas: [orderSaga], tokens: TOKENS, logger: cap.logger, rateLimit: false });
    try {
      for (const bad of ['has space', 'a'.repeat(129), 'semi;colon']) {
        const r = await get(app, '/v1/sagas?limit=1', ADMIN, bad);
        expect(r.status, bad).toBe(200);
        expect(r.headers['x-request-id']).toMatch(UUID_RE);
        expect(r.headers['x-request-id-replaced']).toContain('replaced by a generated one');
      }
      const missing = await get(app, `/v1/sagas/${randomUUID()}`, ADMIN, 'bad id');
      expect(missing.status).toBe(404);
      expect(missing.body.requestId).toBe(missing.headers['x-request-id']);
      expect(missing.body.requestId).toMatch(UUID_RE);
      // A valid id is not marked.
      expect((await get(app, '/v1/sagas?limit=1', ADMIN, 'ok-id')).headers['x-request-id-replaced']).toBeUndefined();
      const lines = cap.lines.filter((l) => l.msg === 'malformed x-request-id replaced by a generated one');
      expect(lines).toHaveLength(4);
      // The value sent (anything a client put there) is not logged.
      expect(JSON.stringify(cap.lines)).not.toContain('semi;colon');
    } finally {
      await app.close();
    }
  });
});

describe('failed authentication', () => {
  it('300 wrong-token requests from one address: 401 for the first few, then 429 with Retry-After, two log lines in all; other addresses unaffected', async () => {
    const cap = captureLogger('info');
    const app = buildAdminServer({
      db: main.t.db,
      schema: main.t.schema,
      sagas: [orderSaga],
      tokens: TOKENS,
      logger: cap.logger,
      rateLimit: false,
      authFailures: { burst: 5, perSecond: 0.01, maxAddresses: 100, summaryEveryMs: 60_000 },
    });
    const from = (remoteAddress: string, token: string | null) =>
      app.inject({ method: 'GET', url: '/v1/audit?limit=1', remoteAddress, headers: token === null ? {} : { authorization: `Bearer ${token}` } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 300; i++) statuses.push((await from('10.0.0.7', i % 3 === 0 ? null : `wrong-${i}-token-guess`)).statusCode);
      expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
      expect(new Set(statuses.slice(5))).toEqual(new Set([429]));
      const limited = await from('10.0.0.7', `${ADMIN.token}x`);
      expect(limited.statusCode).toBe(429);
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(60);
      expect(limited.json().error.code).toBe('RATE_LIMITED');
      // Blocked before the token is looked at: even the right token waits (guessing gets no faster).
      expect((await from('10.0.0.7', ADMIN.token)).statusCode).toBe(429);
      // Another address still authenticates.
      expect((await from('10.0.0.8', ADMIN.token)).statusCode).toBe(200);

      const about = cap.lines.filter((l) => l.ip === '10.0.0.7');
      expect(about.map((l) => l.msg)).toEqual(['admin authentication failed', 'too many failed admin authentications from 10.0.0.7: answering 429 to it for 100 s']);
      expect(about[1]).toMatchObject({ level: 40, failedSinceLastLine: 4 });
      // No per-request line (Fastify's or ours) for the refused requests.
      expect(cap.lines.filter((l) => l.msg === 'request completed' || l.msg === 'admin request refused' || l.msg === 'incoming request')).toHaveLength(1);
    } finally {
      await app.close();
    }
  });
});

describe('readiness', () => {
  it('/healthz answers alive, /readyz and the API answer 503 with the reason until the schema is migrated, then 200', async () => {
    const t = await createTestDb({ prefix: 'sf_http_rd', migrate: false });
    const cap = captureLogger('info');
    const app = buildAdminServer({
      db: t.db,
      schema: t.schema,
      sagas: [orderSaga],
      tokens: TOKENS,
      logger: cap.logger,
      readiness: { retryMs: 50, maxRetryMs: 200, cacheMs: 0 },
    });
    try {
      await app.ready();
      expect((await get(app, '/healthz', null)).body).toEqual({ ok: true });
      const notReady = await get(app, '/readyz', null);
      expect(notReady.status).toBe(503);
      expect(notReady.body).toMatchObject({ ready: false, error: { code: 'UNAVAILABLE', message: expect.stringMatching(/^not ready: schema \S+ is at migration 0 of \d+; run `sagaflow migrate` first$/) } });
      const api = await get(app, '/v1/sagas?limit=1');
      expect(api.status).toBe(503);
      expect(api.headers['retry-after']).toBe('5');
      expect(api.body.error.message).toBe(notReady.body.error.message);
      // Authentication still comes first.
      expect((await get(app, '/v1/sagas?limit=1', null)).status).toBe(401);

      await migrate(t.db, t.schema);
      // The background check notices by itself (no probe needed), then everything answers.
      await waitFor('the API to become ready', () => get(app, '/v1/sagas?limit=1'), (r) => r.status === 200, { timeoutMs: 10_000 });
      expect((await get(app, '/readyz', null)).body).toEqual({ ready: true });
      // One line per distinct problem, not one per check (a check during the migration may see an
      // intermediate version: that is a new problem and a new line).
      const notReadyLines = cap.lines.filter((l) => /^admin API not ready/.test(l.msg)).map((l) => String(l.err));
      expect(notReadyLines.length).toBeGreaterThanOrEqual(1);
      expect(notReadyLines.every((e, i) => i === 0 || e !== notReadyLines[i - 1]), notReadyLines.join('\n')).toBe(true);
      expect(cap.count(/^admin API ready/)).toBe(1);
    } finally {
      await app.close();
      await t.drop();
    }
  });

  it('with the database down: /healthz 200, /readyz and the API 503 "the database is unavailable", the address only in the log', async () => {
    const db = createDb({ connectionString: `postgres://postgres:s3cret@127.0.0.1:${await closedPort()}/postgres`, max: 1, connectionTimeoutMs: 2_000, urlSetting: 'DATABASE_URL' });
    const cap = captureLogger('info');
    const app = buildAdminServer({ db, schema: 'sf_http_down', sagas: [orderSaga], tokens: TOKENS, logger: cap.logger, readiness: { cacheMs: 0 } });
    try {
      expect((await get(app, '/healthz', null)).status).toBe(200);
      const r = await get(app, '/readyz', null);
      expect(r.status).toBe(503);
      expect(r.body.error.message).toBe('not ready: the database is unavailable');
      expect((await get(app, '/v1/dead-letters?limit=1')).status).toBe(503);
      const warn = cap.lines.find((l) => /^admin API not ready/.test(l.msg));
      expect(String(warn?.err)).toMatch(/Postgres.*127\.0\.0\.1:\d+.*DATABASE_URL/);
      expect(JSON.stringify(cap.lines)).not.toContain('s3cret');
    } finally {
      await app.close();
      await db.close();
    }
  });
});

describe('validation and not found', () => {
  it('400 for malformed ids, queries and bodies; errors carry no stack', async () => {
    const badId = await get(main.app, '/v1/sagas/not-a-uuid');
    expect(badId.status).toBe(400);
    expect(badId.body.error.code).toBe('BAD_REQUEST');
    expect(badId.body.error.issues[0].path).toBe('id');
    expect(JSON.stringify(badId.body)).not.toMatch(/at .*\.ts:\d+/);

    expect((await get(main.app, '/v1/dead-letters/abc')).status).toBe(400);
    expect((await post(main.app, '/v1/sagas/12345/replay', {})).status).toBe(400);
    for (const q of ['limit=0', 'limit=501', 'limit=ten', 'status=bogus', 'cursor=!!!', `cursor=${Buffer.from('{"x":1}').toString('base64url')}`, 'sinse=1h', 'since=yesterday']) {
      const r = await get(main.app, `/v1/sagas?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error.code).toBe('BAD_REQUEST');
    }
    expect((await get(main.app, '/v1/dead-letters?cursor=abc')).status).toBe(400);

    const id = randomUUID();
    const typo = await post(main.app, `/v1/sagas/${id}/replay`, { dry_run: true });
    expect(typo.status).toBe(400);
    expect(typo.body.error.message).toContain('dry_run');
    expect((await post(main.app, `/v1/sagas/${id}/replay`, { force: 'yes' })).status).toBe(400);
    expect((await post(main.app, `/v1/sagas/${id}/replay`, { fromStep: 'noSuchStep' })).status).toBe(400);
    expect((await post(main.app, '/v1/sagas/replay', { status: 'running' })).status).toBe(400);

    const badJson = await call(main.app, 'POST', `/v1/sagas/${id}/replay`, { token: ADMIN, body: '{"force": tru', headers: { 'content-type': 'application/json' } });
    expect(badJson.status).toBe(400);
    expect(badJson.body.error.code).toBe('BAD_REQUEST');
    const text = await call(main.app, 'POST', `/v1/sagas/${id}/replay`, { token: ADMIN, body: 'force', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
    const huge = await post(main.app, `/v1/sagas/${id}/cancel`, { reason: 'x'.repeat(70 * 1024) });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    // None of these reached the operations: no audit rows for the saga.
    expect(await auditRows(main, id)).toEqual([]);
  });

  it('404 for an unknown saga and dead letter; a replay of an unknown saga is audited as refused', async () => {
    const id = randomUUID();
    const show = await get(main.app, `/v1/sagas/${id}`);
    expect(show.status).toBe(404);
    expect(show.body.error).toEqual({ code: 'NOT_FOUND', message: `no saga ${id}` });

    const replay = await post(main.app, `/v1/sagas/${id}/replay`, { reason: 'try' });
    expect(replay.status).toBe(404);
    expect((await post(main.app, `/v1/sagas/${id}/cancel`, { reason: 'try' })).status).toBe(404);
    expect((await auditRows(main, id)).map((r) => [r.action, r.outcome, r.actor])).toEqual([
      ['replay', 'refused', 'ops-alice'],
      ['cancel', 'refused', 'ops-alice'],
    ]);

    expect((await get(main.app, '/v1/dead-letters/987654321')).status).toBe(404);
    expect((await post(main.app, '/v1/dead-letters/987654321/redrive', {})).status).toBe(404);
    expect((await post(main.app, '/v1/dead-letters/987654321/discard', { reason: 'x' })).status).toBe(404);
    expect((await get(main.app, '/v1/nothing-here')).status).toBe(404);
  });
});

describe('running sagas: pagination, show, replay refused, cancel', () => {
  let ids: string[];

  beforeAll(async () => {
    ids = await placeOrders(stalled, 120);
    await waitStatus(stalled, ids, ['running']);
  });

  it('pages over 120 sagas with limit 50: 3 pages, none missing, no duplicates', async () => {
    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const r: Res = await get(stalled.app, `/v1/sagas?limit=50${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      pages.push(r.body.items.map((s: { id: string }) => s.id));
      cursor = r.body.nextCursor;
    } while (cursor && pages.length < 10);
    expect(pages.map((p) => p.length)).toEqual([50, 50, 20]);
    const seen = pages.flat();
    expect(new Set(seen).size).toBe(120);
    expect(new Set(seen)).toEqual(new Set(ids));

    // The same walk with a filter (status and type), and newest first throughout.
    const filtered: string[] = [];
    let createdAt: string[] = [];
    cursor = null;
    do {
      const r: Res = await get(stalled.app, `/v1/sagas?status=running&type=order&limit=50${cursor ? `&cursor=${cursor}` : ''}`, READER);
      filtered.push(...r.body.items.map((s: { id: string }) => s.id));
      createdAt = createdAt.concat(r.body.items.map((s: { createdAt: string }) => s.createdAt));
      cursor = r.body.nextCursor;
    } while (cursor);
    expect(filtered).toEqual(seen);
    expect([...createdAt].sort().reverse()).toEqual(createdAt);
    expect((await get(stalled.app, '/v1/sagas?status=failed')).body).toEqual({ items: [], nextCursor: null });
  });

  it('shows a saga with its step history', async () => {
    const r = await get(stalled.app, `/v1/sagas/${ids[0]!.toUpperCase()}`, READER);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: ids[0], type: 'order', status: 'running' });
    expect(r.body.steps).toEqual([expect.objectContaining({ seq: 1, step: 'reserveStock', kind: 'forward', status: 'running', commandType: 'ReserveStock' })]);
  });

  it('a replay of a running saga is 409 with a refused audit row, and changes nothing', async () => {
    const id = ids[1]!;
    const before = await sagaRow(stalled, id);
    const r = await post(stalled.app, `/v1/sagas/${id}/replay`, { reason: 'looks stuck' }, ADMIN, 'replay-running-1');
    expect(r.status).toBe(409);
    expect(r.body).toEqual({ error: { code: 'INVALID_STATE', message: expect.stringContaining('only a failed saga can be replayed') }, requestId: 'replay-running-1' });
    expect((await sagaRow(stalled, id)).version).toBe(before.version);
    expect(await auditRows(stalled, id)).toEqual([
      expect.objectContaining({ actor: 'ops-alice', action: 'replay', reason: 'looks stuck', request_id: 'replay-running-1', outcome: 'refused' }),
    ]);
  });

  it('cancel needs a reason (400), then stops the saga and starts compensation, audited', async () => {
    const id = ids[2]!;
    const noReason = await post(stalled.app, `/v1/sagas/${id}/cancel`, {});
    expect(noReason.status).toBe(400);
    expect(noReason.body.error.issues).toEqual([{ path: 'reason', message: 'required' }]);
    expect((await post(stalled.app, `/v1/sagas/${id}/cancel`, { reason: '   ' })).status).toBe(400);

    const r = await post(stalled.app, `/v1/sagas/${id}/cancel`, { reason: 'customer called to cancel' }, ADMIN, 'cancel-1');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ outcome: 'accepted', requestId: 'cancel-1', plan: { sagaId: id, from: 'running' } });
    expect(['compensating', 'compensated']).toContain(r.body.plan.to);
    const after = await sagaRow(stalled, id);
    expect(['compensating', 'compensated']).toContain(after.status);
    expect(after.reason).toBe('cancelled: customer called to cancel');
    const show = await get(stalled.app, `/v1/sagas/${id}`);
    expect(show.body.steps[0]).toMatchObject({ step: 'reserveStock', status: 'cancelled' });
    const audit = await auditRows(stalled, id);
    expect(audit).toEqual([
      expect.objectContaining({ actor: 'ops-alice', action: 'cancel', reason: 'customer called to cancel', request_id: 'cancel-1', outcome: 'accepted' }),
    ]);
    expect(r.body.auditId).toBe(audit[0]!.id);

    // The same request again is recognised; a new request is refused by the saga's state.
    const again = await post(stalled.app, `/v1/sagas/${id}/cancel`, { reason: 'customer called to cancel' }, ADMIN, 'cancel-1');
    expect(again.status).toBe(200);
    expect(again.body.outcome).toBe('duplicate');
    const other = await post(stalled.app, `/v1/sagas/${id}/cancel`, { reason: 'again' }, ADMIN, 'cancel-2');
    expect(other.status).toBe(409);
    expect((await auditRows(stalled, id)).map((a) => a.outcome)).toEqual(['accepted', 'duplicate', 'refused']);
  });
});

describe('replay of failed sagas', () => {
  let failed: string[];
  let completed: string[];

  beforeAll(async () => {
    failed = await failedSagas(6);
    completed = await placeOrders(main, 2);
    await waitStatus(main, completed, ['completed']);
  });

  it('replays a failed saga: 200 with the plan, an accepted audit row, and the saga resumes and completes', async () => {
    const id = failed[0]!;
    const before = await sagaRow(main, id);
    expect(before.status).toBe('failed');
    const r = await post(main.app, `/v1/sagas/${id}/replay`, { reason: 'payment gateway is back' }, ADMIN, 'replay-ok-1');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      outcome: 'accepted',
      requestId: 'replay-ok-1',
      plan: { sagaId: id, sagaType: 'order', from: 'failed', to: 'running', resumeAt: { step: 'chargePayment', phase: 'forward' } },
    });
    expect(r.body.plan.commands).toEqual([expect.objectContaining({ type: 'ChargePayment', topic: 'payment', step: 'chargePayment' })]);

    const audit = await auditRows(main, id);
    expect(audit).toEqual([
      expect.objectContaining({ id: r.body.auditId, actor: 'ops-alice', action: 'replay', reason: 'payment gateway is back', request_id: 'replay-ok-1', outcome: 'accepted' }),
    ]);
    expect(JSON.stringify(audit)).not.toContain(ADMIN.token);
    const after = await sagaRow(main, id);
    expect(after.version).toBeGreaterThan(before.version);
    expect(after.status).not.toBe('failed');
    await waitStatus(main, [id], ['completed']);

    // The audit trail is readable over the API too (read role).
    const listed = await get(main.app, `/v1/audit?target=${id}`, READER);
    expect(listed.body.items).toEqual([expect.objectContaining({ actor: 'ops-alice', action: 'replay', outcome: 'accepted', requestId: 'replay-ok-1' })]);
  });

  it('a replay of a completed saga is 409 with a refused audit row', async () => {
    const id = completed[0]!;
    const r = await post(main.app, `/v1/sagas/${id}/replay`, { reason: 'why not' });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('INVALID_STATE');
    expect(await auditRows(main, id)).toEqual([expect.objectContaining({ action: 'replay', outcome: 'refused', reason: 'why not', actor: 'ops-alice' })]);
    expect((await sagaRow(main, id)).status).toBe('completed');
  });

  it('a dry run returns the plan and changes nothing', async () => {
    const id = failed[1]!;
    const before = await sagaRow(main, id);
    // Not the outbox size: the worker deletes published rows in the background, so it moves anyway.
    const stepRows = async () =>
      (await main.t.db.query(`SELECT seq, status FROM "${main.t.schema}".saga_steps WHERE saga_id = $1 ORDER BY seq`, [id])).rows;
    const stepsBefore = await stepRows();
    const r = await post(main.app, `/v1/sagas/${id}/replay`, { dryRun: true, reason: 'what would happen' });
    expect(r.status).toBe(200);
    expect(r.body.outcome).toBe('dry-run');
    expect(r.body.plan).toMatchObject({ from: 'failed', to: 'running', resumeAt: { step: 'chargePayment' } });
    const after = await sagaRow(main, id);
    expect({ status: after.status, version: after.version, state: after.state }).toEqual({ status: 'failed', version: before.version, state: before.state });
    expect(await stepRows()).toEqual(stepsBefore);
    expect((await auditRows(main, id)).map((a) => a.outcome)).toEqual(['dry-run']);
  });

  it('re-running a step that succeeded needs force: 409 NEEDS_FORCE', async () => {
    const id = failed[1]!;
    const r = await post(main.app, `/v1/sagas/${id}/replay`, { fromStep: 'reserveStock' });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('NEEDS_FORCE');
    expect((await sagaRow(main, id)).status).toBe('failed');
  });

  it('two concurrent replays of one saga with different request ids: exactly one is accepted, the other is 409', async () => {
    const id = failed[2]!;
    const [a, b] = await Promise.all([
      post(main.app, `/v1/sagas/${id}/replay`, { reason: 'first' }, ADMIN, 'race-a'),
      post(main.app, `/v1/sagas/${id}/replay`, { reason: 'second' }, ADMIN, 'race-b'),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const winner = a.status === 200 ? a : b;
    expect(winner.body.outcome).toBe('accepted');
    const audit = await auditRows(main, id);
    expect(audit.map((x) => x.outcome).sort()).toEqual(['accepted', 'refused']);
    await waitStatus(main, [id], ['completed']);
  });

  it('two concurrent replays with the same request id: one accepted, the other a duplicate; the saga is replayed once', async () => {
    const id = failed[3]!;
    const [a, b] = await Promise.all([
      post(main.app, `/v1/sagas/${id}/replay`, { reason: 'retry' }, ADMIN, 'same-req-1'),
      post(main.app, `/v1/sagas/${id}/replay`, { reason: 'retry' }, ADMIN, 'same-req-1'),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([a.body.outcome, b.body.outcome].sort()).toEqual(['accepted', 'duplicate']);
    // A retry of the same POST later is still recognised, not refused.
    const later = await post(main.app, `/v1/sagas/${id}/replay`, { reason: 'retry' }, ADMIN, 'same-req-1');
    expect(later.status).toBe(200);
    expect(later.body.outcome).toBe('duplicate');
    const audit = await auditRows(main, id);
    expect(audit.filter((x) => x.outcome === 'accepted')).toHaveLength(1);
    expect(audit.filter((x) => x.outcome === 'duplicate')).toHaveLength(2);
    await waitStatus(main, [id], ['completed']);
    const replayed = await main.t.db.query(`SELECT 1 FROM "${main.t.schema}".saga_steps WHERE saga_id = $1 AND step_name = 'chargePayment' AND status = 'succeeded'`, [id]);
    expect(replayed.rows).toHaveLength(1);
  });

  it('bulk replay of failed sagas: a dry run plans, the real run replays each once', async () => {
    const since = (await main.t.db.query<{ now: Date }>('SELECT now()')).rows[0]!.now.toISOString();
    const mine = await failedSagas(3);
    const dry = await post(main.app, '/v1/sagas/replay', { status: 'failed', type: 'order', since, dryRun: true, reason: 'bulk check' });
    expect(dry.status).toBe(200);
    expect(dry.body.summary).toEqual({ total: 3, accepted: 0, dryRun: 3, duplicate: 0, refused: 0, error: 0 });
    expect(new Set(dry.body.results.map((r: { sagaId: string }) => r.sagaId))).toEqual(new Set(mine));
    await waitStatus(main, mine, ['failed']);

    const real = await post(main.app, '/v1/sagas/replay', { status: 'failed', since, reason: 'gateway back' }, ADMIN, 'bulk-1');
    expect(real.status).toBe(200);
    expect(real.body.summary).toMatchObject({ total: 3, accepted: 3 });
    await waitStatus(main, mine, ['completed']);
    for (const id of mine) {
      expect((await auditRows(main, id)).map((a) => [a.outcome, a.request_id])).toEqual([
        ['dry-run', expect.any(String)],
        ['accepted', 'bulk-1'],
      ]);
    }
  });
});

describe('dead letters', () => {
  const client = () => createClient({ schema: main.t.schema });

  /** A PlaceOrder that a consumer gave up on, handed to the worker's dead-letter recorder as a broker would. */
  async function deadLetter(): Promise<{ id: string; sagaId: string; messageId: string }> {
    const messageId = randomUUID();
    const sagaId = randomUUID();
    const [order] = makeOrders(1, { failEvery: 0, skus: 100 });
    const msg = client().build(PlaceOrder, order!, { messageId, sagaId });
    await main.transport.publisher.publish([
      {
        ...msg,
        topic: DEAD_LETTER_TOPIC,
        headers: {
          ...msg.headers,
          authorization: 'Bearer canary-dl-secret-123',
          [H.reason]: 'HANDLER_ERROR',
          [H.error]: 'inventory database timed out',
          [H.originalTopic]: msg.topic,
          [H.consumer]: orderSaga.consumer,
          [H.attempt]: '5',
        },
      },
    ]);
    const row = await waitFor(
      `dead letter ${messageId}`,
      async () => (await main.t.db.query<{ id: string }>(`SELECT id::text FROM "${main.t.schema}".dead_letters WHERE message_id = $1`, [messageId])).rows[0],
      (r) => r !== undefined,
    );
    return { id: row!.id, sagaId, messageId };
  }

  it('lists (paged, filtered) and shows dead letters with secrets redacted', async () => {
    const a = await deadLetter();
    const b = await deadLetter();
    const first = await get(main.app, `/v1/dead-letters?consumer=${orderSaga.consumer}&status=new&limit=1`, READER);
    expect(first.status).toBe(200);
    expect(first.body.items.map((d: { id: string }) => d.id)).toEqual([b.id]);
    expect(first.body.nextCursor).toBe(b.id);
    const second = await get(main.app, `/v1/dead-letters?consumer=${orderSaga.consumer}&status=new&limit=1&cursor=${first.body.nextCursor}`, READER);
    expect(second.body.items.map((d: { id: string }) => d.id)).toEqual([a.id]);

    const show = await get(main.app, `/v1/dead-letters/${a.id}`, READER);
    expect(show.status).toBe(200);
    expect(show.body).toMatchObject({ id: a.id, messageId: a.messageId, reasonCode: 'HANDLER_ERROR', status: 'new', bodyEncoding: 'utf8', topic: 'orders' });
    expect(show.body.headers.authorization).toBe('[redacted]');
    expect(JSON.stringify(show.body)).not.toContain('canary-dl-secret');
    expect(JSON.parse(show.body.body)).toMatchObject({ id: a.messageId, type: 'PlaceOrder' });
  });

  it('redrive: 200, status redriven, an audit row, and the message is processed (its saga completes)', async () => {
    const d = await deadLetter();
    const r = await post(main.app, `/v1/dead-letters/${d.id}/redrive`, { reason: 'inventory db is back' }, ADMIN, 'redrive-1');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ outcome: 'accepted', messageId: d.messageId, requestId: 'redrive-1' });
    const show = await get(main.app, `/v1/dead-letters/${d.id}`);
    expect(show.body).toMatchObject({ status: 'redriven', resolvedBy: 'ops-alice', resolutionNote: 'inventory db is back' });
    expect(await auditRows(main, d.id)).toEqual([
      expect.objectContaining({ id: r.body.auditId, actor: 'ops-alice', action: 'redrive', reason: 'inventory db is back', request_id: 'redrive-1', outcome: 'accepted' }),
    ]);
    await waitStatus(main, [d.sagaId], ['completed']);

    const retried = await post(main.app, `/v1/dead-letters/${d.id}/redrive`, { reason: 'inventory db is back' }, ADMIN, 'redrive-1');
    expect(retried.body.outcome).toBe('duplicate');
    const again = await post(main.app, `/v1/dead-letters/${d.id}/redrive`, {}, ADMIN, 'redrive-2');
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('INVALID_STATE');
  });

  it('discard needs a reason; then status discarded and an audit row', async () => {
    const d = await deadLetter();
    expect((await post(main.app, `/v1/dead-letters/${d.id}/discard`, {})).status).toBe(400);
    const r = await post(main.app, `/v1/dead-letters/${d.id}/discard`, { reason: 'test order, not real' }, ADMIN, 'discard-1');
    expect(r.status).toBe(200);
    expect(r.body.outcome).toBe('accepted');
    const show = await get(main.app, `/v1/dead-letters/${d.id}`);
    expect(show.body).toMatchObject({ status: 'discarded', resolvedBy: 'ops-alice', resolutionNote: 'test order, not real' });
    expect(await auditRows(main, d.id)).toEqual([
      expect.objectContaining({ actor: 'ops-alice', action: 'discard', reason: 'test order, not real', request_id: 'discard-1', outcome: 'accepted' }),
    ]);
    expect((await get(main.app, `/v1/dead-letters?status=discarded`)).body.items.map((x: { id: string }) => x.id)).toContain(d.id);
    // The saga of a discarded message was never started.
    expect(await main.sagas.get(main.t.db, d.sagaId)).toBeNull();
  });
});

describe('over a real socket', () => {
  it('listens on port 0 and answers fetch with the request id', async () => {
    const app = buildAdminServer({ db: main.t.db, schema: main.t.schema, sagas: [orderSaga], tokens: TOKENS, logger: logs.logger });
    try {
      const url = await app.listen({ host: '127.0.0.1', port: 0 });
      const ok = await fetch(`${url}/v1/sagas?limit=2`, { headers: { authorization: `Bearer ${READER.token}`, 'x-request-id': 'fetch-1' } });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('x-request-id')).toBe('fetch-1');
      expect(ok.headers.get('content-type')).toContain('application/json');
      const body = (await ok.json()) as { items: unknown[]; nextCursor: string | null };
      expect(body.items).toHaveLength(2);

      const denied = await fetch(`${url}/v1/sagas/${randomUUID()}/cancel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${READER.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'x' }),
      });
      expect(denied.status).toBe(403);
      expect(((await denied.json()) as { requestId: string }).requestId).toBe(denied.headers.get('x-request-id'));
    } finally {
      await app.close();
    }
  });
});

describe('secrets', () => {
  it('no token value ever reaches the logs', () => {
    expect(logs.lines.length).toBeGreaterThan(0);
    const all = JSON.stringify(logs.lines);
    for (const t of TOKENS) expect(all).not.toContain(t.token);
    expect(all).not.toContain('canary-dl-secret');
  });
});

describe('circuit breakers', () => {
  it('lists breakers; open and close need the admin role and a reason and are audited; a reader is refused (audited)', async () => {
    const noReason = await call(main.app, 'POST', '/v1/circuits/payment/open', { token: ADMIN, body: {} });
    expect(noReason.status).toBe(400);
    expect((await call(main.app, 'POST', '/v1/circuits/bad%20name/open', { token: ADMIN, body: { reason: 'x' } })).status).toBe(400);
    const denied = await call(main.app, 'POST', '/v1/circuits/payment/open', { token: READER, body: { reason: 'x' } });
    expect(denied.status).toBe(403);
    const opened = await call(main.app, 'POST', '/v1/circuits/payment/open', { token: ADMIN, body: { reason: 'gateway maintenance' } });
    expect(opened.status).toBe(200);
    expect(opened.body).toMatchObject({ name: 'payment', from: null, to: 'open' });
    const list = await call(main.app, 'GET', '/v1/circuits', { token: READER });
    expect(list.status).toBe(200);
    expect(list.body.items).toEqual([expect.objectContaining({ name: 'payment', state: 'open', forced: 'open', waiting: 0 })]);
    const closed = await call(main.app, 'POST', '/v1/circuits/payment/close', { token: ADMIN, body: { reason: 'gateway back' } });
    expect(closed.body).toMatchObject({ name: 'payment', from: 'open', to: 'closed', released: 0 });
    expect((await call(main.app, 'POST', '/v1/circuits/nope/close', { token: ADMIN, body: { reason: 'x' } })).status).toBe(404);
    const audit = await call(main.app, 'GET', '/v1/audit?target=payment', { token: READER });
    expect(audit.body.items.map((r: { actor: string; action: string; outcome: string }) => `${r.actor} ${r.action} ${r.outcome}`).reverse()).toEqual([
      'viewer-bob circuit-open refused',
      'ops-alice circuit-open accepted',
      'ops-alice circuit-close accepted',
    ]);
  });
});
