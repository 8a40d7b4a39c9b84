/**
 * The worker's start-up check of server settings it depends on: the warning appears exactly when
 * the server's autovacuum would not run (this build machine's Postgres has it off on purpose for
 * benches; a production server has it on and gets no warning).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverWarnings } from '../../src/db/server-checks.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
beforeAll(async () => {
  t = await createTestDb({ migrate: false, prefix: 'sf_server_checks', pool: 1 });
});
afterAll(async () => t?.drop());

describe('server checks', () => {
  it('warns about autovacuum exactly when the server would not vacuum the hot tables', async () => {
    const { rows } = await t.db.query<{ a: string; c: string }>(`SELECT current_setting('autovacuum') AS a, current_setting('track_counts') AS c`);
    const runs = rows[0]!.a === 'on' && rows[0]!.c === 'on';
    const warnings = await serverWarnings(t.db);
    if (runs) expect(warnings).toEqual([]);
    else expect(warnings).toEqual([expect.stringMatching(/^autovacuum is .* on this Postgres server: the hot tables/)]);
  });
});
