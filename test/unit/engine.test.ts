/**
 * The pure engine, exhaustively: every transition decide() can make, with no database and no
 * broker. Each test drives a saga through inputs and asserts the state, the step rows, the
 * commands sent and the events emitted. Runs in milliseconds; randomness (jitter) is seeded.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '../../src/messages/message.js';
import { defineSaga } from '../../src/saga/definition.js';
import { commandId, decide, type Decision, type SagaInput } from '../../src/saga/engine.js';
import { STEP_HEADERS, type SagaInstance } from '../../src/saga/state.js';
import { mulberry32 } from '../helpers/seed.js';

const Start = defineMessage({ type: 'T.Start', topic: 't.saga', schema: z.object({ n: z.number(), payFailsWith: z.string().optional() }) });
const DoA = defineMessage({ type: 'T.DoA', topic: 't.a', schema: z.object({ n: z.number() }) });
const ADone = defineMessage({ type: 'T.ADone', schema: z.object({ ref: z.string() }) });
const ARefused = defineMessage({ type: 'T.ARefused', schema: z.object({ why: z.string() }) });
const UndoA = defineMessage({ type: 'T.UndoA', topic: 't.a', schema: z.object({ ref: z.string() }) });
const AUndone = defineMessage({ type: 'T.AUndone', schema: z.object({}) });
const AUndoFailed = defineMessage({ type: 'T.AUndoFailed', schema: z.object({ why: z.string() }) });
const DoB = defineMessage({ type: 'T.DoB', topic: 't.b', schema: z.object({ n: z.number() }) });
const BDone = defineMessage({ type: 'T.BDone', schema: z.object({ id: z.string() }) });
const BRefused = defineMessage({ type: 'T.BRefused', schema: z.object({ why: z.string() }) });
const BBusy = defineMessage({ type: 'T.BBusy', schema: z.object({ why: z.string() }) });
const UndoB = defineMessage({ type: 'T.UndoB', topic: 't.b', schema: z.object({ id: z.string() }) });
const BUndone = defineMessage({ type: 'T.BUndone', schema: z.object({}) });
const DoC = defineMessage({ type: 'T.DoC', topic: 't.c', schema: z.object({ n: z.number() }) });
const CDone = defineMessage({ type: 'T.CDone', schema: z.object({}) });
const CRefused = defineMessage({ type: 'T.CRefused', schema: z.object({}) });

const saga = defineSaga({ name: 'test', start: Start, data: (s) => ({ n: s.n, total: 0 }) })
  .step('a', {
    command: DoA,
    payload: (d) => ({ n: d.n }),
    success: [ADone],
    failure: [ARefused],
    keep: (r) => ({ ref: r.ref }),
    compensate: { command: UndoA, payload: (_d, k) => ({ ref: k.ref }), success: [AUndone], failure: [AUndoFailed], retry: { maxAttempts: 3 } },
    timeoutMs: 1000,
    retry: { maxAttempts: 2 },
  })
  .step('b', {
    command: DoB,
    payload: (d) => ({ n: d.n }),
    success: [BDone],
    failure: [BRefused, BBusy],
    retryFailures: (r) => r.why === 'busy',
    onFailure: (f) => (f.replyType === 'T.BBusy' ? 'fail' : 'compensate'),
    keep: (r) => ({ id: r.id }),
    update: (d) => ({ ...d, total: d.total + 1 }),
    compensate: { command: UndoB, payload: (_d, k) => ({ id: k.id }), success: [BUndone] },
    timeoutMs: 500,
    retry: { maxAttempts: 3, initialDelayMs: 100, maxDelayMs: 400, jitter: 0 },
  })
  .step('c', { command: DoC, payload: (d) => ({ n: d.n }), success: [CDone], failure: [CRefused] })
  .build();

const ctx = { random: mulberry32(42) };
const SAGA = '11111111-1111-4111-8111-111111111111';
let nextMsg = 0;
const msgId = () => `00000000-0000-4000-8000-${String(++nextMsg).padStart(12, '0')}`;

function start(n = 1): Decision {
  return decide(saga, null, { kind: 'start', sagaId: SAGA, messageId: msgId(), tenantId: 't1', correlationId: 'c1', payload: { n } }, ctx);
}

/** The reply a participant would send to the command the saga currently waits on. */
function replyTo(inst: SagaInstance, type: string, payload: unknown, over: Partial<Extract<SagaInput, { kind: 'reply' }>> = {}): SagaInput {
  const c = inst.state.cursor!;
  return {
    kind: 'reply',
    messageId: msgId(),
    type,
    tenantId: inst.tenantId,
    causationId: c.commandId ?? undefined,
    headers: { [STEP_HEADERS.step]: c.step, [STEP_HEADERS.phase]: c.phase, [STEP_HEADERS.attempt]: String(c.attempt) },
    payload,
    ...over,
  };
}

