import { z } from 'zod';
import { HttpError } from './errors.js';

/**
 * Keyset pagination, newest first. A page asks the store for limit+1 rows: the extra row only says
 * whether there is a next page, so the last page has `nextCursor: null` and no empty page follows.
 * Cursors are opaque to clients; for sagas it is base64url JSON of the last item's (createdAt, id),
 * for dead letters and audit rows the last item's numeric id.
 */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const limitSchema = z.coerce.number().int('limit must be an integer').min(1).max(500).default(50);

export const idCursorSchema = z.string().regex(/^\d{1,18}$/, 'cursor must be the nextCursor of an earlier page');

const sagaCursor = z.strictObject({
  createdAt: z.iso.datetime({ offset: true }),
  id: z.string().regex(UUID),
});

export interface SagaCursor {
  readonly createdAt: Date;
  readonly id: string;
}

export function encodeSagaCursor(c: SagaCursor): string {
  return Buffer.from(JSON.stringify({ createdAt: c.createdAt.toISOString(), id: c.id }), 'utf8').toString('base64url');
}

export function decodeSagaCursor(s: string): SagaCursor {
  let raw: unknown;
  try {
    if (s.length > 400 || !/^[A-Za-z0-9_-]+$/.test(s)) throw new Error('not base64url');
    raw = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  } catch {
    throw badCursor();
  }
  const r = sagaCursor.safeParse(raw);
  if (!r.success) throw badCursor();
  return { createdAt: new Date(r.data.createdAt), id: r.data.id.toLowerCase() };
}

function badCursor(): HttpError {
  return new HttpError(400, 'BAD_REQUEST', 'invalid query: cursor: must be the nextCursor of an earlier page', [
    { path: 'cursor', message: 'must be the nextCursor of an earlier page' },
  ]);
}

/** The page and the cursor of the next one, from limit+1 fetched rows. */
export function page<T>(rows: readonly T[], limit: number, cursorOf: (last: T) => string): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  return { items, nextCursor: rows.length > limit ? cursorOf(items.at(-1)!) : null };
}
