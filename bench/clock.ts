/**
 * What the timer clock costs: `sagaflow_now()` (migrations/0005_clock.sql: now() plus an optional
 * per-session offset, for the test kit's virtual time) against plain now(), in the shapes the worker
 * uses: the due-timer scan (wake_at <= clock) and the next-wake query, plus the bare call. Prints
 * figures and the plan; asserts nothing. `npx tsx bench/clock.ts` (DATABASE_URL, else the local default).
 */
import { randomBytes } from 'node:crypto';
import { createDb } from '../src/db/db.js';
import { migrate } from '../src/db/migrate.js';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const schema = `bench_clock_${randomBytes(4).toString('hex')}`;
const db = createDb({ connectionString: url, max: 1 });
const ROWS = 100_000;
const ROUNDS = 2_000;
try {
  await migrate(db, schema);
  await db.query(
    `INSERT INTO "${schema}".sagas (id, tenant_id, saga_type, definition_version, status, data, state, version, wake_at)
     SELECT gen_random_uuid(), 't', 'order', 1, 'running', '{}', '{}', 1, now() + (g % 600) * interval '1 second'
     FROM generate_series(1, $1::int) g`,
    [ROWS],
  );
  await db.query(`ANALYZE "${schema}".sagas`);
  const shapes: Record<string, (clock: string) => string> = {
    'due timers (wake_at <= clock, LIMIT 200)': (clock) => `SELECT id FROM "${schema}".sagas WHERE wake_at <= ${clock} AND saga_type = 'order' ORDER BY wake_at LIMIT 200`,
    'next wake (min(wake_at) - clock)': (clock) => `SELECT min(wake_at) - ${clock} FROM "${schema}".sagas WHERE wake_at IS NOT NULL AND saga_type = 'order'`,
    'bare clock': (clock) => `SELECT ${clock}`,
  };
  for (const [name, sql] of Object.entries(shapes)) {
    const figures: string[] = [];
    for (const clock of ['now()', `"${schema}".sagaflow_now()`]) {
      const text = sql(clock);
      for (let i = 0; i < 100; i++) await db.query(text); // warm-up
      const t = performance.now();
      for (let i = 0; i < ROUNDS; i++) await db.query(text);
      figures.push(`${clock === 'now()' ? 'now()' : 'sagaflow_now()'} ${(((performance.now() - t) / ROUNDS) * 1000).toFixed(0)} µs/query`);
    }
    const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql(`"${schema}".sagaflow_now()`)}`);
    console.log(`${name}: ${figures.join(', ')} (${ROWS} sagas, ${ROUNDS} rounds)\n  plan with sagaflow_now(): ${plan.rows.map((r) => r['QUERY PLAN'].trim()).join(' | ')}`);
  }
} finally {
  await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db.close();
}