function step(inst: SagaInstance, input: SagaInput): Decision {
  return decide(saga, inst, input, ctx);
}

function run(inputs: ((i: SagaInstance) => SagaInput)[]): { inst: SagaInstance; decisions: Decision[] } {
  let d = start();
  const decisions = [d];
  for (const f of inputs) {
    d = step(d.instance!, f(d.instance!));
    decisions.push(d);
  }
  return { inst: d.instance!, decisions };
}

const sent = (ds: Decision[]) => ds.flatMap((d) => d.commands.map((c) => c.message.type));
const events = (ds: Decision[]) => ds.flatMap((d) => d.events.map((e) => e.type));

describe('decide: forward path', () => {
  it('starts a saga at its first step, with the command, a timeout and a started event', () => {
    const d = start(7);
    expect(d.outcome).toBe('applied');
    expect(d.instance).toMatchObject({ id: SAGA, status: 'running', version: 1, data: { n: 7, total: 0 }, tenantId: 't1' });
    expect(d.commands).toHaveLength(1);
    expect(d.commands[0]).toMatchObject({ id: commandId(SAGA, 1), payload: { n: 7 } });
    expect(d.commands[0]!.headers[STEP_HEADERS.step]).toBe('a');
    expect(d.wake).toEqual({ delayMs: 1000 });
    expect(d.steps).toEqual([expect.objectContaining({ seq: 1, step: 'a', kind: 'forward', attempt: 1, status: 'running', started: true })]);
    expect(d.events.map((e) => e.type)).toEqual(['SagaStarted']);
  });

  it('runs every step to completed, keeping data and updating the saga data', () => {
    const { inst, decisions } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BDone', { id: 'b1' }),
      (i) => replyTo(i, 'T.CDone', {}),
    ]);
    expect(inst.status).toBe('completed');
    expect(inst.version).toBe(4);
    expect(inst.state.done).toEqual(['a', 'b', 'c']);
    expect(inst.state.kept).toEqual({ a: { ref: 'r1' }, b: { id: 'b1' } });
    expect(inst.data).toEqual({ n: 1, total: 1 });
    expect(inst.state.cursor).toBeNull();
    expect(sent(decisions)).toEqual(['T.DoA', 'T.DoB', 'T.DoC']);
    expect(events(decisions)).toEqual(['SagaStarted', 'SagaStepSucceeded', 'SagaStepSucceeded', 'SagaStepSucceeded', 'SagaCompleted']);
    expect(decisions.at(-1)!.wake).toBeNull();
  });

  it('derives the same ids when a transition is decided again (a rolled-back transaction re-run)', () => {
    const one = start();
    const again = decide(saga, null, { kind: 'start', sagaId: SAGA, messageId: msgId(), tenantId: 't1', correlationId: 'c1', payload: { n: 1 } }, ctx);
    expect(again.commands[0]!.id).toBe(one.commands[0]!.id);
    expect(again.events[0]!.id).toBe(one.events[0]!.id);
  });

  it('ignores a second start for an existing saga', () => {
    const d = start();
    const again = decide(saga, d.instance, { kind: 'start', sagaId: SAGA, messageId: msgId(), tenantId: 't1', correlationId: 'c1', payload: { n: 1 } }, ctx);
    expect(again).toMatchObject({ outcome: 'ignored', code: 'DUPLICATE_START' });
  });
});

