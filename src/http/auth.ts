import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { AdminToken } from '../config.js';
import type { AuthFailureLimiter } from './auth-failures.js';
import { HttpError } from './errors.js';
import type { RateLimiter } from './rate-limit.js';

/**
 * Bearer-token authentication and a two-role authorisation (`read` < `admin`).
 *
 * CSRF does not apply: credentials travel only in the `Authorization` header, which a browser never
 * attaches by itself to a cross-site request (no cookies, no sessions, no basic auth are accepted),
 * and the API sends no CORS headers, so another origin cannot even make the pre-flighted request.
 *
 * Tokens are compared in constant time: both sides are hashed to 32 bytes first (timingSafeEqual
 * needs equal lengths, and hashing hides the configured token's length), and every configured token
 * is compared on every request, with no early exit. The token itself is never kept on the request,
 * logged or echoed; only its NAME identifies the caller (and is the actor in the audit trail).
 */
export type Role = AdminToken['role'];

export interface Principal {
  readonly name: string;
  readonly role: Role;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; null on routes without authentication. */
    principal: Principal | null;
    /** Refused for its credentials: the failed-authentication limiter logs it (per burst), nobody else. */
    authFailed: boolean;
  }
  interface FastifyContextConfig {
    /** The least role a route needs. Routes that do not say need `admin` (fail closed). */
    access?: Role;
  }
}

const WWW_AUTHENTICATE = 'WWW-Authenticate';
const REALM = 'Bearer realm="sagaflow-admin"';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class TokenVerifier {
  readonly #entries: readonly { readonly hash: Buffer; readonly principal: Principal }[];

  constructor(tokens: readonly AdminToken[]) {
    this.#entries = tokens.map((t) => ({ hash: digest(t.token), principal: Object.freeze({ name: t.name, role: t.role }) }));
  }

  get size(): number {
    return this.#entries.length;
  }

  /** The principal a presented token belongs to, or null. Takes the same time whichever token (if any) matches. */
  verify(presented: string): Principal | null {
    const h = digest(presented);
    let found: Principal | null = null;
    for (const e of this.#entries) {
      if (timingSafeEqual(h, e.hash) && found === null) found = e.principal;
    }
    return found;
  }
}

const BEARER = /^Bearer[ ]+([\x21-\x7e]{1,4096})[ ]*$/i;

/** Reads the bearer token from the Authorization header; throws 401 when it is missing or malformed. */
export function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (header === undefined || header === '') throw unauthorized('missing bearer token (send "Authorization: Bearer <token>")');
  const m = BEARER.exec(header);
  if (!m) throw unauthorized('the Authorization header must be "Bearer <token>"', true);
  return m[1]!;
}

export function unauthorized(message: string, invalidToken = false): HttpError {
  return new HttpError(401, 'UNAUTHORIZED', message, undefined, {
    [WWW_AUTHENTICATE]: invalidToken ? `${REALM}, error="invalid_token"` : REALM,
  });
}

export function forbidden(principal: Principal, needed: Role): HttpError {
  return new HttpError(403, 'FORBIDDEN', `token ${principal.name} has role ${principal.role}; this action needs role ${needed}`, undefined, {
    [WWW_AUTHENTICATE]: `${REALM}, error="insufficient_scope"`,
  });
}

export function allows(role: Role, needed: Role): boolean {
  return needed === 'read' || role === 'admin';
}

/** The role a route needs: what its config says, else `admin`. */
export function neededRole(request: FastifyRequest): Role {
  return request.routeOptions.config.access ?? 'admin';
}

export interface AuthOptions {
  readonly verifier: TokenVerifier;
  /** Per-token request budget; checked after authentication, so it is keyed by the token's name. */
  readonly limiter?: RateLimiter | undefined;
  /** Failed authentications per client address (see auth-failures.ts); checked before the token. */
  readonly failures?: AuthFailureLimiter | undefined;
  /** Called (and awaited) when an authenticated caller is refused for its role: the audit trail. */
  readonly onForbidden?: ((request: FastifyRequest, principal: Principal, needed: Role) => Promise<void>) | undefined;
}

function retryIn(code: string, message: (seconds: number) => string, waitMs: number): HttpError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new HttpError(429, code, message(seconds), undefined, { 'retry-after': String(seconds) });
}

/**
 * The onRequest hook of the authenticated routes. It runs before the body is read, so an anonymous
 * caller gets its 401 without the server parsing anything it sent.
 */
export function authHook(opts: AuthOptions): (request: FastifyRequest) => Promise<void> {
  const failed = (request: FastifyRequest, err: HttpError): HttpError => {
    const route = request.routeOptions.url;
    if (opts.failures) {
      request.authFailed = true;
      opts.failures.fail(request.ip, request.log, { route, why: err.message });
    } else {
      request.log.warn({ ip: request.ip, route, why: err.message }, 'admin authentication failed');
    }
    return err;
  };
  return async (request) => {
    const blockedMs = opts.failures?.refuse(request.ip, request.log) ?? 0;
    if (blockedMs > 0) {
      request.authFailed = true;
      throw retryIn('RATE_LIMITED', (s) => `too many failed authentications from this address; retry in ${s} s`, blockedMs);
    }
    if (opts.verifier.size === 0) throw failed(request, unauthorized('no admin tokens are configured (SAGAFLOW_ADMIN_TOKENS); the admin API refuses every request'));
    let presented: string;
    try {
      presented = bearerToken(request);
    } catch (err) {
      throw err instanceof HttpError ? failed(request, err) : err;
    }
    const principal = opts.verifier.verify(presented);
    if (!principal) throw failed(request, unauthorized('invalid bearer token', true));
    request.principal = principal;
    const wait = opts.limiter?.take(principal.name);
    if (wait !== undefined && wait > 0) throw retryIn('RATE_LIMITED', (s) => `too many requests for token ${principal.name}; retry in ${s} s`, wait);
    const needed = neededRole(request);
    if (!allows(principal.role, needed)) {
      await opts.onForbidden?.(request, principal, needed);
      throw forbidden(principal, needed);
    }
  };
}
