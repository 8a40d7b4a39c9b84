import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../auth.js';

/**
 * Dashboard sessions, kept in this process's memory. The browser gets only a random session id
 * (httpOnly, SameSite=Strict, Path=/ui): the token it logged in with is verified once and never
 * stored, so a stolen cookie dies with the session (logout, idle expiry or a restart) and a
 * leaked cookie never reveals a token. Each session has its own CSRF synchronizer token, rendered
 * into every action form and checked (in constant time) on every POST.
 *
 * Memory is the right place for one `sagaflow serve` process: a restart logs everyone out, which
 * is a feature for an operator console. Several replicas behind a balancer need sticky sessions.
 */
export interface Session {
  readonly id: string;
  readonly principal: Principal;
  readonly csrf: string;
  expiresAt: number;
}

export interface SessionOptions {
  /** Idle time after which a session ends (default 30 min); each request extends it. */
  readonly idleMs?: number;
  /** Longest life of a session whatever its activity (default 12 h). */
  readonly maxMs?: number;
  /** Most sessions kept at once (default 1000); the oldest is dropped beyond. */
  readonly max?: number;
  /** Adds `Secure` to the cookie: set it when the dashboard is reached over HTTPS (a proxy). */
  readonly secureCookie?: boolean;
}

export const COOKIE = 'sagaflow_session';

export class SessionStore {
  readonly #sessions = new Map<string, Session & { readonly createdAt: number }>();
  readonly #idleMs: number;
  readonly #maxMs: number;
  readonly #max: number;

  constructor(
    opts: SessionOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.#idleMs = opts.idleMs ?? 30 * 60_000;
    this.#maxMs = opts.maxMs ?? 12 * 3_600_000;
    this.#max = opts.max ?? 1000;
  }

  create(principal: Principal): Session {
    this.#sweep();
    while (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value!);
    const t = this.now();
    const s = { id: randomBytes(32).toString('base64url'), principal, csrf: randomBytes(32).toString('base64url'), expiresAt: t + this.#idleMs, createdAt: t };
    this.#sessions.set(s.id, s);
    return s;
  }

  /**
   * The live session with this id, undefined when unknown or expired. Its idle expiry is pushed
   * back unless `extend` is false: a page's automatic refresh must not keep an abandoned tab signed in.
   */
  touch(id: string | undefined, extend = true): Session | undefined {
    if (!id) return undefined;
    const s = this.#sessions.get(id);
    if (!s) return undefined;
    const t = this.now();
    if (t >= s.expiresAt || t >= s.createdAt + this.#maxMs) {
      this.#sessions.delete(id);
      return undefined;
    }
    if (extend) s.expiresAt = t + this.#idleMs;
    return s;
  }

  end(id: string | undefined): void {
    if (id) this.#sessions.delete(id);
  }

  get size(): number {
    return this.#sessions.size;
  }

  #sweep(): void {
    const t = this.now();
    for (const [id, s] of this.#sessions) if (t >= s.expiresAt || t >= s.createdAt + this.#maxMs) this.#sessions.delete(id);
  }
}

export function sessionCookie(id: string, secure: boolean): string {
  return `${COOKIE}=${id}; Path=/ui; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export function clearedCookie(secure: boolean): string {
  return `${COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

export function cookieValue(request: FastifyRequest, name = COOKIE): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function csrfMatches(session: Session, presented: unknown): boolean {
  if (typeof presented !== 'string' || presented.length === 0 || presented.length > 200) return false;
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(session.csrf), h(presented));
}

/**
 * A state-changing request must come from a page of this origin: the Origin header (browsers send
 * it on every POST) must name the host the request was sent to. Without Origin, Sec-Fetch-Site
 * must say same-origin. A request with neither is refused: the dashboard is for browsers.
 */
export function sameOrigin(request: FastifyRequest): boolean {
  const host = request.headers.host;
  const origin = request.headers.origin;
  if (typeof origin === 'string' && origin !== 'null') {
    try {
      return host !== undefined && new URL(origin).host === host;
    } catch {
      return false;
    }
  }
  return request.headers['sec-fetch-site'] === 'same-origin';
}