describe('decide: failures and compensation', () => {
  it('a refusal at the first step compensates nothing and ends compensated', () => {
    const { inst, decisions } = run([(i) => replyTo(i, 'T.ARefused', { why: 'no' })]);
    expect(inst.status).toBe('compensated');
    expect(inst.reason).toMatch(/step a failed after 1 attempt\(s\): reply T.ARefused/);
    expect(sent(decisions)).toEqual(['T.DoA']);
  });

  it('a refusal at the last step compensates the completed steps in reverse order', () => {
    const { inst, decisions } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BDone', { id: 'b1' }),
      (i) => replyTo(i, 'T.CRefused', {}),
      (i) => replyTo(i, 'T.BUndone', {}),
      (i) => replyTo(i, 'T.AUndone', {}),
    ]);
    expect(sent(decisions)).toEqual(['T.DoA', 'T.DoB', 'T.DoC', 'T.UndoB', 'T.UndoA']);
    expect(decisions[3]!.commands[0]!.payload).toEqual({ id: 'b1' });
    expect(decisions[4]!.commands[0]!.payload).toEqual({ ref: 'r1' });
    expect(inst.status).toBe('compensated');
    expect(inst.state.undone).toEqual(['b', 'a']);
    expect(events(decisions)).toContain('SagaCompensating');
    expect(events(decisions).at(-1)).toBe('SagaCompensated');
  });

  it('a refusal at step b compensates only a', () => {
    const { inst, decisions } = run([(i) => replyTo(i, 'T.ADone', { ref: 'r1' }), (i) => replyTo(i, 'T.BRefused', { why: 'no' }), (i) => replyTo(i, 'T.AUndone', {})]);
    expect(sent(decisions)).toEqual(['T.DoA', 'T.DoB', 'T.UndoA']);
    expect(inst.status).toBe('compensated');
  });

  it('a compensation failing transiently is retried, then succeeds', () => {
    const { inst, decisions } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BRefused', { why: 'no' }),
      (i) => replyTo(i, 'T.AUndoFailed', { why: 'flaky' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.AUndone', {}),
    ]);
    const failedAttempt = decisions[3]!;
    expect(failedAttempt.instance!.state.cursor).toMatchObject({ step: 'a', phase: 'compensation', waiting: 'retry', attempt: 1 });
    expect(failedAttempt.wake!.delayMs).toBeGreaterThan(0);
    expect(decisions[4]!.commands[0]).toMatchObject({ message: UndoA });
    expect(decisions[4]!.instance!.state.cursor).toMatchObject({ attempt: 2, waiting: 'reply' });
    expect(inst.status).toBe('compensated');
  });

  it('a compensation failing permanently ends failed, with the failure point kept for replay', () => {
    const { inst } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BRefused', { why: 'no' }),
      (i) => replyTo(i, 'T.AUndoFailed', { why: 'x' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.AUndoFailed', { why: 'x' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.AUndoFailed', { why: 'x' }),
    ]);
    expect(inst.status).toBe('failed');
    expect(inst.reason).toMatch(/compensation of a failed after 3 attempt/);
    expect(inst.state.failedAt).toEqual({ step: 'a', phase: 'compensation' });
  });

  it('a step timeout counts as a failed attempt, is retried with a new command id, and exhaustion compensates', () => {
    const { inst, decisions } = run([
      () => ({ kind: 'timer' }), // attempt 1 of a times out
      () => ({ kind: 'timer' }), // back-off over: attempt 2
      () => ({ kind: 'timer' }), // attempt 2 times out: a has maxAttempts 2
    ]);
    expect(decisions[1]!.steps[0]).toMatchObject({ step: 'a', attempt: 1, status: 'timed_out', finished: true });
    expect(decisions[2]!.commands[0]!.id).toBe(commandId(SAGA, 2));
    expect(decisions[2]!.instance!.state.cursor!.earlier).toEqual([commandId(SAGA, 1)]);
    expect(inst.status).toBe('compensated');
    expect(inst.reason).toMatch(/no reply within 1000 ms/);
  });

  it('retry back-off grows exponentially within the bounds (b: 100, 200 ms without jitter)', () => {
    const { decisions } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
    ]);
    expect(decisions[2]!.wake).toEqual({ delayMs: 100 });
    expect(decisions[4]!.wake).toEqual({ delayMs: 200 });
  });

  it('retry exhaustion with an onFailure policy of "fail" stops the saga as failed without compensating', () => {
    const { inst, decisions } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
    ]);
    expect(inst.status).toBe('failed');
    expect(inst.state.failedAt).toEqual({ step: 'b', phase: 'forward' });
    expect(sent(decisions)).toEqual(['T.DoA', 'T.DoB', 'T.DoB', 'T.DoB']);
  });

  it('a failure reply that is not worth retrying fails at once even with attempts left', () => {
    const { inst, decisions } = run([(i) => replyTo(i, 'T.ADone', { ref: 'r1' }), (i) => replyTo(i, 'T.BRefused', { why: 'final' })]);
    expect(inst.status).toBe('compensating');
    expect(decisions[2]!.events.find((e) => e.type === 'SagaStepFailed')!.payload).toMatchObject({ willRetry: false });
  });
});

