import { DefinitionError, type ReasonCode } from '../errors.js';
import { derivedId } from '../ids.js';
import type { MessageDefinition } from '../messages/message.js';
import { describeIssues } from '../messages/envelope.js';
import type { ActionDef, SagaDefinition, StepDef } from './definition.js';
import { backoffMs } from './retry.js';
import { STEP_HEADERS, TERMINAL_STATUSES, type Cursor, type EngineState, type Phase, type SagaInstance, type SagaStatus } from './state.js';

/**
 * The engine: `decide()` maps (definition, instance, input) to the next instance and everything
 * that must happen because of it. It does no I/O and reads no clock: time enters as timer inputs
 * (fired by the database clock) and delays leave as `wake.delayMs` (turned into a due time by SQL).
 * Ids are derived from the saga id and sequence numbers, so re-running a rolled-back transition
 * produces the same command and event ids.
 */

export type SagaInput =
  | {
      readonly kind: 'start';
      readonly sagaId: string;
      readonly messageId: string;
      readonly tenantId: string;
      readonly correlationId: string;
      readonly payload: unknown;
      /** This start's own deadline (ms from now, database clock); else the definition's. */
      readonly deadlineMs?: number;
    }
  | {
      readonly kind: 'reply';
      readonly messageId: string;
      readonly type: string;
      readonly tenantId: string;
      readonly causationId: string | undefined;
      readonly headers: Readonly<Record<string, string>>;
      readonly payload: unknown;
    }
  /** The saga's wake time passed (a step timeout, the end of a retry back-off or of a hold), or its deadline did. */
  | { readonly kind: 'timer'; readonly deadline?: boolean }
  | { readonly kind: 'local-result'; readonly seq: number; readonly ok: true; readonly value: unknown }
  | { readonly kind: 'local-result'; readonly seq: number; readonly ok: false; readonly error: string }
  | { readonly kind: 'cancel'; readonly reason: string }
  | { readonly kind: 'replay'; readonly fromStep?: string; readonly force?: boolean };

export interface StepRowChange {
  readonly seq: number;
  readonly step: string;
  readonly kind: 'forward' | 'compensation' | 'local';
  readonly attempt: number;
  readonly status: 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled';
  readonly commandId?: string | null;
  readonly commandType?: string | null;
  readonly replyId?: string | null;
  readonly replyType?: string | null;
  readonly kept?: unknown;
  readonly error?: string | null;
  /** The row is new in this decision (insert with started_at = now()). */
  readonly started: boolean;
  /** The attempt ended in this decision (finished_at = now()). */
  readonly finished: boolean;
}

export interface CommandIntent {
  readonly id: string;
  /** The gate it passes (breaker, limits): the shell admitted it, or decided again with it held. */
  readonly gate: string | undefined;
  readonly message: MessageDefinition;
  readonly payload: unknown;
  readonly headers: Readonly<Record<string, string>>;
}

export type SagaEventType =
  | 'SagaStarted'
  | 'SagaStepSucceeded'
  | 'SagaStepFailed'
  | 'SagaCompleted'
  | 'SagaCompensating'
  | 'SagaCompensated'
  | 'SagaFailed'
  | 'SagaCancelled'
  | 'SagaReplayed'
  | 'SagaDeadlineExpired';

export interface EventIntent {
  readonly id: string;
  readonly type: SagaEventType;
  readonly payload: Readonly<Record<string, unknown>>;
}

export interface LocalRun {
  readonly seq: number;
  readonly step: string;
  readonly phase: Phase;
  readonly attempt: number;
}

/** Why an input was rejected: it is invalid for this saga (the message is dead-lettered with this reason). */
export type RejectionCode = Extract<ReasonCode, 'UNKNOWN_SAGA' | 'TENANT_MISMATCH' | 'UNEXPECTED_REPLY' | 'UNMATCHED_REPLY' | 'OUT_OF_ORDER' | 'INVALID_STATE' | 'NOT_FOUND' | 'NEEDS_FORCE'>;
/** Why an input changed nothing although it was valid (a duplicate, a late or stale reply, a timer no longer due). */
export type IgnoreCode = 'DUPLICATE_START' | 'LATE_REPLY' | 'STALE_REPLY' | 'DUPLICATE_REPLY' | 'STALE_TIMER' | 'STALE_LOCAL_RESULT';
export type DecisionCode = RejectionCode | IgnoreCode;

