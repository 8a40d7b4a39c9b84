import { PermanentError, RetryableError } from '../errors.js';
import type { InboxStore } from '../inbox/store.js';
import type { Logger } from '../log.js';
import type { OutboxStore } from '../outbox/store.js';
import type { Queryable } from '../db/db.js';
import type { SagaInstance } from '../saga/state.js';
import { sagaIdFor, type RejectionCode, type SagaInput } from '../saga/engine.js';
import { START_HEADERS, STEP_HEADERS } from '../saga/state.js';
import type { SagaStore } from '../saga/store.js';
import { claimBatch } from './claim.js';
import type { Inbound } from './decode.js';
import { TransitionBatch, type AppliedDecision, type TransitionSettings } from './transitions.js';
import type { Work } from './run.js';
import { APPLIED, failed } from './outcome.js';
import { applyPending, resumeWaiting, type VersionDeps } from './waiting.js';
import type { PendingInput } from '../saga/pending-store.js';
import { waitingReason } from '../saga/versions.js';
import type { SagaTracing } from '../observability/tracing.js';

export interface SagaConsumerDeps {
  /** The saga type this orchestrator runs: new sagas start on its newest version in `versions.defs`. */
  readonly type: string;
  readonly versions: VersionDeps;
  readonly sagas: SagaStore;
  readonly inbox: InboxStore;
  readonly outbox: OutboxStore;
  readonly graceMs: number;
  readonly transitions: TransitionSettings;
  readonly logger: Logger;
  readonly onApplied: (applied: readonly AppliedDecision[]) => void;
  readonly tracing?: SagaTracing | undefined;
}

/** Codes a decision can reject with that are worth a later retry (the reply may beat its saga's commit). */
const RETRYABLE_REJECTIONS: ReadonlySet<RejectionCode> = new Set(['UNKNOWN_SAGA']);

/**
 * The orchestrator's transaction over a batch of start messages and replies, (docs/architecture.md, "The transaction, in detail"):
 * claim in the inbox, lock the sagas, decide, save, write the outbox - for all of them at once.
 */