describe('decide: replies that are not the awaited one', () => {
  it('ignores a duplicate reply (a second reply message to a command already answered)', () => {
    let d = start();
    const first = replyTo(d.instance!, 'T.ADone', { ref: 'r1' });
    d = step(d.instance!, first);
    const dup = step(d.instance!, { ...(first as Extract<SagaInput, { kind: 'reply' }>), messageId: msgId() });
    expect(dup).toMatchObject({ outcome: 'ignored', code: 'DUPLICATE_REPLY' });
    expect(dup.instance).toBe(d.instance);
  });

  it('ignores a stale reply to an earlier attempt of the current step', () => {
    let d = start();
    const stale = replyTo(d.instance!, 'T.ARefused', { why: 'late' });
    d = step(d.instance!, { kind: 'timer' }); // timeout of attempt 1
    d = step(d.instance!, { kind: 'timer' }); // attempt 2 sent
    const r = step(d.instance!, stale);
    expect(r).toMatchObject({ outcome: 'ignored', code: 'STALE_REPLY' });
  });

  it('rejects (dead-letters) a reply without causation id, or naming no command of the saga: UNMATCHED_REPLY, saga unchanged', () => {
    const d = start();
    const none = step(d.instance!, replyTo(d.instance!, 'T.ADone', { ref: 'x' }, { causationId: undefined }));
    expect(none).toMatchObject({ outcome: 'rejected', code: 'UNMATCHED_REPLY' });
    expect(none.instance).toBe(d.instance);
    const foreign = step(d.instance!, replyTo(d.instance!, 'T.ADone', { ref: 'x' }, { causationId: msgId() }));
    expect(foreign).toMatchObject({ outcome: 'rejected', code: 'UNMATCHED_REPLY' });
    // The awaited reply still moves it: nothing was consumed by the unmatched ones.
    expect(step(d.instance!, replyTo(d.instance!, 'T.ADone', { ref: 'x' }))).toMatchObject({ outcome: 'applied' });
  });

  it('rejects (dead-letters) a reply for a step the saga has not reached', () => {
    const d = start();
    const early = step(d.instance!, {
      kind: 'reply',
      messageId: msgId(),
      type: 'T.CDone',
      tenantId: 't1',
      causationId: commandId(SAGA, 9),
      headers: { [STEP_HEADERS.step]: 'c', [STEP_HEADERS.phase]: 'forward' },
      payload: {},
    });
    expect(early).toMatchObject({ outcome: 'rejected', code: 'OUT_OF_ORDER' });
  });

  it('rejects a reply type the awaited step does not expect', () => {
    const d = start();
    expect(step(d.instance!, replyTo(d.instance!, 'T.CDone', {}))).toMatchObject({ outcome: 'rejected', code: 'UNEXPECTED_REPLY' });
  });

  it('rejects a reply from another tenant', () => {
    const d = start();
    expect(step(d.instance!, replyTo(d.instance!, 'T.ADone', { ref: 'x' }, { tenantId: 'other' }))).toMatchObject({
      outcome: 'rejected',
      code: 'TENANT_MISMATCH',
    });
  });

  it('rejects a reply for an unknown saga', () => {
    const d = decide(saga, null, { kind: 'reply', messageId: msgId(), type: 'T.ADone', tenantId: 't1', causationId: 'x', headers: {}, payload: { ref: 'x' } }, ctx);
    expect(d).toMatchObject({ outcome: 'rejected', code: 'UNKNOWN_SAGA' });
  });

  it('ignores a late reply after the saga completed', () => {
    const { inst } = run([(i) => replyTo(i, 'T.ADone', { ref: 'r1' }), (i) => replyTo(i, 'T.BDone', { id: 'b1' }), (i) => replyTo(i, 'T.CDone', {})]);
    const late = step(inst, { kind: 'reply', messageId: msgId(), type: 'T.CDone', tenantId: 't1', causationId: commandId(SAGA, 3), headers: { [STEP_HEADERS.step]: 'c', [STEP_HEADERS.phase]: 'forward' }, payload: {} });
    expect(late).toMatchObject({ outcome: 'ignored', code: 'LATE_REPLY' });
  });

  it('a late SUCCESS of a step the saga gave up on reopens compensation for it', () => {
    // b times out three times (its attempts), so the saga compensates a; then b's first attempt answers "done".
    let d = start();
    d = step(d.instance!, replyTo(d.instance!, 'T.ADone', { ref: 'r1' }));
    const firstB = d.instance!.state.cursor!;
    for (let i = 0; i < 5; i++) d = step(d.instance!, { kind: 'timer' });
    expect(d.instance!.status).toBe('compensating');
    d = step(d.instance!, replyTo(d.instance!, 'T.AUndone', {}));
    expect(d.instance!.status).toBe('compensated');
    const late = step(d.instance!, {
      kind: 'reply',
      messageId: msgId(),
      type: 'T.BDone',
      tenantId: 't1',
      causationId: firstB.commandId!,
      headers: { [STEP_HEADERS.step]: 'b', [STEP_HEADERS.phase]: 'forward', [STEP_HEADERS.attempt]: '1' },
      payload: { id: 'late-b' },
    });
    expect(late).toMatchObject({ outcome: 'applied', code: 'LATE_REPLY' });
    expect(late.instance!.status).toBe('compensating');
    expect(late.commands[0]).toMatchObject({ message: UndoB, payload: { id: 'late-b' } });
    const end = step(late.instance!, replyTo(late.instance!, 'T.BUndone', {}));
    expect(end.instance!.status).toBe('compensated');
  });

  it('ignores a timer when nothing waits for one', () => {
    const { inst } = run([(i) => replyTo(i, 'T.ADone', { ref: 'r1' }), (i) => replyTo(i, 'T.BDone', { id: 'b1' }), (i) => replyTo(i, 'T.CDone', {})]);
    expect(step(inst, { kind: 'timer' })).toMatchObject({ outcome: 'ignored', code: 'STALE_TIMER' });
  });
});