/** applied: persist it; ignored: nothing changes (code says why); rejected: the input is invalid for this saga. */
export type Decision = DecisionBody &
  (
    | { readonly outcome: 'applied'; readonly code?: 'LATE_REPLY' }
    | { readonly outcome: 'ignored'; readonly code: IgnoreCode }
    | { readonly outcome: 'rejected'; readonly code: RejectionCode }
  );

export interface DecisionBody {
  readonly message?: string;
  readonly instance: SagaInstance | null;
  readonly steps: readonly StepRowChange[];
  readonly commands: readonly CommandIntent[];
  readonly events: readonly EventIntent[];
  /** New wake time relative to the database clock; null clears it; undefined leaves it as it was. */
  readonly wake: { readonly delayMs: number } | null | undefined;
  /** A local step the shell must run now (inside the same transaction) and feed back as `local-result`. */
  readonly runLocal?: LocalRun;
  /** Outcomes of attempts at gates, for their circuit breakers (business refusals count as ok). */
  readonly signals?: readonly GateSignal[];
  /** A new saga's deadline, ms from its start (database clock). */
  readonly deadlineMs?: number;
}

export interface GateSignal {
  readonly gate: string;
  readonly outcome: 'ok' | 'technical';
}

/** A gate that refused this transaction: the attempt waits `delayMs`, with `reason` shown. */
export interface Hold {
  readonly delayMs: number;
  readonly reason: string;
}

export interface DecideContext {
  /** Random source for back-off jitter (seeded in tests). */
  readonly random: () => number;
  /** Gates that refused a command of this decision: a first decision sent one, the shell said no. */
  readonly hold?: ReadonlyMap<string, Hold>;
}


export function commandId(sagaId: string, seq: number): string {
  return derivedId(`${sagaId}:cmd:${seq}`);
}

export function eventId(sagaId: string, version: number, index: number): string {
  return derivedId(`${sagaId}:evt:${version}:${index}`);
}

/** The saga id for a start message that does not name one: derived from the message id, so redelivery finds the same saga. */
export function sagaIdFor(messageId: string): string {
  return derivedId(`${messageId}:saga`);
}

class Draft {
  status: SagaStatus;
  data: unknown;
  state: {
    done: string[];
    undone: string[];
    kept: Record<string, unknown>;
    cursor: Cursor | null;
    seq: number;
    correlationId: string;
    failedAt: EngineState['failedAt'];
    holds?: number;
  };
  reason: string | null;
  readonly steps = new Map<number, StepRowChange>();
  readonly commands: CommandIntent[] = [];
  readonly events: Omit<EventIntent, 'id'>[] = [];
  wake: Decision['wake'] = undefined;
  runLocal: LocalRun | undefined;
  readonly signals: GateSignal[] = [];
  deadlineMs: number | undefined;

  constructor(
    readonly def: SagaDefinition,
    readonly base: SagaInstance,
    readonly ctx: DecideContext,
  ) {
    this.status = base.status;
    this.data = base.data;
    const s = base.state;
    this.state = {
      done: [...s.done],
      undone: [...s.undone],
      kept: { ...s.kept },
      cursor: s.cursor,
      seq: s.seq,
      correlationId: s.correlationId,
      failedAt: s.failedAt,
      ...(s.holds !== undefined ? { holds: s.holds } : {}),
    };
    this.reason = base.reason;
  }

  get id(): string {
    return this.base.id;
  }

  row(change: StepRowChange): void {
    const prev = this.steps.get(change.seq);
    this.steps.set(change.seq, prev ? { ...prev, ...change, started: prev.started || change.started, finished: change.finished } : change);
  }

  event(type: SagaEventType, payload: Record<string, unknown> = {}): void {
    this.events.push({ type, payload: { sagaId: this.id, sagaType: this.def.name, ...payload } });
  }

