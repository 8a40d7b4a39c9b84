import type { Queryable } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import type { Params } from '../db/params.js';
import type { StepRowChange } from './engine.js';
import type { PathSummary } from './path.js';
import type { EngineState, SagaInstance, SagaStatus } from './state.js';
import { WAITING_PREFIX, type DefinitionKey } from './versions.js';

/** `(saga_type, definition_version) IN` the keys given as $n (types) and $n+1 (versions). */
function keyFilter(typesParam: number): string {
  return `(saga_type, definition_version) IN (SELECT * FROM unnest($${typesParam}::text[], $${typesParam + 1}::int[]))`;
}
const keyParams = (keys: readonly DefinitionKey[]) => [keys.map((k) => k.type), keys.map((k) => k.version)];

/** A saga row to write: the new instance, the version it was read at (null: new), and its wake change. */
export interface SagaWrite {
  readonly instance: SagaInstance;
  readonly readVersion: number | null;
  /** undefined: keep wake_at; null: clear it; number: now() + delay (database clock). */
  readonly wakeDelayMs: number | null | undefined;
  /** A new saga's deadline, ms from now (database clock). */
  readonly deadlineMs?: number;
}

export interface StepRowWrite extends StepRowChange {
  readonly sagaId: string;
}

/** An applied input and the path it took, keyed by the saga version it produced. */
export interface InputRowWrite {
  readonly sagaId: string;
  readonly version: number;
  readonly definitionVersion: number;
  readonly input: unknown;
  readonly result: PathSummary;
}

interface SagaRow {
  id: string;
  tenant_id: string;
  saga_type: string;
  definition_version: number;
  status: SagaStatus;
  data: unknown;
  state: EngineState;
  reason: string | null;
  version: number;
}

const COLUMNS = 'id, tenant_id, saga_type, definition_version, status, data, state, reason, version';

function toInstance(r: SagaRow): SagaInstance {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    type: r.saga_type,
    definitionVersion: r.definition_version,
    status: r.status,
    data: r.data,
    state: r.state,
    reason: r.reason,
    version: r.version,
  };
}

const TERMINAL_SQL = `('completed', 'compensated', 'failed')`;

export class SagaStore {
  readonly sagas: string;
  readonly steps: string;
  /** The timer clock: now(), plus the offset a test session may set (migrations/0005_clock.sql). */
  readonly now: string;
  readonly inputs: string;
  readonly #fence: string;
  constructor(schema: string) {
    const q = quoteSchema(schema);
    this.#fence = `${q}.sagaflow_fence`;
    this.sagas = `${q}.sagas`;
    this.steps = `${q}.saga_steps`;
    this.now = `${q}.sagaflow_now()`;
    this.inputs = `${q}.saga_inputs`;
  }

  /** Locks the sagas (one writer per saga) in id order, so concurrent batches never deadlock on them. */
  async lockMany(tx: Queryable, ids: readonly string[]): Promise<Map<string, SagaInstance>> {
    const out = new Map<string, SagaInstance>();
    if (ids.length === 0) return out;
    const { rows } = await tx.query<SagaRow>(
      `SELECT ${COLUMNS} FROM ${this.sagas} WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`,
      [[...new Set(ids)]],
    );
    for (const r of rows) out.set(r.id, toInstance(r));
    return out;
  }

  /**
   * Claims sagas whose wake time passed (database clock) and clears it, in the caller's transaction:
   * the timer fires exactly once because clearing it commits with the transition it causes.
   * SKIP LOCKED lets several workers share the work; a saga busy in another transaction waits a round.
   */
  async claimDue(tx: Queryable, limit: number, keys: readonly DefinitionKey[], only?: readonly string[]): Promise<(SagaInstance & { deadlineDue: boolean })[]> {
    // `only`: the timer round isolating a failed batch claims its sagas one at a time. Only the
    // definition versions this worker has: another version's timer waits for a worker that has it.
    const { rows } = await tx.query<SagaRow & { deadline_due: boolean }>(
      `UPDATE ${this.sagas} s SET wake_at = NULL
       WHERE s.id IN (SELECT id FROM ${this.sagas} WHERE wake_at <= ${this.now} AND ${keyFilter(2)}
                      ${only ? 'AND id = ANY($4::uuid[])' : ''}
                      ORDER BY wake_at LIMIT $1 FOR UPDATE SKIP LOCKED)
       RETURNING ${COLUMNS.split(', ').map((c) => `s.${c}`).join(', ')}, coalesce(s.deadline_at <= ${this.now}, false) AS deadline_due`,
      only ? [limit, ...keyParams(keys), only] : [limit, ...keyParams(keys)],
    );
    return rows.map((r) => ({ ...toInstance(r), deadlineDue: r.deadline_due }));
  }

