/**
 * The dashboard's security and rendering through `fastify.inject()`, against a real Postgres and
 * the real worker (memory transport, order example): the CSP and other headers, the session cookie's
 * flags (and that it is not the token), login refusals, CSRF refusals (no token, wrong token,
 * foreign Origin), a read session seeing no action form and its forged POST answered 403 and
 * audited, escaping of hostile text, redaction of secret headers, the hex view of a binary body,
 * no token or database URL anywhere in a page, the replay dry-run-then-confirm flow, and logout.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateExample, orderParticipants, orderSaga } from '../../examples/order/index.js';
import { makeOrders, publishOrders } from '../../examples/order/run.js';
import type { AdminToken } from '../../src/config.js';
import { buildAdminServer } from '../../src/http/server.js';
import { html, raw } from '../../src/http/ui/html.js';
import { silentLogger } from '../../src/log.js';
import { MemoryTransport } from '../../src/transport/memory.js';
import { createWorker, type Worker } from '../../src/worker/worker.js';
import { createTestDb, databaseUrl, uniqueName, type TestDb } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

const ADMIN: AdminToken = { name: 'ops-alice', token: 'adm-ui-4f1c9e0b7d2a6c35e8', role: 'admin' };
const READER: AdminToken = { name: 'viewer-bob', token: 'rd-ui-9a8b7c6d5e4f3a2b1c', role: 'read' };
const ORIGIN = 'http://dash.test';
const HOST = 'dash.test';

let t: TestDb;
let exampleSchema: string;
let transport: MemoryTransport;
let worker: Worker;
let app: FastifyInstance;
let failedIds: string[];
let deadId: string;
let binaryId: string;

async function setPaymentOutage(down: boolean): Promise<void> {
  await t.db.query(
    `INSERT INTO "${exampleSchema}".settings (key, value) VALUES ('payment_outage', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
    [JSON.stringify(down)],
  );
}

async function statuses(ids: readonly string[]): Promise<string[]> {
  return (await t.db.query<{ status: string }>(`SELECT status FROM "${t.schema}".sagas WHERE id = ANY($1::uuid[])`, [ids])).rows.map((r) => r.status);
}

beforeAll(async () => {
  t = await createTestDb({ prefix: 'sf_ui', pool: 8 });
  exampleSchema = uniqueName('sf_ui_ex');
  await migrateExample(t.db, exampleSchema, 100);
  transport = new MemoryTransport({ retryDelayFactor: 0 });
  worker = createWorker({
    db: t.db,
    transport,
    module: { sagas: [orderSaga], participants: orderParticipants(exampleSchema) },
    logger: silentLogger(),
    options: { schema: t.schema, role: 'all', relay: { fallbackPollMs: 1000 } },
  });
  await worker.start();
  app = buildAdminServer({ db: t.db, schema: t.schema, sagas: [orderSaga], tokens: [ADMIN, READER], logger: silentLogger(), rateLimit: false, authFailures: false });
  await app.ready();

  await setPaymentOutage(true);
  failedIds = await publishOrders(transport.publisher, makeOrders(2, { failEvery: 0, skus: 100 }), { schema: t.schema });
  await waitFor('two failed sagas', () => statuses(failedIds), (s) => s.length === 2 && s.every((x) => x === 'failed'), { timeoutMs: 60_000 });
  await setPaymentOutage(false);

  const dl = `"${t.schema}".dead_letters`;
  const hostile = '<script>alert(1)</script>';
  deadId = (
    await t.db.query<{ id: string }>(
      `INSERT INTO ${dl} (message_id, consumer, topic, msg_type, reason_code, error, headers, body)
       VALUES ('m-1', 'participant.x', 'orders', $1, 'DECODE_FAILED', $1, $2, $3) RETURNING id::text`,
      [hostile, JSON.stringify({ authorization: 'Bearer leaked-secret-value', 'x-note': hostile }), Buffer.from(JSON.stringify({ password: 'hunter2', note: hostile }))],
    )
  ).rows[0]!.id;
  binaryId = (
    await t.db.query<{ id: string }>(
      `INSERT INTO ${dl} (message_id, consumer, topic, msg_type, reason_code, headers, body) VALUES ('m-2', 'participant.x', 'orders', 'Bin', 'DECODE_FAILED', '{}', $1) RETURNING id::text`,
      [Buffer.from([0xff, 0x00, 0x41, 0x42, 0xfe])],
    )
  ).rows[0]!.id;
}, 120_000);

afterAll(async () => {
  await app?.close();
  await worker?.stop();
  await transport?.close();
  await t?.db.query(`DROP SCHEMA IF EXISTS "${exampleSchema}" CASCADE`);
  await t?.drop();
});

interface Browser {
  cookie: string;
  csrf: string;
}

async function req(method: 'GET' | 'POST', url: string, opts: { cookie?: string; form?: Record<string, string>; origin?: string | null } = {}): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { host: HOST };
  if (opts.cookie) headers.cookie = opts.cookie;
  if (method === 'POST' && opts.origin !== null) headers.origin = opts.origin ?? ORIGIN;
  if (opts.form) headers['content-type'] = 'application/x-www-form-urlencoded';
  return app.inject({ method, url, headers, ...(opts.form ? { payload: new URLSearchParams(opts.form).toString() } : {}) });
}

async function login(token: AdminToken): Promise<Browser> {
  const r = await req('POST', '/ui/login', { form: { token: token.token } });
  expect(r.statusCode).toBe(303);
  const setCookie = String(r.headers['set-cookie']);
  const cookie = setCookie.split(';')[0]!;
  const home = await req('GET', '/ui', { cookie });
  expect(home.statusCode).toBe(200);
  const csrf = /name="_csrf" value="([^"]+)"/.exec(home.body)?.[1];
  expect(csrf).toBeTruthy();
  return { cookie, csrf: csrf! };
}

function expectNoSecrets(body: string): void {
  for (const s of [ADMIN.token, READER.token, databaseUrl(), 'postgres://', 'postgresql://', 'leaked-secret-value', 'hunter2']) expect(body).not.toContain(s);
}

describe('html template', () => {
  it('escapes interpolated text and keeps markup it built', () => {
    const out = html`<p title="${'"x" & <y>'}">${'<b>'}${raw('<i>ok</i>')}${[1, '<', null, false]}</p>`;
    expect(out.value).toBe('<p title="&quot;x&quot; &amp; &lt;y&gt;">&lt;b&gt;<i>ok</i>1&lt;</p>');
  });
});

describe('headers and sign-in', () => {
  it('every /ui answer has a strict CSP, no-store, nosniff and no framing; pages have no inline script', async () => {
    for (const url of ['/ui/login', '/ui/assets/app.js', '/ui/assets/app.css', '/ui']) {
      const r = await req('GET', url);
      const csp = String(r.headers['content-security-policy']);
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('unsafe-eval');
      expect(r.headers['cache-control']).toBe('no-store');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['x-frame-options']).toBe('DENY');
    }
    const a = await login(ADMIN);
    for (const url of ['/ui', '/ui/sagas', `/ui/sagas/${failedIds[0]}`, '/ui/dead-letters', `/ui/dead-letters/${deadId}`, '/ui/login']) {
      const r = await req('GET', url, { cookie: a.cookie });
      expect([200, 303]).toContain(r.statusCode);
      // Every <script> has a src; no event-handler attributes.
      expect(r.body).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/i);
      expect(r.body).not.toMatch(/\son[a-z]+\s*=/i);
      expect(r.body).not.toMatch(/\sstyle\s*=/i);
    }
  });

  it('without a session a page redirects to the login, an action is 401', async () => {
    const r = await req('GET', '/ui/sagas');
    expect(r.statusCode).toBe(303);
    expect(r.headers.location).toBe('/ui/login');
    const p = await req('POST', `/ui/sagas/${failedIds[0]}/replay`, { form: { reason: 'x' } });
    expect(p.statusCode).toBe(401);
  });

  it('a wrong token is refused, a foreign Origin cannot sign in, and the cookie is a session id with httpOnly and SameSite=Strict', async () => {
    const wrong = await req('POST', '/ui/login', { form: { token: `${ADMIN.token}x` } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['set-cookie']).toBeUndefined();
    expectNoSecrets(wrong.body);
    const foreign = await req('POST', '/ui/login', { form: { token: ADMIN.token }, origin: 'https://evil.example' });
    expect(foreign.statusCode).toBe(403);
    expect(foreign.headers['set-cookie']).toBeUndefined();

    const ok = await req('POST', '/ui/login', { form: { token: ADMIN.token } });
    const cookie = String(ok.headers['set-cookie']);
    expect(cookie).toMatch(/^sagaflow_session=[A-Za-z0-9_-]{40,};/);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    expect(cookie).toContain('Path=/ui');
    expect(cookie).not.toContain(ADMIN.token);
  });

  it('logout ends the session: the old cookie no longer opens a page', async () => {
    const a = await login(READER);
    const out = await req('POST', '/ui/logout', { cookie: a.cookie, form: { _csrf: a.csrf } });
    expect(out.statusCode).toBe(303);
    expect(String(out.headers['set-cookie'])).toContain('Max-Age=0');
    const after = await req('GET', '/ui', { cookie: a.cookie });
    expect(after.statusCode).toBe(303);
    expect(after.headers.location).toBe('/ui/login');
  });
});

describe('CSRF and roles', () => {
  it('an admin POST without the form token, with a wrong one, or from another origin is refused and changes nothing', async () => {
    const a = await login(ADMIN);
    const url = `/ui/sagas/${failedIds[0]}/replay`;
    const cases: { form: Record<string, string>; origin?: string | null }[] = [
      { form: { reason: 'no token' } },
      { form: { reason: 'wrong token', _csrf: `${a.csrf}x` } },
      { form: { reason: 'foreign origin', _csrf: a.csrf }, origin: 'https://evil.example' },
      { form: { reason: 'no origin', _csrf: a.csrf }, origin: null },
    ];
    for (const c of cases) {
      const r = await req('POST', url, { cookie: a.cookie, ...c });
      expect(r.statusCode, c.form.reason ?? '').toBe(403);
      expect(r.body).toContain('CSRF');
    }
    expect(await statuses([failedIds[0]!])).toEqual(['failed']);
  });

  it('a read session sees no action form, and its forged POST (with a valid form token) is 403 and audited as refused', async () => {
    const r = await login(READER);
    const detail = await req('GET', `/ui/sagas/${failedIds[0]}`, { cookie: r.cookie });
    expect(detail.statusCode).toBe(200);
    expect(detail.body).toContain('chargePayment');
    expect(detail.body).not.toMatch(/action="\/ui\/sagas\/[^"]+\/(replay|cancel)/);
    const dl = await req('GET', `/ui/dead-letters/${deadId}`, { cookie: r.cookie });
    expect(dl.body).not.toMatch(/action="\/ui\/dead-letters\/[^"]+\/(redrive|discard)/);

    for (const url of [`/ui/sagas/${failedIds[0]}/replay`, `/ui/sagas/${failedIds[0]}/replay/plan`, `/ui/dead-letters/${deadId}/discard`]) {
      const forged = await req('POST', url, { cookie: r.cookie, form: { _csrf: r.csrf, reason: 'forged' } });
      expect(forged.statusCode, url).toBe(403);
      expect(forged.body).toContain('FORBIDDEN');
    }
    expect(await statuses([failedIds[0]!])).toEqual(['failed']);
    const audit = await t.db.query<{ actor: string; outcome: string }>(
      `SELECT actor, outcome FROM "${t.schema}".audit_log WHERE target_id = $1 AND actor = $2`,
      [failedIds[0], READER.name],
    );
    expect(audit.rows.length).toBeGreaterThanOrEqual(2);
    expect(audit.rows.every((x) => x.outcome === 'refused')).toBe(true);
  });
});

describe('pages', () => {
  it('overview, list, detail and dead letters render without any token, secret or database URL', async () => {
    const a = await login(ADMIN);
    const pages = ['/ui', '/ui?window=24h', '/ui/sagas', '/ui/sagas?status=failed', `/ui/sagas?q=${failedIds[0]}`, `/ui/sagas/${failedIds[0]}`, '/ui/dead-letters', `/ui/dead-letters/${deadId}`, `/ui/dead-letters/${binaryId}`];
    for (const url of pages) {
      const r = await req('GET', url, { cookie: a.cookie });
      expect(r.statusCode, url).toBe(200);
      expect(r.headers['content-type']).toContain('text/html');
      expectNoSecrets(r.body);
    }
    const list = await req('GET', '/ui/sagas?status=failed', { cookie: a.cookie });
    for (const id of failedIds) expect(list.body).toContain(id);
    const detail = await req('GET', `/ui/sagas/${failedIds[0]}`, { cookie: a.cookie });
    expect(detail.body).toContain('Failed at chargePayment (forward)');
    expect(detail.body).toContain('failed here');
  });

  it('searches by correlation id', async () => {
    const a = await login(ADMIN);
    const { rows } = await t.db.query<{ c: string }>(`SELECT state->>'correlationId' AS c FROM "${t.schema}".sagas WHERE id = $1`, [failedIds[1]]);
    const r = await req('GET', `/ui/sagas?q=${encodeURIComponent(rows[0]!.c)}`, { cookie: a.cookie });
    expect(r.body).toContain(failedIds[1]);
    expect(r.body).not.toContain(failedIds[0]);
  });

  it('escapes hostile text, redacts secret headers and body fields, and shows binary bodies as hex', async () => {
    const a = await login(ADMIN);
    const r = await req('GET', `/ui/dead-letters/${deadId}`, { cookie: a.cookie });
    expect(r.body).not.toContain('<script>alert(1)</script>');
    expect(r.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(r.body).toContain('[redacted]');
    const list = await req('GET', '/ui/dead-letters', { cookie: a.cookie });
    expect(list.body).not.toContain('<script>alert(1)</script>');
    const bin = await req('GET', `/ui/dead-letters/${binaryId}`, { cookie: a.cookie });
    expect(bin.body).toContain('binary, hex dump');
    expect(bin.body).toContain('ff 00 41 42 fe');
  });

  it('unknown ids and bad filters answer an HTML error page', async () => {
    const a = await login(ADMIN);
    const nf = await req('GET', '/ui/sagas/00000000-0000-4000-8000-000000000000', { cookie: a.cookie });
    expect(nf.statusCode).toBe(404);
    expect(nf.headers['content-type']).toContain('text/html');
    const bad = await req('GET', '/ui/sagas?status=bogus', { cookie: a.cookie });
    expect(bad.statusCode).toBe(400);
    const none = await req('GET', '/ui/no-such-page', { cookie: a.cookie });
    expect(none.statusCode).toBe(404);
    expect(none.headers['content-type']).toContain('text/html');
    expect(String(none.headers['content-security-policy'])).toContain("script-src 'self'");
    const api = await req('GET', '/v1/no-such-route');
    expect(api.headers['content-type']).toContain('application/json');
    expect(api.headers['content-security-policy']).toBeUndefined();
  });
});

describe('actions', () => {
  it('replay shows the dry-run plan first, then the confirmed replay is accepted once and audited', async () => {
    const a = await login(ADMIN);
    const id = failedIds[1]!;
    const plan = await req('POST', `/ui/sagas/${id}/replay/plan`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'payment is back', fromStep: '' } });
    expect(plan.statusCode).toBe(200);
    expect(plan.body).toContain('ChargePayment');
    expect(await statuses([id])).toEqual(['failed']);
    const key = /name="key" value="([^"]+)"/.exec(plan.body)![1]!;
    const form = { _csrf: a.csrf, reason: 'payment is back', key };
    const done = await req('POST', `/ui/sagas/${id}/replay`, { cookie: a.cookie, form });
    expect(done.statusCode).toBe(303);
    expect(done.headers.location).toBe(`/ui/sagas/${id}`);
    const again = await req('POST', `/ui/sagas/${id}/replay`, { cookie: a.cookie, form });
    expect(again.statusCode).toBe(303);
    const page = await req('GET', `/ui/sagas/${id}`, { cookie: a.cookie });
    expect(page.body).toContain('already accepted');
    await waitFor('the replayed saga to complete', () => statuses([id]), (s) => s[0] === 'completed', { timeoutMs: 60_000 });
    const audit = await t.db.query<{ outcome: string; actor: string; reason: string }>(
      `SELECT outcome, actor, reason FROM "${t.schema}".audit_log WHERE target_id = $1 AND actor = $2 ORDER BY id`,
      [id, ADMIN.name],
    );
    expect(audit.rows.map((r) => r.outcome)).toEqual(['dry-run', 'accepted', 'duplicate']);
    expect(audit.rows.every((r) => r.reason === 'payment is back')).toBe(true);
  });

  it('a refused action comes back to its page with the reason', async () => {
    const a = await login(ADMIN);
    const id = failedIds[1]!;
    await waitFor('completed', () => statuses([id]), (s) => s[0] === 'completed', { timeoutMs: 60_000 });
    const r = await req('POST', `/ui/sagas/${id}/cancel/plan`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'too late' } });
    expect(r.statusCode).toBe(303);
    const back = await req('GET', r.headers.location as string, { cookie: a.cookie });
    expect(back.body).toMatch(/flash err/);
  });

  it('replay from a step with force shows which succeeded steps run again; an unknown step is a 400', async () => {
    const a = await login(ADMIN);
    const id = failedIds[0]!;
    const noForce = await req('POST', `/ui/sagas/${id}/replay/plan`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'rerun stock', fromStep: 'reserveStock' } });
    expect(noForce.statusCode).toBe(303);
    expect((await req('GET', noForce.headers.location as string, { cookie: a.cookie })).body).toContain('NEEDS_FORCE');
    const plan = await req('POST', `/ui/sagas/${id}/replay/plan`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'rerun stock', fromStep: 'reserveStock', force: '1' } });
    expect(plan.statusCode).toBe(200);
    expect(plan.body).toContain('runs again');
    expect(plan.body).toContain('ReserveStock');
    expect(plan.body).toMatch(/name="force" value="1"/);
    expect(plan.body).toMatch(/name="fromStep" value="reserveStock"/);
    const unknown = await req('POST', `/ui/sagas/${id}/replay/plan`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'x', fromStep: 'nope' } });
    expect(unknown.statusCode).toBe(400);
    expect(await statuses([id])).toEqual(['failed']);
  });

  it('discard needs a reason and marks the dead letter', async () => {
    const a = await login(ADMIN);
    const none = await req('POST', `/ui/dead-letters/${binaryId}/discard`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: '' } });
    expect(none.statusCode).toBe(400);
    const ok = await req('POST', `/ui/dead-letters/${binaryId}/discard`, { cookie: a.cookie, form: { _csrf: a.csrf, reason: 'garbage bytes' } });
    expect(ok.statusCode).toBe(303);
    const page = await req('GET', `/ui/dead-letters/${binaryId}`, { cookie: a.cookie });
    expect(page.body).toContain('discarded');
    expect(page.body).toContain('garbage bytes');
  });
});