  decision(code?: 'LATE_REPLY', message?: string): Decision {
    const version = this.base.version + 1;
    const instance: SagaInstance = {
      ...this.base,
      status: this.status,
      data: this.data,
      reason: this.reason,
      version,
      state: { ...this.state },
    };
    return {
      outcome: 'applied',
      ...(code ? { code } : {}),
      ...(message ? { message } : {}),
      instance,
      steps: [...this.steps.values()],
      commands: this.commands,
      events: this.events.map((e, i) => ({ ...e, id: eventId(this.id, version, i) })),
      wake: this.wake,
      ...(this.runLocal ? { runLocal: this.runLocal } : {}),
      ...(this.signals.length ? { signals: this.signals } : {}),
      ...(this.deadlineMs !== undefined ? { deadlineMs: this.deadlineMs } : {}),
    };
  }
}

function unchanged(instance: SagaInstance | null, outcome: 'ignored', code: IgnoreCode, message: string): Decision;
function unchanged(instance: SagaInstance | null, outcome: 'rejected', code: RejectionCode, message: string): Decision;
function unchanged(instance: SagaInstance | null, outcome: 'ignored' | 'rejected', code: IgnoreCode | RejectionCode, message: string): Decision {
  return { outcome, code, message, instance, steps: [], commands: [], events: [], wake: undefined } as Decision;
}

function stepOf(def: SagaDefinition, name: string): StepDef {
  const s = def.step(name);
  if (!s) throw new DefinitionError(`saga ${def.name} has no step ${name} (was it renamed while sagas were in flight?)`, 'DEFINITION_MISMATCH');
  return s;
}

function actionOf(step: StepDef, phase: Phase): ActionDef {
  const a = phase === 'forward' ? step.forward : step.compensation;
  if (!a) throw new DefinitionError(`step ${step.name} has no ${phase} action`);
  return a;
}

function rowKind(action: ActionDef, phase: Phase): StepRowChange['kind'] {
  if (phase === 'compensation') return 'compensation';
  return action.kind === 'local' ? 'local' : 'forward';
}

/** Runs user code (payload builders, keep, update); a throw becomes a saga failure, never a poison loop. */
function userCode<T>(label: string, fn: () => T): { ok: true; value: T } | { ok: false; error: string } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    return { ok: false, error: `${label} threw: ${err instanceof Error ? err.message : String(err)}` };
  }
}

function begin(t: Draft, step: StepDef, phase: Phase, attempt: number, earlier: readonly string[]): void {
  const action = actionOf(step, phase);
  const seq = ++t.state.seq;
  if (action.kind === 'local') {
    t.row({ seq, step: step.name, kind: rowKind(action, phase), attempt, status: 'running', started: true, finished: false });
    t.state.cursor = { step: step.name, phase, attempt, seq, waiting: 'local', commandId: null, earlier };
    t.runLocal = { seq, step: step.name, phase, attempt };
    t.wake = null;
    return;
  }
  const hold = action.gate === undefined ? undefined : t.ctx.hold?.get(action.gate);
  if (hold) {
    // The gate is closed: the attempt does not start (no row, no command, no attempt used); the
    // saga wakes later and asks again. The sequence number taken above is given back.
    t.state.seq--;
    t.state.holds = (t.state.holds ?? 0) + 1;
    t.state.cursor = { step: step.name, phase, attempt, seq: t.state.seq, waiting: 'held', commandId: null, earlier, held: { gate: action.gate!, reason: hold.reason } };
    t.wake = { delayMs: hold.delayMs };
    return;
  }
  const message = action.command!;
  const id = commandId(t.id, seq);
  const built = userCode(`payload of ${step.name} (${phase})`, () => action.payload!(t.data, t.state.kept[step.name]));
  const parsed = built.ok ? message.schema.safeParse(built.value) : undefined;
  t.row({
    seq,
    step: step.name,
    kind: rowKind(action, phase),
    attempt,
    status: 'running',
    commandId: id,
    commandType: message.type,
    started: true,
    finished: false,
  });
  t.state.cursor = { step: step.name, phase, attempt, seq, waiting: 'reply', commandId: id, earlier };
  if (!built.ok || !parsed?.success) {
    // A command that cannot be built is a bug in the definition: no retry can fix it.
    const error = built.ok ? `command ${message.type} does not match its schema: ${describeIssues(parsed!.error!)}` : built.error;
    return attemptFailed(t, error, { retryable: false, rowStatus: 'failed' });
  }
  t.commands.push({
    id,
    gate: action.gate,
    message,
    payload: parsed.data,
    headers: {
      [STEP_HEADERS.step]: step.name,
      [STEP_HEADERS.phase]: phase,
      [STEP_HEADERS.attempt]: String(attempt),
      [STEP_HEADERS.seq]: String(seq),
      [STEP_HEADERS.sagaType]: t.def.name,
    },
  });
  t.wake = action.timeoutMs === undefined ? null : { delayMs: action.timeoutMs };
}