  /**
   * Parks a saga that an input cannot move (its transition threw): `reason` says why; status and
   * version stay, it is no transition. With `delayMs` (a failed timer) only a saga still due is
   * parked and its wake time moves that far out (database clock); another worker may have parked
   * or fired it meanwhile. Without, the wake time stays. Returns the saga's type, or null.
   */
  async park(db: Queryable, id: string, reason: string, delayMs: number | null): Promise<{ type: string } | null> {
    const { rows } =
      delayMs === null
        ? await db.query<{ saga_type: string }>(
            `UPDATE ${this.sagas} SET reason = $2, updated_at = now()
             WHERE id = $1 AND status NOT IN ('completed', 'compensated', 'failed') RETURNING saga_type`,
            [id, reason],
          )
        : await db.query<{ saga_type: string }>(
            `UPDATE ${this.sagas} SET wake_at = ${this.now} + $3 * interval '1 millisecond', reason = $2, updated_at = now()
             WHERE id = $1 AND wake_at <= ${this.now} RETURNING saga_type`,
            [id, reason, delayMs],
          );
    return rows[0] ? { type: rows[0].saga_type } : null;
  }

  /** Milliseconds until the earliest wake time (negative when overdue), or null when no timer is set. */
  async nextWakeInMs(db: Queryable, keys: readonly DefinitionKey[]): Promise<number | null> {
    // Overdue timers of versions this worker does not have must not make it look again at once.
    const { rows } = await db.query<{ ms: number | null }>(
      `SELECT (extract(epoch FROM (min(wake_at) - ${this.now})) * 1000)::float8 AS ms FROM ${this.sagas}
       WHERE wake_at IS NOT NULL AND ${keyFilter(1)}`,
      keyParams(keys),
    );
    return rows[0]?.ms ?? null;
  }

