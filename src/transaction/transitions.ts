import { DEFAULT_EVENTS_TOPIC } from '../config.js';
import type { Queryable, Tx } from '../db/db.js';
import { errorMessage } from '../errors.js';
import type { Envelope } from '../messages/envelope.js';
import { DEFAULT_WIRE_FORMAT, type WireFormat } from '../messages/wire.js';
import { outgoing } from './outgoing.js';
import type { SagaDefinition } from '../saga/definition.js';
import { decide, type Decision, type DecideContext, type EventIntent, type Hold, type SagaInput } from '../saga/engine.js';
import type { SagaInstance } from '../saga/state.js';
import type { InputRowWrite, SagaWrite, StepRowWrite } from '../saga/store.js';
import { pathOf } from '../saga/path.js';
import type { OutgoingMessage } from '../transport/contract.js';
import type { WrittenMessage } from '../outbox/dispatcher.js';
import type { TransitionTrace } from '../observability/tracing.js';
import type { GateTx, Gates } from './gates.js';
import { writeBatch, type WriteStores } from './write.js';

export type EventsMode = 'all' | 'terminal' | 'none';
const TERMINAL_EVENTS = new Set(['SagaCompleted', 'SagaCompensated', 'SagaFailed']);

export interface TransitionSettings {
  readonly eventsTopic: string;
  readonly events: EventsMode;
  readonly decide: DecideContext;
  readonly wireFormat: WireFormat;
  /** Circuit breakers and limits; none: every command is sent at once. */
  readonly gates?: Gates | undefined;
  /** Keep every applied input with its path (saga_inputs), for `sagaflow history export`. */
  readonly recordInputs: boolean;
  /** Where participants send replies: the saga's own topic, or a replies topic of its own (see worker option replyQueue). */
  readonly replyTopic?: ((def: SagaDefinition) => string) | undefined;
}

/** The one place the transition settings get their defaults (worker, timers, operator actions, admin API). */
export function transitionSettings(
  o: {
    eventsTopic?: string | undefined;
    events?: EventsMode | undefined;
    random?: (() => number) | undefined;
    wireFormat?: WireFormat | undefined;
    gates?: Gates | undefined;
    recordInputs?: boolean | undefined;
    replyTopic?: ((def: SagaDefinition) => string) | undefined;
  } = {},
): TransitionSettings {
  return {
    eventsTopic: o.eventsTopic ?? DEFAULT_EVENTS_TOPIC,
    events: o.events ?? 'all',
    decide: { random: o.random ?? Math.random },
    wireFormat: o.wireFormat ?? DEFAULT_WIRE_FORMAT,
    gates: o.gates,
    recordInputs: o.recordInputs ?? true,
    replyTopic: o.replyTopic,
  };
}

/** What prompted a transition: the message (if any), and the span tracing it (when tracing is on). */
export interface TransitionCause {
  readonly messageId: string | undefined;
  readonly trace?: TransitionTrace | undefined;
}

export interface AppliedDecision {
  readonly sagaId: string;
  readonly decision: Decision;
}

/**
 * Accumulates the transitions of many inputs (messages, timers, operator actions) over the sagas
 * of one transaction, in order, so that several messages for the same saga in one batch see each
 * other's effects, then yields the writes for one round trip. Local steps run here, inside the
 * transaction and a savepoint, because their writes must commit with the step.
 */
export class TransitionBatch {
  readonly #instances: Map<string, SagaInstance>;
  readonly #readVersion = new Map<string, number | null>();
  readonly #wake = new Map<string, number | null | undefined>();
  readonly #steps = new Map<string, StepRowWrite>();
  readonly #deadlines = new Map<string, number>();
  readonly #gates: GateTx | undefined;
  readonly #inputs: InputRowWrite[] = [];
  readonly messages: OutgoingMessage[] = [];
  readonly applied: AppliedDecision[] = [];