function succeeded(t: Draft, reply: { id: string | null; type: string | null; payload: unknown }): void {
  const cursor = t.state.cursor!;
  const step = stepOf(t.def, cursor.step);
  signal(t, actionOf(step, cursor.phase), 'ok');
  let kept: unknown;
  if (cursor.phase === 'forward') {
    const k = step.keep ? userCode(`keep of ${step.name}`, () => step.keep!(reply.payload, t.data)) : { ok: true as const, value: undefined };
    const u = step.update ? userCode(`update of ${step.name}`, () => step.update!(t.data, reply.payload)) : { ok: true as const, value: t.data };
    // The step did succeed at the participant whatever our own code does next: it must be compensable.
    t.state.done.push(step.name);
    if (!k.ok || !u.ok) {
      t.row({ seq: cursor.seq, step: step.name, kind: rowKind(step.forward, 'forward'), attempt: cursor.attempt, status: 'succeeded', replyId: reply.id, replyType: reply.type, started: false, finished: true });
      t.event('SagaStepSucceeded', { step: step.name, phase: 'forward', attempt: cursor.attempt });
      return fail(t, { step: step.name, phase: 'forward' }, !k.ok ? k.error : (u as { error: string }).error);
    }
    kept = k.value;
    if (kept !== undefined) t.state.kept[step.name] = kept;
    t.data = u.value;
  } else {
    t.state.undone.push(step.name);
  }
  t.row({
    seq: cursor.seq,
    step: step.name,
    kind: rowKind(actionOf(step, cursor.phase), cursor.phase),
    attempt: cursor.attempt,
    status: 'succeeded',
    replyId: reply.id,
    replyType: reply.type,
    ...(kept !== undefined ? { kept } : {}),
    started: false,
    finished: true,
  });
  t.event('SagaStepSucceeded', { step: step.name, phase: cursor.phase, attempt: cursor.attempt });
  if (cursor.phase === 'compensation') return continueCompensation(t);
  const next = t.def.steps[step.index + 1];
  if (next) return begin(t, next, 'forward', 1, []);
  t.status = 'completed';
  t.state.cursor = null;
  t.wake = null;
  t.event('SagaCompleted');
}

function signal(t: Draft, action: ActionDef, outcome: GateSignal['outcome']): void {
  if (action.gate !== undefined) t.signals.push({ gate: action.gate, outcome });
}