  /**
   * CTE parts that write new sagas, update existing ones (checking the version read) and upsert step
   * rows. Each part takes ONE jsonb parameter (an array of row objects, read with
   * jsonb_to_recordset): JSON.stringify is native and embeds data and state as they are, where
   * per-column array literals cost a JavaScript escape pass per value (measured in a profile).
   */
  writeCtes(
    p: Params,
    writes: readonly SagaWrite[],
    steps: readonly StepRowWrite[],
    inputs: readonly InputRowWrite[] = [],
  ): { ctes: string[]; fence: string | null } {
    const ctes: string[] = [];
    const inserts = writes.filter((w) => w.readVersion === null);
    const updates = writes.filter((w) => w.readVersion !== null);
    const wakeExpr = (keep: string) =>
      `CASE u.wake_mode WHEN 0 THEN ${keep} WHEN 1 THEN NULL ELSE ${this.now} + u.wake_ms * interval '1 millisecond' END`;
    // A running saga with a deadline wakes at the deadline at the latest (LEAST ignores NULL), so
    // the one timer per saga also fires the deadline; compensating, it no longer applies.
    const bounded = (wake: string, deadline: string) => `CASE WHEN u.status = 'running' THEN LEAST(${wake}, ${deadline}) ELSE ${wake} END`;
    const row = (w: SagaWrite) => ({
      id: w.instance.id,
      tenant_id: w.instance.tenantId,
      saga_type: w.instance.type,
      dv: w.instance.definitionVersion,
      status: w.instance.status,
      // JSON null reads back as SQL NULL: keep a null saga data as the jsonb value null
      data: w.instance.data ?? null,
      state: w.instance.state,
      reason: w.instance.reason,
      version: w.instance.version,
      read_version: w.readVersion,
      wake_mode: w.wakeDelayMs === undefined ? 0 : w.wakeDelayMs === null ? 1 : 2,
      wake_ms: w.wakeDelayMs ?? 0,
      deadline_ms: w.deadlineMs ?? null,
    });
    const RECORD = `id uuid, tenant_id text, saga_type text, dv int, status text, data jsonb, state jsonb, reason text, version int,
                    read_version int, wake_mode int, wake_ms float8, deadline_ms float8`;
    const newDeadline = `${this.now} + u.deadline_ms * interval '1 millisecond'`;
    if (inserts.length > 0) {
      ctes.push(`saga_ins AS (
        INSERT INTO ${this.sagas} (id, tenant_id, saga_type, definition_version, status, data, state, reason, version, wake_at, finished_at, deadline_at)
        SELECT u.id, u.tenant_id, u.saga_type, u.dv, u.status, coalesce(u.data, 'null'::jsonb), u.state, u.reason, u.version,
               ${bounded(wakeExpr('NULL'), newDeadline)}, CASE WHEN u.status IN ${TERMINAL_SQL} THEN now() END, ${newDeadline}
        FROM jsonb_to_recordset(${p.add(JSON.stringify(inserts.map(row)), 'jsonb')}) AS u(${RECORD})
        RETURNING 1)`);
    }
    if (updates.length > 0) {
      ctes.push(`saga_upd AS (
        UPDATE ${this.sagas} t SET status = u.status, data = coalesce(u.data, 'null'::jsonb), state = u.state, reason = u.reason,
               version = u.version, wake_at = ${bounded(wakeExpr('t.wake_at'), 't.deadline_at')}, updated_at = now(),
               finished_at = CASE WHEN u.status IN ${TERMINAL_SQL} THEN coalesce(t.finished_at, now()) END
        FROM jsonb_to_recordset(${p.add(JSON.stringify(updates.map(row)), 'jsonb')}) AS u(${RECORD})
        WHERE t.id = u.id AND t.version = u.read_version
        RETURNING 1)`);
    }
    if (steps.length > 0) {
      const rows = steps.map((s) => ({
        saga_id: s.sagaId,
        seq: s.seq,
        step_name: s.step,
        kind: s.kind,
        attempt: s.attempt,
        status: s.status,
        command_id: s.commandId ?? null,
        command_type: s.commandType ?? null,
        reply_id: s.replyId ?? null,
        reply_type: s.replyType ?? null,
        kept: s.kept,
        error: s.error ?? null,
        finished: s.finished,
      }));
      ctes.push(`step_up AS (
        INSERT INTO ${this.steps} AS t (saga_id, seq, step_name, kind, attempt, status, command_id, command_type, reply_id, reply_type, kept, error, started_at, finished_at)
        SELECT u.saga_id, u.seq, u.step_name, u.kind, u.attempt, u.status, u.command_id, u.command_type, u.reply_id, u.reply_type, u.kept, u.error,
               now(), CASE WHEN u.finished THEN now() END
        FROM jsonb_to_recordset(${p.add(JSON.stringify(rows), 'jsonb')})
             AS u(saga_id uuid, seq int, step_name text, kind text, attempt int, status text, command_id uuid, command_type text,
                  reply_id uuid, reply_type text, kept jsonb, error text, finished boolean)
        ON CONFLICT (saga_id, seq) DO UPDATE SET
          status = excluded.status,
          reply_id = coalesce(excluded.reply_id, t.reply_id),
          reply_type = coalesce(excluded.reply_type, t.reply_type),
          kept = coalesce(excluded.kept, t.kept),
          error = coalesce(excluded.error, t.error),
          finished_at = coalesce(excluded.finished_at, t.finished_at)
        RETURNING 1)`);
    }
    if (inputs.length > 0) {
      // Same statement as the saga write: the history has an input exactly when the saga moved.
      const rows = inputs.map((i) => ({ saga_id: i.sagaId, version: i.version, dv: i.definitionVersion, input: i.input, result: i.result }));
      ctes.push(`input_ins AS (
        INSERT INTO ${this.inputs} (saga_id, version, definition_version, input, result)
        SELECT u.saga_id, u.version, u.dv, u.input, u.result
        FROM jsonb_to_recordset(${p.add(JSON.stringify(rows), 'jsonb')}) AS u(saga_id uuid, version int, dv int, input jsonb, result jsonb)
        RETURNING 1)`);
    }
    // The version check is a fence on top of the row lock, inside the statement (migrations/0011):
    // if fewer sagas were updated than read, the statement fails and its transaction cannot commit,
    // even when COMMIT was sent right behind it.
    const fence =
      updates.length > 0
        ? `${this.#fence}((SELECT count(*) FROM saga_upd) = ${updates.length}, 'saga version check failed: a saga of the batch changed since it was read')`
        : null;
    return { ctes, fence };
  }