describe('decide: operator actions', () => {
  it('cancel of a running saga cancels the attempt in flight and compensates what completed', () => {
    let d = start();
    d = step(d.instance!, replyTo(d.instance!, 'T.ADone', { ref: 'r1' }));
    const c = step(d.instance!, { kind: 'cancel', reason: 'customer asked' });
    expect(c.instance!.status).toBe('compensating');
    expect(c.instance!.reason).toBe('cancelled: customer asked');
    expect(c.steps.find((s) => s.step === 'b')).toMatchObject({ status: 'cancelled' });
    expect(c.commands.map((x) => x.message.type)).toEqual(['T.UndoA']);
    expect(c.events.map((e) => e.type)).toEqual(['SagaCancelled', 'SagaCompensating']);
  });

  it('cancel of a saga that is not running is refused', () => {
    const { inst } = run([(i) => replyTo(i, 'T.ARefused', { why: 'no' })]);
    expect(step(inst, { kind: 'cancel', reason: 'x' })).toMatchObject({ outcome: 'rejected', code: 'INVALID_STATE' });
  });

  it('replay of a saga failed at a forward step re-runs that step with a fresh attempt budget, not the steps before it', () => {
    const { inst } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
    ]);
    const r = step(inst, { kind: 'replay' });
    expect(r.instance!.status).toBe('running');
    expect(r.commands.map((c) => c.message.type)).toEqual(['T.DoB']);
    expect(r.instance!.state.cursor).toMatchObject({ step: 'b', attempt: 1 });
    expect(r.events.map((e) => e.type)).toEqual(['SagaReplayed']);
    const done = step(r.instance!, replyTo(r.instance!, 'T.BDone', { id: 'b' }));
    const end = step(done.instance!, replyTo(done.instance!, 'T.CDone', {}));
    expect(end.instance!.status).toBe('completed');
  });

  it('replay of a failed compensation resumes it; compensations already done are not repeated', () => {
    const { inst } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BDone', { id: 'b1' }),
      (i) => replyTo(i, 'T.CRefused', {}),
      (i) => replyTo(i, 'T.BUndone', {}),
      (i) => replyTo(i, 'T.AUndoFailed', { why: 'x' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.AUndoFailed', { why: 'x' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.AUndoFailed', { why: 'x' }),
    ]);
    expect(inst.status).toBe('failed');
    const r = step(inst, { kind: 'replay' });
    expect(r.instance!.status).toBe('compensating');
    expect(r.commands.map((c) => c.message.type)).toEqual(['T.UndoA']);
    const end = step(r.instance!, replyTo(r.instance!, 'T.AUndone', {}));
    expect(end.instance!.status).toBe('compensated');
    expect(end.instance!.state.undone).toEqual(['b', 'a']);
  });

  it('replay from a named step that already succeeded needs force', () => {
    const { inst } = run([
      (i) => replyTo(i, 'T.ADone', { ref: 'r1' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
      () => ({ kind: 'timer' }),
      (i) => replyTo(i, 'T.BBusy', { why: 'busy' }),
    ]);
    expect(step(inst, { kind: 'replay', fromStep: 'a' })).toMatchObject({ outcome: 'rejected', code: 'NEEDS_FORCE' });
    const forced = step(inst, { kind: 'replay', fromStep: 'a', force: true });
    expect(forced.instance!.state.done).toEqual([]);
    expect(forced.commands.map((c) => c.message.type)).toEqual(['T.DoA']);
    expect(step(inst, { kind: 'replay', fromStep: 'nope' })).toMatchObject({ outcome: 'rejected', code: 'NOT_FOUND' });
  });

  it('replay of a saga that is not failed is refused', () => {
    const d = start();
    expect(step(d.instance!, { kind: 'replay' })).toMatchObject({ outcome: 'rejected', code: 'INVALID_STATE' });
  });
});