  constructor(
    private readonly cfg: TransitionSettings,
    loaded: ReadonlyMap<string, SagaInstance>,
  ) {
    this.#instances = new Map(loaded);
    for (const [id, inst] of loaded) this.#readVersion.set(id, inst.version);
    this.#gates = cfg.gates?.begin();
  }

  instance(id: string): SagaInstance | null {
    return this.#instances.get(id) ?? null;
  }

  /**
   * Decides `input` for saga `sagaId` and records the result. Runs local steps (and feeds their
   * results back) until the saga waits on something outside this transaction.
   */
  async apply(
    tx: Queryable,
    def: SagaDefinition,
    sagaId: string,
    input: SagaInput,
    cause: TransitionCause,
  ): Promise<Decision> {
    // The caller learns what became of its input (the first decision); local steps chained after
    // it are recorded as further transitions of the same saga.
    const first = await this.#decideGated(tx, def, sagaId, this.instance(sagaId), input);
    let decision = first;
    let applied: SagaInput = input;
    while (decision.outcome === 'applied' && decision.instance) {
      this.#record(def, decision, cause, applied);
      const run = decision.runLocal;
      if (!run) break;
      const result = await runLocal(tx, def, decision.instance, run);
      applied = { kind: 'local-result', seq: run.seq, ...result };
      decision = await this.#decideGated(tx, def, sagaId, decision.instance, applied);
    }
    return first;
  }

  /**
   * Decides, then asks the gates whether the decision's command may go now, in this transaction.
   * If one says no, the engine decides again with that gate held: the attempt waits instead of
   * starting (no command, no attempt used), and its timeout will count from the actual send.
   */
  async #decideGated(tx: Queryable, def: SagaDefinition, sagaId: string, inst: SagaInstance | null, input: SagaInput): Promise<Decision> {
    const d = decide(def, inst, input, this.cfg.decide);
    if (!this.#gates || d.outcome !== 'applied') return d;
    const hold = new Map<string, Hold>();
    const held = inst?.state.cursor?.waiting === 'held' ? inst.state.cursor.held?.gate : undefined;
    for (const c of d.commands) {
      if (c.gate === undefined || hold.has(c.gate)) continue;
      const h = await this.#gates.admit(tx, c.gate, sagaId, { commandId: c.id, tenantId: d.instance!.tenantId, wasHeld: held === c.gate });
      if (h) hold.set(c.gate, h);
    }
    return hold.size === 0 ? d : decide(def, inst, input, { ...this.cfg.decide, hold });
  }

  #record(def: SagaDefinition, d: Decision, cause: TransitionCause, input: SagaInput): void {
    cause.trace?.decision(d);
    const inst = d.instance!;
    if (this.cfg.recordInputs) {
      this.#inputs.push({ sagaId: inst.id, version: inst.version, definitionVersion: inst.definitionVersion, input, result: pathOf(d) });
    }
    if (!this.#readVersion.has(inst.id)) this.#readVersion.set(inst.id, null);
    this.#instances.set(inst.id, inst);
    if (d.wake !== undefined) this.#wake.set(inst.id, d.wake === null ? null : d.wake.delayMs);
    if (d.deadlineMs !== undefined) this.#deadlines.set(inst.id, d.deadlineMs);
    for (const sig of d.signals ?? []) this.#gates?.record(sig.gate, inst.id, sig.outcome);
    for (const s of d.steps) {
      const key = `${inst.id}:${s.seq}`;
      const prev = this.#steps.get(key);
      this.#steps.set(key, prev ? { ...prev, ...s, sagaId: inst.id, started: prev.started || s.started } : { ...s, sagaId: inst.id });
    }
    const occurredAt = new Date().toISOString();
    const causationId = cause.messageId ?? `${inst.id}:v${inst.version}`;
    for (const c of d.commands) {
      const env: Envelope = {
        id: c.id,
        type: c.message.type,
        schemaVersion: c.message.version,
        tenantId: inst.tenantId,
        correlationId: inst.state.correlationId,
        causationId,
        sagaId: inst.id,
        replyTo: this.cfg.replyTopic ? this.cfg.replyTopic(def) : def.topic,
        source: `/sagaflow/sagas/${def.name}`,
        occurredAt,
        headers: cause.trace ? cause.trace.commandHeaders({ id: c.id, type: c.message.type, topic: c.message.topic, headers: c.headers }) : c.headers,
        payload: c.payload,
      };
      this.messages.push(outgoing(c.message.topic!, inst.id, env, this.cfg.wireFormat));
    }
    for (const e of d.events) {
      if (!this.#publishes(e)) continue;
      const env: Envelope = {
        id: e.id,
        type: e.type,
        schemaVersion: 1,
        tenantId: inst.tenantId,
        correlationId: inst.state.correlationId,
        causationId,
        sagaId: inst.id,
        source: `/sagaflow/sagas/${def.name}`,
        occurredAt,
        payload: { ...e.payload, status: inst.status, version: inst.version },
      };
      this.messages.push(outgoing(this.cfg.eventsTopic, inst.id, env, this.cfg.wireFormat));
    }
    this.applied.push({ sagaId: inst.id, decision: d });
  }

  #publishes(e: EventIntent): boolean {
    if (this.cfg.events === 'all') return true;
    if (this.cfg.events === 'none') return false;
    return TERMINAL_EVENTS.has(e.type);
  }

