import type { Db } from '../db/db.js';
import { NotFoundError, RefusedError, SagaflowError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { OutboxStore } from '../outbox/store.js';
import type { SagaDefinition } from '../saga/definition.js';
import { migrateInstance, type SagaMigration } from '../saga/migration.js';
import { PendingInputStore } from '../saga/pending-store.js';
import { TERMINAL_STATUSES } from '../saga/state.js';
import { SagaStore } from '../saga/store.js';
import { DefinitionSet } from '../saga/versions.js';
import { AuditLog } from './audit.js';
import type { Actor } from './saga-ops.js';

export interface MigrateRequest {
  readonly type: string;
  readonly from: number;
  readonly to: number;
  readonly dryRun?: boolean | undefined;
  readonly reason?: string | undefined;
  /** At most this many sagas (default 10 000). */
  readonly limit?: number | undefined;
}

export interface MigrateResult {
  readonly sagaId: string;
  readonly outcome: 'accepted' | 'dry-run' | 'refused' | 'skipped';
  /** Where the saga is, in the target version's step names (accepted, dry-run). */
  readonly at?: string | null;
  readonly message?: string;
  readonly auditId?: string;
}

/**
 * `sagaflow sagas migrate`: moves unfinished sagas from one definition version to another with the
 * module's own mapping, one saga per transaction under its row lock (a worker cannot advance it
 * meanwhile, and one that locks it next sees the new version). Every saga's outcome is audited;
 * one refusal does not stop the others.
 */
export class SagaMigrations {
  readonly #sagas: SagaStore;
  readonly #audit: AuditLog;
  readonly #pending: PendingInputStore;
  readonly #channel: string;
  readonly #defs: DefinitionSet;

  constructor(
    private readonly deps: {
      db: Db;
      schema: string;
      sagas: readonly SagaDefinition<any, any>[];
      migrations: readonly SagaMigration[];
      logger: Logger;
    },
  ) {
    this.#sagas = new SagaStore(deps.schema);
    this.#audit = new AuditLog(deps.schema);
    this.#pending = new PendingInputStore(deps.schema);
    this.#channel = new OutboxStore(deps.schema).channel;
    this.#defs = new DefinitionSet(deps.sagas);
  }

  async run(req: MigrateRequest, actor: Actor): Promise<MigrateResult[]> {
    const { db } = this.deps;
    const label = `${req.type} v${req.from} -> v${req.to}`;
    const m = this.deps.migrations.find((x) => x.saga === req.type && x.from === req.from && x.to === req.to);
    const to = this.#defs.get(req.type, req.to);
    const from = this.#defs.get(req.type, req.from);
    const missing = !m
      ? `the module exports no migration ${label} (add one to its \`migrations\`)`
      : !from || !to
        ? `the module does not define ${!from ? `v${req.from}` : `v${req.to}`} of ${req.type}`
        : undefined;
    if (missing) {
      await this.#audit.record(db, { actor: actor.name, action: 'migrate', targetType: 'saga', targetId: label, reason: req.reason, requestId: actor.requestId, outcome: 'refused', detail: { message: missing } });
      throw new RefusedError('NOT_FOUND', missing);
    }
    const ids = await this.#sagas.unfinishedAt(db, req.type, req.from, req.limit ?? 10_000);
    const results: MigrateResult[] = [];
    for (const id of ids) results.push(await this.#one(id, m!, from!, to!, req, actor));
    return results;
  }

  async #one(sagaId: string, m: SagaMigration, from: SagaDefinition, to: SagaDefinition, req: MigrateRequest, actor: Actor): Promise<MigrateResult> {
    const { db } = this.deps;
    const base = { actor: actor.name, action: 'migrate' as const, targetType: 'saga' as const, targetId: sagaId, reason: req.reason, requestId: actor.requestId };
    const detail = { type: req.type, from: req.from, to: req.to };
    try {
      return await db.transaction(async (tx) => {
        const inst = (await this.#sagas.lockMany(tx, [sagaId])).get(sagaId);
        if (!inst) throw new NotFoundError(`no saga ${sagaId}`);
        if (inst.definitionVersion !== req.from || (TERMINAL_STATUSES.has(inst.status) && inst.status !== 'failed')) {
          // Moved or finished since it was listed: nothing to do, nothing to audit.
          return { sagaId, outcome: 'skipped' as const, message: `now ${inst.status} on v${inst.definitionVersion}` };
        }
        const r = migrateInstance(m, from, to, inst);
        if (!r.ok) throw new RefusedError('INVALID_STATE', r.reason);
        const at = r.state.cursor ? `${r.state.cursor.step} (${r.state.cursor.phase})` : null;
        if (req.dryRun) {
          const auditId = await this.#audit.record(tx, { ...base, outcome: 'dry-run', detail: { ...detail, at } });
          return { sagaId, outcome: 'dry-run' as const, at, auditId };
        }
        const cursor = r.state.cursor;
        const moved = await this.#sagas.setDefinition(tx, {
          id: sagaId,
          readVersion: inst.version,
          definitionVersion: req.to,
          data: r.data,
          state: r.state,
          input: { kind: 'migrate', from: req.from, to: req.to },
          result: {
            outcome: 'applied',
            code: null,
            status: inst.status,
            at: cursor ? { step: cursor.step, phase: cursor.phase, attempt: cursor.attempt, waiting: cursor.waiting } : null,
            commands: [],
            local: null,
          },
        });
        if (!moved) throw new SagaflowError('CONCURRENT_UPDATE', `saga ${sagaId} changed while it was migrated`, { retryable: true });
        // Inputs parked while no worker had v<from> now belong to a worker with v<to>: wake them at COMMIT.
        await this.#pending.notify(tx, this.#channel);
        const auditId = await this.#audit.record(tx, { ...base, outcome: 'accepted', detail: { ...detail, at } });
        this.deps.logger.info({ sagaId, actor: actor.name, from: req.from, to: req.to }, 'saga migrated to another definition version');
        return { sagaId, outcome: 'accepted' as const, at, auditId };
      });
    } catch (err) {
      if (!(err instanceof RefusedError || err instanceof NotFoundError)) throw err;
      const auditId = await this.#audit.record(db, { ...base, outcome: 'refused', detail: { ...detail, code: err.code, message: errorMessage(err) } });
      return { sagaId, outcome: 'refused', message: err.message, auditId };
    }
  }
}