  async get(db: Queryable, id: string): Promise<(SagaInstance & SagaTimes) | null> {
    const { rows } = await db.query<SagaRow & RawTimes>(
      `SELECT ${COLUMNS}, wake_at, created_at, updated_at, finished_at FROM ${this.sagas} WHERE id = $1`,
      [id],
    );
    const r = rows[0];
    return r ? { ...toInstance(r), ...times(r) } : null;
  }

  async history(db: Queryable, sagaId: string): Promise<StepHistoryRow[]> {
    const { rows } = await db.query<StepHistoryRow>(
      `SELECT seq, step_name AS "step", kind, attempt, status, command_id AS "commandId", command_type AS "commandType",
              reply_id AS "replyId", reply_type AS "replyType", kept, error, started_at AS "startedAt", finished_at AS "finishedAt"
       FROM ${this.steps} WHERE saga_id = $1 ORDER BY seq`,
      [sagaId],
    );
    return rows;
  }

  /** The saga's recorded inputs in order (empty when recording was off). */
  async recordedInputs(db: Queryable, sagaId: string): Promise<RecordedInput[]> {
    const { rows } = await db.query<RecordedInput>(
      `SELECT version, definition_version AS "definitionVersion", input, result, at FROM ${this.inputs} WHERE saga_id = $1 ORDER BY version`,
      [sagaId],
    );
    return rows;
  }

  /**
   * Moves a locked saga to another definition version (an operator's migration): new data and
   * state, the version bumped like any transition, a "waiting" marker now naming the new version.
   */
  async setDefinition(
    tx: Queryable,
    w: { id: string; readVersion: number; definitionVersion: number; data: unknown; state: EngineState; input: unknown; result: PathSummary },
  ): Promise<boolean> {
    const { rowCount } = await tx.query(
      `UPDATE ${this.sagas} SET definition_version = $3::int, data = $4::jsonb, state = $5::jsonb, version = version + 1, updated_at = now(),
              -- still waiting (now for the new version) until a worker that has it applies its parked inputs first
              reason = CASE WHEN reason LIKE '${WAITING_PREFIX}%' THEN '${WAITING_PREFIX}' || saga_type || ' v' || $3::text ELSE reason END
       WHERE id = $1 AND version = $2`,
      [w.id, w.readVersion, w.definitionVersion, JSON.stringify(w.data ?? null), JSON.stringify(w.state)],
    );
    if (rowCount !== 1) return false;
    // The migration is part of the saga's history: a replay stops there (later inputs met the new version).
    await tx.query(`INSERT INTO ${this.inputs} (saga_id, version, definition_version, input, result) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)`, [
      w.id,
      w.readVersion + 1,
      w.definitionVersion,
      JSON.stringify(w.input),
      JSON.stringify(w.result),
    ]);
    return true;
  }