function attemptFailed(
  t: Draft,
  error: string,
  opts: { retryable: boolean; rowStatus: 'failed' | 'timed_out'; reply?: { id: string; type: string }; technical?: boolean },
): void {
  const cursor = t.state.cursor!;
  const step = stepOf(t.def, cursor.step);
  const action = actionOf(step, cursor.phase);
  // Only an outage (a timeout, a reply the step calls technical) counts against the breaker; a
  // refusal means the participant is up and answering.
  if (cursor.waiting === 'reply') signal(t, action, opts.rowStatus === 'timed_out' || opts.technical ? 'technical' : 'ok');
  const willRetry = opts.retryable && cursor.attempt < action.retry.maxAttempts;
  t.row({
    seq: cursor.seq,
    step: step.name,
    kind: rowKind(action, cursor.phase),
    attempt: cursor.attempt,
    status: opts.rowStatus,
    error,
    ...(opts.reply ? { replyId: opts.reply.id, replyType: opts.reply.type } : {}),
    started: false,
    finished: true,
  });
  t.event('SagaStepFailed', { step: step.name, phase: cursor.phase, attempt: cursor.attempt, error, willRetry });
  if (willRetry) {
    t.state.cursor = {
      ...cursor,
      waiting: 'retry',
      commandId: null,
      earlier: cursor.commandId ? [...cursor.earlier, cursor.commandId] : cursor.earlier,
    };
    t.wake = { delayMs: backoffMs(action.retry, cursor.attempt + 1, t.ctx.random) };
    return;
  }
  const why = `${cursor.phase === 'forward' ? 'step' : 'compensation of'} ${step.name} failed after ${cursor.attempt} attempt(s): ${error}`;
  if (cursor.phase === 'compensation') return fail(t, { step: step.name, phase: cursor.phase }, why);
  let policy: 'compensate' | 'fail' = 'compensate';
  if (typeof step.onFailure === 'function') {
    const failure = { replyType: opts.reply?.type, timedOut: opts.rowStatus === 'timed_out', error };
    const chosen = userCode(`onFailure of ${step.name}`, () => (step.onFailure as (f: typeof failure) => 'compensate' | 'fail')(failure));
    // If the policy itself throws, stopping is the safe choice: an operator decides.
    policy = chosen.ok ? chosen.value : 'fail';
  } else policy = step.onFailure;
  if (policy === 'fail') return fail(t, { step: step.name, phase: cursor.phase }, why);
  startCompensation(t, why);
}

function fail(t: Draft, at: { step: string; phase: Phase }, reason: string): void {
  t.status = 'failed';
  t.reason = reason;
  t.state.failedAt = at;
  t.state.cursor = null;
  t.wake = null;
  t.event('SagaFailed', { reason, step: at.step, phase: at.phase });
}

function startCompensation(t: Draft, reason: string): void {
  t.status = 'compensating';
  t.reason = reason;
  t.state.cursor = null;
  t.event('SagaCompensating', { reason });
  continueCompensation(t);
}

/** Next compensation: the most recent completed step not yet undone that has something to undo. */
function continueCompensation(t: Draft): void {
  const undone = new Set(t.state.undone);
  for (let i = t.state.done.length - 1; i >= 0; i--) {
    const name = t.state.done[i]!;
    if (undone.has(name)) continue;
    const step = stepOf(t.def, name);
    if (!step.compensation) continue;
    return begin(t, step, 'compensation', 1, []);
  }
  t.status = 'compensated';
  t.state.cursor = null;
  t.wake = null;
  t.event('SagaCompensated', { reason: t.reason });
}

function onStart(def: SagaDefinition, input: Extract<SagaInput, { kind: 'start' }>, ctx: DecideContext): Decision {
  const init = userCode(`data of saga ${def.name}`, () => def.initialData(input.payload as never));
  const base: SagaInstance = {
    id: input.sagaId,
    tenantId: input.tenantId,
    type: def.name,
    definitionVersion: def.version,
    status: 'running',
    data: init.ok ? (init.value ?? null) : null,
    reason: null,
    version: 0,
    state: { done: [], undone: [], kept: {}, cursor: null, seq: 0, correlationId: input.correlationId, failedAt: null },
  };
  const t = new Draft(def, base, ctx);
  t.deadlineMs = input.deadlineMs ?? def.deadline.ms;
  t.event('SagaStarted', { startMessageId: input.messageId });
  if (!init.ok) {
    fail(t, { step: def.steps[0]!.name, phase: 'forward' }, init.error);
    return t.decision();
  }
  begin(t, def.steps[0]!, 'forward', 1, []);
  return t.decision();
}