describe('decide: user code and local steps', () => {
  const Go = defineMessage({ type: 'L.Go', topic: 'l.saga', schema: z.object({ bad: z.boolean() }) });
  const Cmd = defineMessage({ type: 'L.Cmd', topic: 'l.p', schema: z.object({ x: z.number().max(10) }) });
  const Ok = defineMessage({ type: 'L.Ok', schema: z.object({}) });
  const local = defineSaga({ name: 'local', start: Go, data: (g) => ({ bad: g.bad }) })
    .localStep('compute', { run: () => ({ v: 42 }), compensate: { run: () => undefined } })
    .step('remote', { command: Cmd, payload: (d) => ({ x: d.bad ? 99 : 1 }), success: [Ok] })
    .build();

  it('a local step asks the shell to run it, and its result advances the saga', () => {
    const d = decide(local, null, { kind: 'start', sagaId: SAGA, messageId: msgId(), tenantId: 't', correlationId: 'c', payload: { bad: false } }, ctx);
    expect(d.runLocal).toMatchObject({ step: 'compute', phase: 'forward', seq: 1 });
    const r = decide(local, d.instance, { kind: 'local-result', seq: 1, ok: true, value: { v: 42 } }, ctx);
    expect(r.instance!.state.kept).toEqual({ compute: { v: 42 } });
    expect(r.commands.map((c) => c.message.type)).toEqual(['L.Cmd']);
  });

  it('a command that does not match its schema fails the step without sending anything', () => {
    const d = decide(local, null, { kind: 'start', sagaId: SAGA, messageId: msgId(), tenantId: 't', correlationId: 'c', payload: { bad: true } }, ctx);
    const r = decide(local, d.instance, { kind: 'local-result', seq: 1, ok: true, value: {} }, ctx);
    expect(r.commands.filter((c) => c.message.type === 'L.Cmd')).toEqual([]);
    expect(r.instance!.status).toBe('compensating');
    expect(r.instance!.reason).toMatch(/L.Cmd does not match its schema: x/);
    expect(r.runLocal).toMatchObject({ step: 'compute', phase: 'compensation' });
  });

  it('a throwing keep() fails the saga (after recording the step as done) instead of looping', () => {
    const Boom = defineMessage({ type: 'K.Start', topic: 'k.saga', schema: z.object({}) });
    const K = defineMessage({ type: 'K.Cmd', topic: 'k.p', schema: z.object({}) });
    const KOk = defineMessage({ type: 'K.Ok', schema: z.object({}) });
    const s = defineSaga({ name: 'keep', start: Boom, data: () => ({}) })
      .step('k', {
        command: K,
        payload: () => ({}),
        success: [KOk],
        keep: () => {
          throw new Error('bug');
        },
      })
      .build();
    const d = decide(s, null, { kind: 'start', sagaId: SAGA, messageId: msgId(), tenantId: 't', correlationId: 'c', payload: {} }, ctx);
    const r = decide(s, d.instance, { kind: 'reply', messageId: msgId(), type: 'K.Ok', tenantId: 't', causationId: d.commands[0]!.id, headers: {}, payload: {} }, ctx);
    expect(r.instance!.status).toBe('failed');
    expect(r.instance!.reason).toMatch(/keep of k threw: bug/);
    expect(r.instance!.state.done).toEqual(['k']);
  });
});
