import type { Db } from '../db/db.js';
import { quoteSchema } from '../db/db.js';
import { InboxStore } from '../inbox/store.js';
import type { Logger } from '../log.js';

/**
 * How long finished work is kept. Hot tables (sagas, saga_steps, inbox) grow with every saga; a
 * worker at hundreds of sagas per second would carry billions of rows within weeks. Pruning keeps
 * them at the size of the retention window.
 */
export interface RetentionPolicy {
  /** Completed and compensated sagas with their steps, counted from finished_at. */
  readonly finishedSagasMs: number;
  /** Failed sagas are kept longer: an operator may still replay them. */
  readonly failedSagasMs: number;
  /**
   * Inbox rows. A message redelivered after its inbox row is gone is applied again, so this must
   * exceed the longest time a message can wait in the broker (queue TTL, Kafka retention, a
   * consumer reset to earliest). A start command for a saga still in the sagas table stays
   * harmless (the saga id is derived from it), which is why the saga windows should be longer.
   * Workers prune their inbox rows by this window themselves (after activity); prune does too.
   */
  readonly inboxMs: number;
  /** Dead letters already redriven or discarded (new ones are never pruned). */
  readonly resolvedDeadLettersMs: number;
  readonly auditMs: number;
}

const DAY = 86_400_000;
export const DEFAULT_RETENTION: RetentionPolicy = {
  finishedSagasMs: 30 * DAY,
  failedSagasMs: 90 * DAY,
  inboxMs: 7 * DAY,
  resolvedDeadLettersMs: 30 * DAY,
  auditMs: 365 * DAY,
};

export type PrunedTable = 'sagas' | 'saga_steps' | 'inbox' | 'dead_letters' | 'audit_log';
export type PruneResult = Record<PrunedTable, number>;

export interface PruneOptions {
  readonly policy: RetentionPolicy;
  /** Rows per transaction: small, so no lock is held long and replication lag stays flat. */
  readonly batchSize?: number;
  /** Count what would go, delete nothing. */
  readonly dryRun?: boolean;
  readonly logger?: Logger;
  /** Stop early (e.g. on SIGTERM); what was deleted so far stays deleted. */
  readonly signal?: AbortSignal;
}

/**
 * Deletes what the policy no longer keeps, in small transactions. Ages are compared with the
 * database clock, like every timer. Sagas are locked with SKIP LOCKED and their terminal status is
 * checked again under the lock, so a saga being replayed at this moment is left alone; a saga and
 * its steps go in the same transaction.
 */
export async function prune(db: Db, schema: string, opts: PruneOptions): Promise<PruneResult> {
  const s = quoteSchema(schema);
  const n = opts.batchSize ?? 2_000;
  const p = opts.policy;
  const result: PruneResult = { sagas: 0, saga_steps: 0, inbox: 0, dead_letters: 0, audit_log: 0 };

  if (opts.dryRun) {
    const count = async (sql: string, ms: number) =>
      Number((await db.query<{ n: string }>(`SELECT count(*)::bigint AS n FROM ${sql}`, [`${ms} milliseconds`])).rows[0]!.n);
    const sagaWhere = `${s}.sagas WHERE finished_at < now() - $1::interval`;
    result.sagas =
      (await count(`${sagaWhere} AND status IN ('completed', 'compensated')`, p.finishedSagasMs)) +
      (await count(`${sagaWhere} AND status = 'failed'`, p.failedSagasMs));
    result.saga_steps =
      (await count(`${s}.saga_steps WHERE saga_id IN (SELECT id FROM ${sagaWhere} AND status IN ('completed', 'compensated'))`, p.finishedSagasMs)) +
      (await count(`${s}.saga_steps WHERE saga_id IN (SELECT id FROM ${sagaWhere} AND status = 'failed')`, p.failedSagasMs));
    result.inbox = await count(`${s}.inbox WHERE received_at < now() - $1::interval`, p.inboxMs);
    result.dead_letters = await count(`${s}.dead_letters WHERE status <> 'new' AND resolved_at < now() - $1::interval`, p.resolvedDeadLettersMs);
    result.audit_log = await count(`${s}.audit_log WHERE at < now() - $1::interval`, p.auditMs);
    return result;
  }

  // One batch per transaction until a batch comes back short.
  const drain = async (label: PrunedTable, batch: () => Promise<number>) => {
    for (;;) {
      if (opts.signal?.aborted) return;
      const deleted = await batch();
      result[label] += deleted;
      if (deleted < n) return;
    }
  };

  const sagaBatch = (statuses: string, ms: number) => () =>
    db.transaction(async (tx) => {
      const { rows } = await tx.query<{ sagas: string; steps: string }>(
        `WITH doomed AS (
           SELECT id FROM ${s}.sagas
            WHERE finished_at < now() - $1::interval AND status IN (${statuses})
            ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED
         ), steps AS (
           DELETE FROM ${s}.saga_steps WHERE saga_id IN (SELECT id FROM doomed) RETURNING 1
         ), inputs AS (
           -- its recorded inputs (history export) go with it; counted with the saga, not reported apart
           DELETE FROM ${s}.saga_inputs WHERE saga_id IN (SELECT id FROM doomed) RETURNING 1
         ), gone AS (
           DELETE FROM ${s}.sagas WHERE id IN (SELECT id FROM doomed) RETURNING 1
         )
         SELECT (SELECT count(*) FROM gone)::bigint AS sagas, (SELECT count(*) FROM steps)::bigint AS steps`,
        [`${ms} milliseconds`, n],
      );
      result.saga_steps += Number(rows[0]!.steps);
      return Number(rows[0]!.sagas);
    });
  await drain('sagas', sagaBatch(`'completed', 'compensated'`, p.finishedSagasMs));
  await drain('sagas', sagaBatch(`'failed'`, p.failedSagasMs));

  const simpleBatch = (table: string, where: string, ms: number) => () =>
    db.transaction(async (tx) => {
      const r = await tx.query(
        `DELETE FROM ${s}.${table} WHERE ctid IN (
           SELECT ctid FROM ${s}.${table} WHERE ${where} LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [`${ms} milliseconds`, n],
      );
      return r.rowCount ?? 0;
    });
  const inbox = new InboxStore(schema);
  await drain('inbox', () => inbox.prune(db, p.inboxMs, n));
  await drain('dead_letters', simpleBatch('dead_letters', `status <> 'new' AND resolved_at < now() - $1::interval`, p.resolvedDeadLettersMs));
  await drain('audit_log', simpleBatch('audit_log', 'at < now() - $1::interval', p.auditMs));

  opts.logger?.info({ event: 'pruned', ...result }, 'pruned finished work');
  return result;
}