  /** Ids of sagas of a type on one definition version that have not ended (migration candidates), oldest first. */
  async unfinishedAt(db: Queryable, type: string, definitionVersion: number, limit: number): Promise<string[]> {
    const { rows } = await db.query<{ id: string }>(
      `SELECT id::text FROM ${this.sagas} WHERE saga_type = $1 AND definition_version = $2 AND status IN ('running', 'compensating', 'failed')
       ORDER BY created_at, id LIMIT $3`,
      [type, definitionVersion, limit],
    );
    return rows.map((r) => r.id);
  }

  async list(db: Queryable, f: SagaFilter): Promise<SagaSummary[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    if (f.status) where.push(`status = $${values.push(f.status)}`);
    if (f.type) where.push(`saga_type = $${values.push(f.type)}`);
    if (f.since) where.push(`created_at >= $${values.push(f.since)}`);
    if (f.before) {
      // keyset pagination on (created_at, id), newest first.
      // Fix (admin HTTP work): created_at has microseconds but a JS Date only milliseconds, so
      // comparing against the Date dropped every row of the page boundary's millisecond (a whole
      // batch shares one now()). Use the boundary row's exact created_at; the Date is the fallback
      // for a boundary row that no longer exists.
      const createdAt = `$${values.push(f.before.createdAt)}::timestamptz`;
      const id = `$${values.push(f.before.id)}::uuid`;
      where.push(`(created_at, id) < (coalesce((SELECT b.created_at FROM ${this.sagas} b WHERE b.id = ${id}), ${createdAt}), ${id})`);
    }
    const { rows } = await db.query<SagaSummary>(
      `SELECT id, saga_type AS "type", status, reason, version, tenant_id AS "tenantId",
              created_at AS "createdAt", updated_at AS "updatedAt", finished_at AS "finishedAt", wake_at AS "wakeAt",
              state->'cursor'->'held'->>'reason' AS "waiting"
       FROM ${this.sagas} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC, id DESC LIMIT $${values.push(f.limit ?? 50)}`,
      values,
    );
    return rows;
  }

  async countByStatus(db: Queryable, ids?: readonly string[]): Promise<Record<SagaStatus, number>> {
    const { rows } = await db.query<{ status: SagaStatus; n: number }>(
      `SELECT status, count(*)::int AS n FROM ${this.sagas} ${ids ? 'WHERE id = ANY($1::uuid[])' : ''} GROUP BY status`,
      ids ? [ids] : [],
    );
    const out: Record<SagaStatus, number> = { running: 0, compensating: 0, completed: 0, compensated: 0, failed: 0 };
    for (const r of rows) out[r.status] = r.n;
    return out;
  }
}

interface RawTimes {
  wake_at: Date | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}
export interface SagaTimes {
  readonly wakeAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly finishedAt: Date | null;
}
function times(r: RawTimes): SagaTimes {
  return { wakeAt: r.wake_at, createdAt: r.created_at, updatedAt: r.updated_at, finishedAt: r.finished_at };
}

export interface SagaFilter {
  readonly status?: SagaStatus;
  readonly type?: string;
  readonly since?: Date;
  readonly before?: { readonly createdAt: Date; readonly id: string };
  readonly limit?: number;
}

export interface SagaSummary {
  readonly id: string;
  readonly type: string;
  readonly status: SagaStatus;
  readonly reason: string | null;
  readonly version: number;
  readonly tenantId: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly finishedAt: Date | null;
  readonly wakeAt: Date | null;
  /** Why a running saga's next attempt waits at a gate (`waiting: circuit payment open`), else null. */
  readonly waiting: string | null;
}

export interface RecordedInput {
  readonly version: number;
  readonly definitionVersion: number;
  readonly input: { readonly kind: string } & Record<string, unknown>;
  readonly result: PathSummary;
  readonly at: Date;
}

export interface StepHistoryRow {
  readonly seq: number;
  readonly step: string;
  readonly kind: string;
  readonly attempt: number;
  readonly status: string;
  readonly commandId: string | null;
  readonly commandType: string | null;
  readonly replyId: string | null;
  readonly replyType: string | null;
  readonly kept: unknown;
  readonly error: string | null;
  readonly startedAt: Date;
  readonly finishedAt: Date | null;
}