  /**
   * Writes everything decided so far in ONE statement (see write.ts): saga rows, step rows, outbox
   * rows, and the deletes of outbox rows confirmed earlier that the caller hands over. With `last`
   * (the caller issues nothing after it) the COMMIT rides with that statement, unless gates still
   * have their own writes to make.
   */
  async write(tx: Tx, stores: WriteStores, deletes: readonly string[] = [], opts: { last?: boolean } = {}): Promise<WrittenMessage[]> {
    const last = (opts.last ?? false) && this.#gates === undefined;
    const written = await writeBatch(tx, stores, { sagas: this.#sagaWrites(), steps: [...this.#steps.values()], inputs: this.#inputs, messages: this.messages, deletes }, { last });
    // After the sagas are written, so that a breaker closing here also releases the sagas this
    // very batch held; the breaker row is locked last, for the shortest time.
    await this.#gates?.flush(tx);
    return written;
  }

  /** The caller committed the transaction. */
  committed(): void {
    this.#gates?.committed();
  }

  #sagaWrites(): SagaWrite[] {
    const out: SagaWrite[] = [];
    for (const [id, readVersion] of this.#readVersion) {
      const instance = this.#instances.get(id)!;
      if (readVersion !== null && instance.version === readVersion) continue; // untouched
      const deadlineMs = this.#deadlines.get(id);
      out.push({ instance, readVersion, wakeDelayMs: this.#wake.get(id), ...(deadlineMs !== undefined ? { deadlineMs } : {}) });
    }
    return out;
  }
}

async function runLocal(
  tx: Queryable,
  def: SagaDefinition,
  inst: SagaInstance,
  run: NonNullable<Decision['runLocal']>,
): Promise<{ ok: true; value: unknown } | { ok: false; error: string }> {
  const step = def.step(run.step)!;
  const action = run.phase === 'forward' ? step.forward : step.compensation!;
  // A savepoint keeps a failed local step's partial writes out of the batch's transaction.
  await tx.query('SAVEPOINT sagaflow_local');
  try {
    const value = await action.run!({
      sagaId: inst.id,
      data: inst.data,
      tx,
      attempt: run.attempt,
      kept: inst.state.kept[run.step],
    });
    await tx.query('RELEASE SAVEPOINT sagaflow_local');
    return { ok: true, value: value === undefined ? null : value };
  } catch (err) {
    await tx.query('ROLLBACK TO SAVEPOINT sagaflow_local');
    return { ok: false, error: errorMessage(err) };
  }
}