function onReply(t: Draft, input: Extract<SagaInput, { kind: 'reply' }>): Decision {
  const { def, base } = t;
  if (input.tenantId !== base.tenantId) {
    return unchanged(base, 'rejected', 'TENANT_MISMATCH', `reply ${input.type} is for tenant ${input.tenantId}, saga ${base.id} belongs to another tenant`);
  }
  const cursor = base.state.cursor;
  const answersCurrent = cursor !== null && cursor.waiting === 'reply' && input.causationId !== undefined && input.causationId === cursor.commandId;
  if (!answersCurrent && !answersSentCommand(base, input.causationId) && !answersUnreachedStep(def, base, input.headers)) {
    // A reply that names no command of this saga cannot be placed: ignored, it used to leave the
    // saga waiting until its step timed out ("no reply within ..."), effects not compensated.
    return unchanged(
      base,
      'rejected',
      'UNMATCHED_REPLY',
      input.causationId === undefined
        ? `${input.type} has no causation id; a reply must carry the id of the command it answers`
        : `${input.type} answers ${input.causationId}, which is no command saga ${base.id} sent`,
    );
  }
  if (cursor && answersCurrent) {
    const action = actionOf(stepOf(def, cursor.step), cursor.phase);
    const reply = { id: input.messageId, type: input.type, payload: input.payload };
    if (action.success.has(input.type)) {
      succeeded(t, reply);
      return t.decision();
    }
    if (action.failure.has(input.type)) {
      const retry = userCode('retryFailures', () => action.retryFailures(input.payload));
      const technical = userCode('technicalFailures', () => action.technical(input.payload));
      attemptFailed(t, `reply ${input.type}`, {
        retryable: retry.ok && retry.value,
        rowStatus: 'failed',
        reply: { id: input.messageId, type: input.type },
        technical: technical.ok && technical.value,
      });
      return t.decision();
    }
    return unchanged(base, 'rejected', 'UNEXPECTED_REPLY', `${input.type} is not a reply step ${cursor.step} (${cursor.phase}) expects`);
  }
  // Not the reply we wait for. A late success of a forward step that never counted as done means
  // the participant did the work after we gave up on it: that effect must be compensated too.
  const stepName = input.headers[STEP_HEADERS.step];
  const phase = input.headers[STEP_HEADERS.phase];
  const step = stepName ? def.step(stepName) : undefined;
  const late =
    step !== undefined &&
    phase === 'forward' &&
    step.forward.success.has(input.type) &&
    !base.state.done.includes(step.name) &&
    (base.status === 'compensating' || base.status === 'compensated' || base.status === 'failed') &&
    !(cursor?.step === step.name && cursor.phase === 'forward');
  if (late) {
    const k = step.keep ? userCode(`keep of ${step.name}`, () => step.keep!(input.payload, t.data)) : { ok: true as const, value: undefined };
    t.state.done.push(step.name);
    if (k.ok && k.value !== undefined) t.state.kept[step.name] = k.value;
    t.event('SagaStepSucceeded', { step: step.name, phase: 'forward', late: true });
    if (base.status === 'compensated') {
      // Reopen: the new effect is undone like the others, and the saga ends compensated again.
      t.status = 'compensating';
      continueCompensation(t);
    }
    return t.decision('LATE_REPLY', `late success of ${step.name} after the saga gave up on it: it will be compensated`);
  }
  if (TERMINAL_STATUSES.has(base.status)) {
    return unchanged(base, 'ignored', 'LATE_REPLY', `${input.type} arrived after saga ${base.id} ended ${base.status}`);
  }
  if (cursor && input.causationId !== undefined && cursor.earlier.includes(input.causationId)) {
    return unchanged(base, 'ignored', 'STALE_REPLY', `${input.type} answers an earlier attempt of ${cursor.step}; attempt ${cursor.attempt} is current`);
  }
  const current = cursor ? def.step(cursor.step) : undefined;
  if (step && current && cursor?.phase === 'forward' && phase === 'forward' && step.index > current.index) {
    // No command for that step was ever sent: a forged or misrouted reply, kept for a human.
    return unchanged(base, 'rejected', 'OUT_OF_ORDER', `${input.type} answers step ${step.name}, which saga ${base.id} has not reached (it is at ${current.name})`);
  }
  return unchanged(base, 'ignored', 'DUPLICATE_REPLY', `${input.type} does not answer the command saga ${base.id} is waiting for`);
}

/** Command ids are derived from the saga id and step sequence, so "did this saga send it" needs no lookup. */
function answersSentCommand(base: SagaInstance, causationId: string | undefined): boolean {
  if (causationId === undefined) return false;
  for (let seq = base.state.seq; seq >= 1; seq--) if (commandId(base.id, seq) === causationId) return true;
  return false;
}

