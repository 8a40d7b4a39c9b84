import type { Db, Queryable } from '../db/db.js';
import { NotFoundError, RefusedError, SagaflowError } from '../errors.js';
import type { Logger } from '../log.js';
import { OutboxStore } from '../outbox/store.js';
import type { SagaDefinition } from '../saga/definition.js';
import { decide, type Decision, type SagaInput } from '../saga/engine.js';
import { STEP_HEADERS, type SagaStatus } from '../saga/state.js';
import { SagaStore } from '../saga/store.js';
import { DefinitionSet, WAITING_PREFIX } from '../saga/versions.js';
import { TransitionBatch, type TransitionSettings } from '../transaction/transitions.js';
import { AuditLog, type AuditAction } from './audit.js';

/**
 * Operator actions on sagas: replay and cancel. Each is a state transition decided by the same
 * engine as any message, under the saga's row lock, so it cannot race a worker advancing the same
 * saga or a second replay: the second one finds the saga running and is refused. Commands they
 * cause go through the outbox (due at once, with NOTIFY), so the CLI needs no broker connection.
 */
export interface Actor {
  /** Who: the admin token's name, or the OS user for the CLI. */
  readonly name: string;
  readonly requestId?: string | undefined;
}

export interface PlannedCommand {
  readonly type: string;
  readonly topic: string;
  readonly step: string | undefined;
  readonly phase: string | undefined;
  readonly payload: unknown;
}

export interface Plan {
  readonly sagaId: string;
  readonly sagaType: string;
  readonly from: SagaStatus;
  readonly to: SagaStatus;
  /** The step (and phase) the saga resumes at. */
  readonly resumeAt: { readonly step: string; readonly phase: string } | null;
  /** Steps that already succeeded and will run again (only with --from-step --force). */
  readonly rerunSucceeded: readonly string[];
  readonly commands: readonly PlannedCommand[];
  /** A local step runs in the worker's transaction: named here, not run by a dry run. */
  readonly localStep: string | undefined;
}

export interface ActionResult {
  readonly outcome: 'accepted' | 'dry-run' | 'duplicate';
  readonly plan: Plan | undefined;
  readonly auditId: string;
}

export interface ReplayOptions {
  readonly fromStep?: string | undefined;
  readonly force?: boolean | undefined;
  readonly dryRun?: boolean | undefined;
  readonly reason?: string | undefined;
}

export interface BulkFilter {
  readonly type?: string | undefined;
  readonly since?: Date | undefined;
  readonly limit?: number | undefined;
}

export interface BulkResult {
  readonly sagaId: string;
  readonly outcome: ActionResult['outcome'] | 'refused' | 'error';
  readonly code?: string;
  readonly message?: string;
  readonly plan?: Plan | undefined;
}

export class SagaOperations {
  readonly #sagas: SagaStore;
  readonly #outbox: OutboxStore;
  readonly #audit: AuditLog;
  readonly #defs: DefinitionSet;

  constructor(
    private readonly deps: {
      db: Db;
      schema: string;
      sagas: readonly SagaDefinition<any, any>[];
      transitions: TransitionSettings;
      logger: Logger;
    },
  ) {
    this.#sagas = new SagaStore(deps.schema);
    this.#outbox = new OutboxStore(deps.schema);
    this.#audit = new AuditLog(deps.schema);
    this.#defs = new DefinitionSet(deps.sagas);
  }

  replay(sagaId: string, actor: Actor, opts: ReplayOptions = {}): Promise<ActionResult> {
    const input: SagaInput = { kind: 'replay', ...(opts.fromStep ? { fromStep: opts.fromStep } : {}), ...(opts.force ? { force: true } : {}) };
    return this.#act('replay', sagaId, actor, input, { dryRun: opts.dryRun, reason: opts.reason, detail: { fromStep: opts.fromStep, force: opts.force } });
  }

  cancel(sagaId: string, actor: Actor, opts: { reason: string; dryRun?: boolean }): Promise<ActionResult> {
    if (!opts.reason?.trim()) throw new SagaflowError('USAGE', 'a cancel needs a reason');
    return this.#act('cancel', sagaId, actor, { kind: 'cancel', reason: opts.reason }, { dryRun: opts.dryRun, reason: opts.reason, detail: {} });
  }