export function sagaWork(deps: SagaConsumerDeps): Work<Inbound> {
  const { logger } = deps;
  const def = deps.versions.defs.newest(deps.type)!;
  const sagaIdOf = (item: Inbound) => (item.envelope.type === def.start.type ? (item.envelope.sagaId ?? sagaIdFor(item.envelope.id)) : item.envelope.sagaId);
  return async (tx, items, deletes) => {
    // Claim and lock are issued together: the connection pipelines them (Postgres still runs the
    // claim first, so locks are taken in the same order as before) and the batch saves a round
    // trip. The lock covers the sagas of every message; those of duplicates are left out below.
    const claiming = claimBatch(tx, deps.inbox, def.consumer, items, logger);
    const locking = deps.sagas.lockMany(tx, items.map(sagaIdOf).filter((id): id is string => id !== undefined));
    const [{ outcomes, claimed }, locked] = await Promise.all([claiming, locking]);
    const work: { index: number; item: Inbound; sagaId: string }[] = [];
    const release: string[] = [];
    for (const { index: i, item } of claimed) {
      const id = item.envelope.id;
      const sagaId = sagaIdOf(item);
      if (!sagaId) {
        outcomes.set(i, failed(new PermanentError('INVALID_ENVELOPE', `${item.envelope.type} has no sagaId; replies must name their saga`)));
        release.push(id);
        continue;
      }
      work.push({ index: i, item, sagaId });
    }
    const loaded = new Map(work.flatMap((w) => (locked.has(w.sagaId) ? [[w.sagaId, locked.get(w.sagaId)!] as const] : [])));
    // Sagas a worker without their version had marked: their parked inputs go first, in order.
    const resumed = await resumeWaiting(tx, deps.versions, loaded);
    const tr = new TransitionBatch(deps.transitions, loaded);
    if (resumed.length > 0) await applyPending(tx, deps.versions, tr, resumed);
    const parked: PendingInput[] = [];
    for (const { index, item, sagaId } of work) {
      const env = item.envelope;
      const current = tr.instance(sagaId);
      // Each saga is driven by the version it started on; a start always makes a saga of the newest.
      const own = current && current.type === def.name && env.type !== def.start.type ? deps.versions.defs.get(current.type, current.definitionVersion) : def;
      const input: SagaInput =
        env.type === def.start.type
          ? { kind: 'start', sagaId, messageId: env.id, tenantId: env.tenantId, correlationId: env.correlationId, payload: item.payload, ...startDeadline(env.headers) }
          : {
              kind: 'reply',
              messageId: env.id,
              type: env.type,
              tenantId: env.tenantId,
              causationId: env.causationId,
              headers: env.headers ?? {},
              payload: item.payload,
            };
      if (!own) {
        // Not ours to drive: keep the input, leave the saga as it is.
        parked.push({ sagaId, messageId: env.id, consumer: def.consumer, topic: item.delivery.topic, input, headers: { ...item.delivery.headers }, body: item.delivery.body });
        // Kept in the same transaction as its inbox claim: acked exactly when it is safe.
        outcomes.set(index, { kind: 'applied', note: 'PARKED_FOR_DEFINITION' });
        continue;
      }
      const span = deps.tracing?.sagaMessage(own.name, sagaId, env, input.kind === 'start' ? 'start' : 'reply');
      let d: Awaited<ReturnType<TransitionBatch['apply']>>;
      try {
        d = await tr.apply(tx, own, sagaId, input, { messageId: env.id, trace: span });
      } catch (err) {
        span?.end(err);
        throw err;
      }
      span?.end();
      // Which step and attempt the message concerns: the reply's own headers, else where the saga is.
      // Built only for a message that is logged (most are applied without a word).
      const log = () => {
        const cursor = (d.instance ?? tr.instance(sagaId))?.state.cursor;
        const headers = env.headers ?? {};
        return { sagaId, messageId: env.id, type: env.type, code: d.code, step: headers[STEP_HEADERS.step] ?? cursor?.step, attempt: headers[STEP_HEADERS.attempt] ?? cursor?.attempt };
      };
      if (d.outcome === 'rejected') {
        const code = d.code;
        outcomes.set(
          index,
          failed(RETRYABLE_REJECTIONS.has(code) ? new RetryableError(code, d.message ?? code) : new PermanentError(code, d.message ?? code)),
        );
        release.push(env.id);
        logger.warn(log(), d.message ?? 'message rejected');
      } else if (d.outcome === 'ignored') {
        outcomes.set(index, { kind: 'applied', note: d.code });
        logger.info(log(), d.message ?? 'message ignored');
      } else {
        outcomes.set(index, d.code ? { kind: 'applied', note: d.code } : APPLIED);
        if (d.code) logger.info(log(), d.message ?? d.code);
      }
    }
    await parkInputs(tx, deps, parked, (id) => tr.instance(id)!);
    await deps.inbox.release(tx, def.consumer, release);
    // The last statement: COMMIT rides with it (one round trip fewer per batch).
    const written = await tr.write(tx, { sagas: deps.sagas, outbox: deps.outbox, graceMs: deps.graceMs }, deletes, { last: true });
    return {
      outcomes: outcomes.all(),
      written,
      committed: () => {
        tr.committed();
        deps.onApplied(tr.applied);
      },
    };
  };
}

/** A start message's own deadline (header sagaflow-deadline-ms); a malformed one is ignored, the definition's applies. */
function startDeadline(headers: Readonly<Record<string, string>> | undefined): { deadlineMs?: number } {
  const raw = headers?.[START_HEADERS.deadlineMs];
  const ms = raw === undefined ? NaN : Number(raw);
  return Number.isFinite(ms) && ms > 0 ? { deadlineMs: ms } : {};
}

/** Keeps inputs for sagas of a version this worker lacks, marks those sagas and warns once per version. */
async function parkInputs(tx: Queryable, deps: SagaConsumerDeps, parked: readonly PendingInput[], instance: (id: string) => SagaInstance): Promise<void> {
  if (parked.length === 0) return;
  await deps.versions.pending.park(tx, parked, deps.outbox.channel);
  const sagas = [...new Set(parked.map((p) => p.sagaId))].map(instance);
  const marked = await deps.versions.pending.markWaiting(
    tx,
    sagas.map((s) => ({ sagaId: s.id, reason: waitingReason({ type: s.type, version: s.definitionVersion }) })),
  );
  for (const s of sagas) {
    deps.versions.warnMissing({ type: s.type, version: s.definitionVersion }, s.id);
    deps.logger.debug({ sagaId: s.id, newlyMarked: marked.includes(s.id) }, 'input parked: the saga waits for its definition version');
  }
}
