import type { Queryable } from '../db/db.js';
import type { DeadLetterRecorder } from '../dead-letters/recorder.js';
import type { Logger } from '../log.js';
import type { PendingInput, PendingInputStore } from '../saga/pending-store.js';
import type { SagaInstance } from '../saga/state.js';
import { waitingReason, type DefinitionKey, type DefinitionSet } from '../saga/versions.js';
import { H } from '../transport/contract.js';
import type { TransitionBatch } from './transitions.js';

/** What the message and timer paths need to honour definition versions. */
export interface VersionDeps {
  readonly defs: DefinitionSet;
  readonly pending: PendingInputStore;
  readonly recorder: DeadLetterRecorder;
  readonly logger: Logger;
  /** Warns once per saga type and version a worker meets without having it. */
  readonly warnMissing: (key: DefinitionKey, sagaId: string) => void;
}

/** A warner that says once per type and version (per process) that sagas wait for a definition. */
export function warnOnce(logger: Logger, have: DefinitionSet): (key: DefinitionKey, sagaId: string) => void {
  const warned = new Set<string>();
  return (key, sagaId) => {
    const k = `${key.type} v${key.version}`;
    if (warned.has(k)) return;
    warned.add(k);
    logger.warn(
      { sagaType: key.type, definitionVersion: key.version, versionsHere: have.versions(key.type), sagaId },
      `${waitingReason(key)}: this worker does not have it, so such sagas are left untouched (their inputs kept) for a worker that does`,
    );
  };
}

/** Whether this worker can drive the saga: it has the definition version the saga started on (or was migrated to). */
export function canDrive(defs: DefinitionSet, inst: SagaInstance): boolean {
  return defs.get(inst.type, inst.definitionVersion) !== undefined;
}

/**
 * Sagas just locked that a worker without their version had marked: put their own reason back
 * (in the map too) and return their ids, whose parked inputs the caller applies first.
 */
export async function resumeWaiting(tx: Queryable, deps: VersionDeps, loaded: Map<string, SagaInstance>): Promise<string[]> {
  const drivable = [...loaded.values()].filter((s) => canDrive(deps.defs, s));
  const resumed = await deps.pending.resume(tx, drivable);
  for (const s of resumed) loaded.set(s.id, s);
  return resumed.map((s) => s.id);
}

/**
 * Applies the parked inputs of these (locked, drivable) sagas in arrival order, before anything
 * else happens to them. An input that is now rejected cannot go back to the broker (it was acked
 * when parked): it becomes a dead letter here, in the same transaction, so it is still not lost.
 */
export async function applyPending(tx: Queryable, deps: VersionDeps, tr: TransitionBatch, sagaIds: readonly string[]): Promise<number> {
  const inputs = await deps.pending.take(tx, sagaIds);
  for (const p of inputs) {
    const inst = tr.instance(p.sagaId);
    const def = inst ? deps.defs.get(inst.type, inst.definitionVersion) : undefined;
    if (!inst || !def) {
      // Migrated away or deleted since: keep it parked for whoever can drive it.
      await deps.pending.park(tx, [p]);
      continue;
    }
    const d = await tr.apply(tx, def, p.sagaId, p.input, { messageId: p.messageId });
    if (d.outcome === 'rejected') {
      await deps.recorder.record(tx, deadLetterOf(p, d.code, d.message ?? d.code));
      deps.logger.warn({ sagaId: p.sagaId, messageId: p.messageId, code: d.code }, 'parked input rejected once its definition was here; dead-lettered');
    }
  }
  if (inputs.length > 0) deps.logger.info({ sagas: sagaIds.length, inputs: inputs.length }, 'parked inputs applied: their definition version is here');
  return inputs.length;
}

function deadLetterOf(p: PendingInput, code: string, error: string) {
  return {
    topic: p.topic,
    key: p.sagaId,
    id: p.messageId,
    type: undefined,
    body: p.body,
    headers: { ...p.headers, [H.messageId]: p.messageId, [H.reason]: code, [H.error]: error, [H.consumer]: p.consumer, [H.originalTopic]: p.topic },
    attempt: 1,
    redelivered: false,
  };
}