/** The reply's step headers name a forward step ahead of the saga's: OUT_OF_ORDER says more than UNMATCHED_REPLY. */
function answersUnreachedStep(def: SagaDefinition, base: SagaInstance, headers: Readonly<Record<string, string>>): boolean {
  const cursor = base.state.cursor;
  const name = headers[STEP_HEADERS.step];
  const step = name ? def.step(name) : undefined;
  const current = cursor ? def.step(cursor.step) : undefined;
  return step !== undefined && current !== undefined && cursor?.phase === 'forward' && headers[STEP_HEADERS.phase] === 'forward' && step.index > current.index;
}

function onTimer(t: Draft, input: Extract<SagaInput, { kind: 'timer' }>): Decision {
  const cursor = t.base.state.cursor;
  if (input.deadline && t.base.status === 'running') return deadlineExpired(t);
  if (!cursor || TERMINAL_STATUSES.has(t.base.status)) return unchanged(t.base, 'ignored', 'STALE_TIMER', 'no attempt is waiting');
  const step = stepOf(t.def, cursor.step);
  if (cursor.waiting === 'held') {
    // Ask the gate again for the same attempt: a hold never uses up the attempt budget.
    begin(t, step, cursor.phase, cursor.attempt, cursor.earlier);
    return t.decision();
  }
  if (cursor.waiting === 'reply') {
    const action = actionOf(step, cursor.phase);
    attemptFailed(t, `no reply within ${action.timeoutMs} ms`, { retryable: true, rowStatus: 'timed_out' });
    return t.decision();
  }
  if (cursor.waiting === 'retry') {
    begin(t, step, cursor.phase, cursor.attempt + 1, cursor.earlier);
    return t.decision();
  }
  return unchanged(t.base, 'ignored', 'STALE_TIMER', 'a local step is running');
}

/**
 * The saga's overall deadline passed while it was still running forward: the attempt in flight is
 * abandoned (a late success of it is compensated like any late reply) and the saga compensates or
 * stops, as the definition says. Once compensating, the deadline no longer applies.
 */
function deadlineExpired(t: Draft): Decision {
  const cursor = t.base.state.cursor;
  const reason = 'deadline exceeded';
  if (cursor && (cursor.waiting === 'reply' || cursor.waiting === 'local')) {
    const step = stepOf(t.def, cursor.step);
    t.row({ seq: cursor.seq, step: cursor.step, kind: rowKind(actionOf(step, cursor.phase), cursor.phase), attempt: cursor.attempt, status: 'cancelled', error: reason, started: false, finished: true });
  }
  t.event('SagaDeadlineExpired', { step: cursor?.step ?? null });
  if (t.def.deadline.onExpiry === 'fail') {
    fail(t, { step: cursor?.step ?? t.def.steps[0]!.name, phase: 'forward' }, reason);
    return t.decision();
  }
  startCompensation(t, reason);
  return t.decision();
}

function onLocalResult(t: Draft, input: Extract<SagaInput, { kind: 'local-result' }>): Decision {
  const cursor = t.base.state.cursor;
  if (!cursor || cursor.waiting !== 'local' || cursor.seq !== input.seq) {
    return unchanged(t.base, 'ignored', 'STALE_LOCAL_RESULT', `no local step with seq ${input.seq} is running`);
  }
  if (input.ok) succeeded(t, { id: null, type: null, payload: input.value });
  else attemptFailed(t, input.error, { retryable: true, rowStatus: 'failed' });
  return t.decision();
}

function onCancel(t: Draft, input: Extract<SagaInput, { kind: 'cancel' }>): Decision {
  if (t.base.status !== 'running') {
    return unchanged(t.base, 'rejected', 'INVALID_STATE', `saga ${t.base.id} is ${t.base.status}; only a running saga can be cancelled`);
  }
  const cursor = t.base.state.cursor;
  if (cursor && cursor.waiting !== 'retry' && cursor.waiting !== 'held') {
    const step = stepOf(t.def, cursor.step);
    t.row({ seq: cursor.seq, step: cursor.step, kind: rowKind(actionOf(step, cursor.phase), cursor.phase), attempt: cursor.attempt, status: 'cancelled', error: `cancelled: ${input.reason}`, started: false, finished: true });
  }
  t.event('SagaCancelled', { reason: input.reason });
  startCompensation(t, `cancelled: ${input.reason}`);
  return t.decision();
}

