import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { NotFoundError, RefusedError, SagaflowError, isSystemicDbError } from '../errors.js';

/**
 * One error shape for every answer that is not a success:
 *   { "error": { "code": "NOT_FOUND", "message": "no saga ..." }, "requestId": "..." }
 * Codes are stable strings (clients switch on them); messages are for people. A 5xx never carries
 * the cause (a pg error can quote values, a stack names files): it is logged with the request id,
 * and the answer only points at the log.
 */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly issues?: readonly Issue[] };
  readonly requestId: string;
}

export interface Issue {
  readonly path: string;
  readonly message: string;
}

/** An error the HTTP layer raises itself, with its status and code already decided. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly issues?: readonly Issue[],
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const MAX_ISSUES = 5;

/** Parses `value` with `schema`, or throws a 400 naming the first few problems (never the whole input). */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'path'): z.output<S> {
  const r = schema.safeParse(value ?? (where === 'body' ? {} : value));
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, MAX_ISSUES).map((i) => ({
    path: i.path.length ? i.path.map(String).join('.') : where,
    message: i.message,
  }));
  const first = issues[0]!;
  throw new HttpError(400, 'BAD_REQUEST', `invalid ${where}: ${first.path === where ? '' : `${first.path}: `}${first.message}`, issues);
}

interface Mapped {
  status: number;
  code: string;
  message: string;
  issues?: readonly Issue[];
  headers?: Readonly<Record<string, string>>;
}

const FASTIFY_CODES: Readonly<Record<number, string>> = {
  400: 'BAD_REQUEST',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  408: 'REQUEST_TIMEOUT',
  411: 'LENGTH_REQUIRED',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  431: 'HEADERS_TOO_LARGE',
};

/** Maps anything thrown by a route (or by Fastify while reading the request) to a status and a code. */
export function mapError(err: unknown): Mapped {
  if (err instanceof HttpError) {
    return { status: err.statusCode, code: err.code, message: err.message, headers: err.headers, ...(err.issues ? { issues: err.issues } : {}) };
  }
  if (err instanceof z.ZodError) {
    const first = err.issues[0];
    return { status: 400, code: 'BAD_REQUEST', message: first ? `${first.path.map(String).join('.')}: ${first.message}` : 'invalid input' };
  }
  if (err instanceof NotFoundError) return { status: 404, code: err.code, message: err.message };
  if (err instanceof RefusedError) return { status: 409, code: err.code, message: err.message };
  if (err instanceof SagaflowError) {
    switch (err.code) {
      case 'USAGE':
      case 'CONFIG_INVALID':
      case 'SCHEMA_INVALID':
        return { status: 400, code: err.code, message: err.message };
      case 'NOT_FOUND':
        return { status: 404, code: err.code, message: err.message };
      case 'INVALID_STATE':
      case 'NEEDS_FORCE':
        return { status: 409, code: err.code, message: err.message };
      default:
        break;
    }
  }
  if (isSystemicDbError(err)) {
    return { status: 503, code: 'UNAVAILABLE', message: 'the database is unavailable; try again later', headers: { 'retry-after': '5' } };
  }
  // Errors Fastify raises while reading the request (bad JSON, body too large, wrong media type):
  // their messages are generic and fixed (no request content), so they are safe to pass on.
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, code: FASTIFY_CODES[status] ?? 'BAD_REQUEST', message: (err as Error).message || 'bad request' };
  }
  return { status: 500, code: 'INTERNAL', message: 'internal error; the server log has the details under this request id' };
}

export function errorBody(requestId: string, code: string, message: string, issues?: readonly Issue[]): ErrorBody {
  return { error: { code, message, ...(issues ? { issues } : {}) }, requestId };
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const m = mapError(err);
  // The request's child logger already carries its id (reqId); the route is logged without the query.
  const where = { method: request.method, route: request.routeOptions.url };
  if (m.status >= 500) request.log.error({ err, ...where }, 'admin request failed');
  // Refused credentials are logged per burst by the failed-authentication limiter, not here.
  else if (!request.authFailed) request.log.info({ code: m.code, status: m.status, ...where }, 'admin request refused');
  for (const [k, v] of Object.entries(m.headers ?? {})) void reply.header(k, v);
  return reply.code(m.status).send(errorBody(request.id, m.code, m.message, m.issues));
}
