/**
 * Dashboard sessions with a fake clock: idle expiry (a live refresh does not extend it), the
 * longest life, the cap on sessions, the CSRF comparison and the same-origin rule.
 */
import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { csrfMatches, sameOrigin, sessionCookie, SessionStore } from '../../src/http/ui/session.js';

const alice = { name: 'ops-alice', role: 'admin' as const };

function clock() {
  const c = { t: 1_000_000, now: () => c.t };
  return c;
}

describe('SessionStore', () => {
  it('ends a session after its idle time; a visit extends it, a live refresh does not', () => {
    const c = clock();
    const store = new SessionStore({ idleMs: 1000, maxMs: 10_000 }, c.now);
    const s = store.create(alice);
    c.t += 900;
    expect(store.touch(s.id)).toBe(s); // extends to +1000 from here
    c.t += 900;
    expect(store.touch(s.id, false)).toBe(s); // does not extend
    c.t += 200;
    expect(store.touch(s.id)).toBeUndefined();
    expect(store.size).toBe(0);
  });

  it('ends a busy session at its longest life, and after logout', () => {
    const c = clock();
    const store = new SessionStore({ idleMs: 1000, maxMs: 3000 }, c.now);
    const s = store.create(alice);
    for (let i = 0; i < 5; i++) {
      c.t += 500;
      expect(store.touch(s.id)).toBe(s);
    }
    c.t += 500;
    expect(store.touch(s.id)).toBeUndefined();
    const other = store.create(alice);
    store.end(other.id);
    expect(store.touch(other.id)).toBeUndefined();
    expect(store.touch(undefined)).toBeUndefined();
    expect(store.touch('not-a-session')).toBeUndefined();
  });

  it('keeps at most `max` sessions, dropping the oldest', () => {
    const store = new SessionStore({ max: 2 });
    const a = store.create(alice);
    const b = store.create(alice);
    const c = store.create(alice);
    expect(store.touch(a.id)).toBeUndefined();
    expect(store.touch(b.id)).toBe(b);
    expect(store.touch(c.id)).toBe(c);
  });

  it('gives every session its own random id and form token', () => {
    const store = new SessionStore();
    const a = store.create(alice);
    const b = store.create(alice);
    expect(a.id).not.toBe(b.id);
    expect(a.csrf).not.toBe(b.csrf);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(csrfMatches(a, a.csrf)).toBe(true);
    expect(csrfMatches(a, b.csrf)).toBe(false);
    expect(csrfMatches(a, '')).toBe(false);
    expect(csrfMatches(a, undefined)).toBe(false);
    expect(csrfMatches(a, [a.csrf])).toBe(false);
    expect(sessionCookie(a.id, true)).toBe(`sagaflow_session=${a.id}; Path=/ui; HttpOnly; SameSite=Strict; Secure`);
  });
});

describe('sameOrigin', () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as FastifyRequest;
  it('accepts an Origin naming the requested host, or Sec-Fetch-Site same-origin without Origin', () => {
    expect(sameOrigin(req({ host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8080' }))).toBe(true);
    expect(sameOrigin(req({ host: '127.0.0.1:8080', 'sec-fetch-site': 'same-origin' }))).toBe(true);
  });
  it('refuses another origin, a null origin, a malformed one, or neither header', () => {
    expect(sameOrigin(req({ host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8081' }))).toBe(false);
    expect(sameOrigin(req({ host: '127.0.0.1:8080', origin: 'https://evil.example' }))).toBe(false);
    expect(sameOrigin(req({ host: '127.0.0.1:8080', origin: 'null', 'sec-fetch-site': 'cross-site' }))).toBe(false);
    expect(sameOrigin(req({ host: '127.0.0.1:8080', origin: 'not a url' }))).toBe(false);
    expect(sameOrigin(req({ host: '127.0.0.1:8080' }))).toBe(false);
    expect(sameOrigin(req({ host: '127.0.0.1:8080', 'sec-fetch-site': 'same-site' }))).toBe(false);
  });
});