function onReplay(t: Draft, input: Extract<SagaInput, { kind: 'replay' }>): Decision {
  const { base, def } = t;
  if (base.status !== 'failed') {
    return unchanged(base, 'rejected', 'INVALID_STATE', `saga ${base.id} is ${base.status}; only a failed saga can be replayed`);
  }
  const at = base.state.failedAt;
  if (input.fromStep !== undefined) {
    const from = def.step(input.fromStep);
    if (!from) return unchanged(base, 'rejected', 'NOT_FOUND', `saga ${def.name} has no step ${input.fromStep}`);
    const undone = new Set(base.state.undone);
    const effective = base.state.done.filter((s) => !undone.has(s));
    for (const s of def.steps.slice(0, from.index)) {
      if (!effective.includes(s.name)) {
        return unchanged(base, 'rejected', 'INVALID_STATE', `step ${s.name} before ${from.name} is not in effect; replay from ${s.name} or earlier`);
      }
    }
    const rerun = def.steps.slice(from.index).filter((s) => effective.includes(s.name)).map((s) => s.name);
    if (rerun.length > 0 && !input.force) {
      return unchanged(base, 'rejected', 'NEEDS_FORCE', `step(s) ${rerun.join(', ')} already succeeded; re-running them needs --force`);
    }
    const keepSteps = new Set(def.steps.slice(0, from.index).map((s) => s.name));
    t.state.done = base.state.done.filter((s) => keepSteps.has(s));
    t.state.undone = [];
    t.state.kept = Object.fromEntries(Object.entries(base.state.kept).filter(([k]) => keepSteps.has(k)));
    t.status = 'running';
    t.reason = null;
    t.state.failedAt = null;
    t.event('SagaReplayed', { fromStep: from.name, force: input.force === true, rerun });
    begin(t, from, 'forward', 1, []);
    return t.decision();
  }
  if (!at) return unchanged(base, 'rejected', 'INVALID_STATE', `saga ${base.id} has no failure point to resume from`);
  const step = stepOf(def, at.step);
  t.state.failedAt = null;
  t.event('SagaReplayed', { step: at.step, phase: at.phase });
  if (at.phase === 'forward') {
    t.status = 'running';
    t.reason = null;
    if (base.state.done.includes(at.step)) {
      // The step itself succeeded and our own code failed after it: resume with the next step.
      const next = def.steps[step.index + 1];
      if (next) begin(t, next, 'forward', 1, []);
      else {
        t.status = 'completed';
        t.state.cursor = null;
        t.wake = null;
        t.event('SagaCompleted');
      }
    } else begin(t, step, 'forward', 1, []);
    return t.decision();
  }
  t.status = 'compensating';
  if (base.state.undone.includes(at.step)) continueCompensation(t);
  else begin(t, step, 'compensation', 1, []);
  return t.decision();
}

export function decide(def: SagaDefinition, instance: SagaInstance | null, input: SagaInput, ctx: DecideContext): Decision {
  if (input.kind === 'start') {
    if (instance) return unchanged(instance, 'ignored', 'DUPLICATE_START', `saga ${instance.id} already exists`);
    return onStart(def, input, ctx);
  }
  if (!instance) return unchanged(null, 'rejected', 'UNKNOWN_SAGA', `no saga for ${input.kind}`);
  if (instance.type !== def.name) {
    return unchanged(instance, 'rejected', 'UNKNOWN_SAGA', `saga ${instance.id} is a ${instance.type}, not a ${def.name}`);
  }
  const t = new Draft(def, instance, ctx);
  switch (input.kind) {
    case 'reply':
      return onReply(t, input);
    case 'timer':
      return onTimer(t, input);
    case 'local-result':
      return onLocalResult(t, input);
    case 'cancel':
      return onCancel(t, input);
    case 'replay':
      return onReplay(t, input);
  }
}
