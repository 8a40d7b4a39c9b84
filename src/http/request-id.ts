import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * Request ids: an incoming `x-request-id` is honoured when it is a plain token (at most 128 of
 * A-Z a-z 0-9 . _ -), else one is generated. The id is returned in the `x-request-id` header and in
 * every error body, logged with the request, and passed to operator actions as their idempotency
 * key: a retried POST with the same id is answered `duplicate` instead of acting twice.
 *
 * A header that is present but malformed (bad characters, too long, repeated) is replaced, not
 * refused: the request is served under a generated id, and the answer says so in
 * `x-request-id-replaced`, so a client that thought it sent an idempotency key learns it was not
 * used (and the server log says it too, without the value, which may be anything).
 */
export const REQUEST_ID_HEADER = 'x-request-id';
export const REQUEST_ID_REPLACED_HEADER = 'x-request-id-replaced';
export const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
export const REQUEST_ID_RULE = 'the x-request-id sent is not 1 to 128 characters of A-Z a-z 0-9 . _ -; it was replaced by a generated one';

export function genRequestId(req: IncomingMessage): string {
  const h = req.headers[REQUEST_ID_HEADER];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
}

/** true when the request carried an x-request-id that cannot be honoured (bad characters, too long, repeated). */
export function hasMalformedRequestId(req: IncomingMessage): boolean {
  const h = req.headers[REQUEST_ID_HEADER];
  return h !== undefined && !(typeof h === 'string' && REQUEST_ID.test(h));
}