  /** Replays every failed saga matching the filter, one transaction each; one refusal does not stop the rest. */
  async replayFailed(filter: BulkFilter, actor: Actor, opts: ReplayOptions = {}): Promise<BulkResult[]> {
    const ids: string[] = [];
    const limit = filter.limit ?? 1000;
    let before: { createdAt: Date; id: string } | undefined;
    while (ids.length < limit) {
      const page = await this.#sagas.list(this.deps.db, {
        status: 'failed',
        ...(filter.type ? { type: filter.type } : {}),
        ...(filter.since ? { since: filter.since } : {}),
        ...(before ? { before } : {}),
        limit: Math.min(500, limit - ids.length),
      });
      if (page.length === 0) break;
      ids.push(...page.map((s) => s.id));
      const last = page.at(-1)!;
      before = { createdAt: last.createdAt, id: last.id };
    }
    const results: BulkResult[] = [];
    for (const id of ids) {
      try {
        const r = await this.replay(id, actor, opts);
        results.push({ sagaId: id, outcome: r.outcome, plan: r.plan });
      } catch (err) {
        const refused = err instanceof RefusedError || err instanceof NotFoundError;
        results.push({
          sagaId: id,
          outcome: refused ? 'refused' : 'error',
          code: err instanceof SagaflowError ? err.code : 'ERROR',
          message: (err as Error).message,
        });
      }
    }
    return results;
  }

  async #act(
    action: AuditAction,
    sagaId: string,
    actor: Actor,
    input: SagaInput,
    opts: { dryRun?: boolean | undefined; reason?: string | undefined; detail: Record<string, unknown> },
  ): Promise<ActionResult> {
    const { db } = this.deps;
    const base = { actor: actor.name, action, targetType: 'saga' as const, targetId: sagaId, reason: opts.reason, requestId: actor.requestId };
    try {
      return await db.transaction(async (tx) => {
        const loaded = await this.#sagas.lockMany(tx, [sagaId]);
        const inst = loaded.get(sagaId);
        if (!inst) throw new NotFoundError(`no saga ${sagaId}`);
        // Checked under the saga's lock: a concurrent request with the same id has committed by now.
        if (actor.requestId && !opts.dryRun) {
          const earlier = await this.#audit.accepted(tx, action, sagaId, actor.requestId);
          if (earlier) {
            const auditId = await this.#audit.record(tx, { ...base, outcome: 'duplicate', detail: { ...opts.detail, earlierAuditId: earlier.id } });
            return { outcome: 'duplicate' as const, plan: (earlier.detail as { plan?: Plan }).plan, auditId };
          }
        }
        if (!this.#defs.newest(inst.type)) throw new RefusedError('INVALID_STATE', `saga ${sagaId} is a ${inst.type}, which this module does not define`);
        // Only ever decided by the version the saga runs on; and not ahead of inputs parked for it.
        const def = this.#defs.get(inst.type, inst.definitionVersion);
        if (!def) {
          throw new RefusedError('DEFINITION_MISMATCH', `saga ${sagaId} runs on ${inst.type} v${inst.definitionVersion}, which this module does not define (it has v${this.#defs.versions(inst.type).join(', v')}); migrate it or use a module that has that version`);
        }
        if (inst.reason?.startsWith(WAITING_PREFIX)) {
          throw new RefusedError('INVALID_STATE', `saga ${sagaId} is ${inst.reason}: a worker with that version must apply its parked inputs first`);
        }
        // A dry run decides without running anything (no local step is executed, nothing is written).
        const preview = decide(def, inst, input, this.deps.transitions.decide);
        if (preview.outcome !== 'applied') throw refusal(preview);
        const plan = planOf(def, inst.status, preview);
        if (opts.dryRun) {
          const auditId = await this.#audit.record(tx, { ...base, outcome: 'dry-run', detail: { ...opts.detail, plan } });
          return { outcome: 'dry-run' as const, plan, auditId };
        }
        const tr = new TransitionBatch(this.deps.transitions, loaded);
        await tr.apply(tx, def, sagaId, input, { messageId: undefined });
        await tr.write(tx, { sagas: this.#sagas, outbox: this.#outbox, graceMs: 0 });
        // Wakes the workers' relays (and, through them, their timers) at COMMIT.
        await notify(tx, this.#outbox.channel);
        const auditId = await this.#audit.record(tx, { ...base, outcome: 'accepted', detail: { ...opts.detail, plan } });
        this.deps.logger.info({ sagaId, action, actor: actor.name, to: plan.to }, 'operator action applied');
        return { outcome: 'accepted' as const, plan, auditId };
      });
    } catch (err) {
      if (err instanceof RefusedError || err instanceof NotFoundError) {
        // The refusal is recorded outside the rolled-back transaction.
        await this.#audit.record(db, { ...base, outcome: 'refused', detail: { ...opts.detail, code: err.code, message: err.message } });
      }
      throw err;
    }
  }
}

export async function notify(tx: Queryable, channel: string, payload = 'operator'): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

function refusal(d: Decision): RefusedError | NotFoundError {
  if (d.outcome === 'applied') return new RefusedError('INVALID_STATE', 'refused');
  if (d.code === 'NOT_FOUND') return new NotFoundError(d.message ?? 'not found');
  // An ignored input (a duplicate) is refused as "nothing to do in this state".
  return new RefusedError(d.outcome === 'rejected' ? d.code : 'INVALID_STATE', d.message ?? 'refused');
}

function planOf(def: SagaDefinition, from: SagaStatus, d: Decision): Plan {
  const inst = d.instance!;
  const replayed = d.events.find((e) => e.type === 'SagaReplayed');
  const cursor = inst.state.cursor;
  return {
    sagaId: inst.id,
    sagaType: def.name,
    from,
    to: inst.status,
    resumeAt: cursor ? { step: cursor.step, phase: cursor.phase } : null,
    rerunSucceeded: ((replayed?.payload as { rerun?: string[] } | undefined)?.rerun ?? []).slice(),
    commands: d.commands.map((c) => ({
      type: c.message.type,
      topic: c.message.topic!,
      step: c.headers[STEP_HEADERS.step],
      phase: c.headers[STEP_HEADERS.phase],
      payload: c.payload,
    })),
    localStep: d.runLocal?.step,
  };
}
