/**
 * The resilience rules without a database: the engine holds an attempt at a closed gate (no row, no
 * command, no attempt used) and sends it when asked again; outcomes are classified for the breaker
 * (a refusal never counts against it); a deadline compensates or fails by policy; and the breaker's
 * sliding-window counter opens, stays open, probes and closes as its row says.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '../../src/messages/message.js';
import { defineSaga } from '../../src/saga/definition.js';
import { decide, type DecideContext, type Decision, type SagaInput } from '../../src/saga/engine.js';
import type { SagaInstance } from '../../src/saga/state.js';
import { applyOutcomes, rollWindow, windowEstimate, type BreakerRow, type Outcomes } from '../../src/resilience/breaker.js';
import { breakerPolicy } from '../../src/resilience/policy.js';
import { mulberry32 } from '../helpers/seed.js';

const Start = defineMessage({ type: 'R.Start', topic: 'r.saga', schema: z.object({ n: z.number() }) });
const Pay = defineMessage({ type: 'R.Pay', topic: 'r.pay', schema: z.object({ n: z.number() }) });
const Paid = defineMessage({ type: 'R.Paid', schema: z.object({}) });
const Declined = defineMessage({ type: 'R.Declined', schema: z.object({ why: z.string() }) });
const Refund = defineMessage({ type: 'R.Refund', topic: 'r.pay', schema: z.object({}) });
const Refunded = defineMessage({ type: 'R.Refunded', schema: z.object({}) });
const Ship = defineMessage({ type: 'R.Ship', topic: 'r.ship', schema: z.object({}) });
const Shipped = defineMessage({ type: 'R.Shipped', schema: z.object({}) });

function sagaWith(deadline?: { ms?: number; onExpiry?: 'compensate' | 'fail' }) {
  return defineSaga({ name: 'res', start: Start, data: (s) => ({ n: s.n }), ...(deadline ? { deadline } : {}) })
    .step('pay', {
      command: Pay,
      payload: (d) => ({ n: d.n }),
      success: [Paid],
      failure: [Declined],
      retryFailures: (r) => r.why === 'down',
      technicalFailures: (r) => r.why === 'down',
      compensate: { command: Refund, payload: () => ({}), success: [Refunded] },
      timeoutMs: 1000,
      retry: { maxAttempts: 2 },
    })
    .step('ship', { command: Ship, payload: () => ({}), success: [Shipped], gate: 'R.Ship' })
    .build();
}

const ctx = (hold?: Map<string, { delayMs: number; reason: string }>): DecideContext => ({ random: mulberry32(7), ...(hold ? { hold } : {}) });
const start: SagaInput = { kind: 'start', sagaId: '00000000-0000-4000-8000-000000000001', messageId: 'm1', tenantId: 't', correlationId: 'c', payload: { n: 1 } };
const reply = (inst: SagaInstance, type: string, payload: unknown): SagaInput => ({
  kind: 'reply',
  messageId: `r-${inst.version}`,
  type,
  tenantId: 't',
  causationId: inst.state.cursor!.commandId!,
  headers: {},
  payload,
});
const held = (gate: string) => new Map([[gate, { delayMs: 1234, reason: `waiting: circuit ${gate} open` }]]);

describe('engine: held attempts', () => {
  it('a closed gate holds the attempt: no command, no row, no attempt used, the reason on the cursor; a later timer sends it', () => {
    const def = sagaWith();
    const d = decide(def, null, start, ctx(held('r.pay')));
    expect(d.commands).toEqual([]);
    expect(d.steps).toEqual([]);
    expect(d.wake).toEqual({ delayMs: 1234 });
    expect(d.instance!.status).toBe('running');
    expect(d.instance!.state.cursor).toMatchObject({ step: 'pay', attempt: 1, waiting: 'held', held: { gate: 'r.pay', reason: 'waiting: circuit r.pay open' } });
    expect(d.instance!.state.seq).toBe(0);
    expect(d.instance!.state.holds).toBe(1);
    // Still closed: held again, same attempt.
    const again = decide(def, d.instance, { kind: 'timer' }, ctx(held('r.pay')));
    expect(again.instance!.state.cursor).toMatchObject({ attempt: 1, waiting: 'held' });
    const sent = decide(def, again.instance, { kind: 'timer' }, ctx());
    expect(sent.commands.map((c) => [c.message.type, c.gate])).toEqual([['R.Pay', 'r.pay']]);
    expect(sent.instance!.state.cursor).toMatchObject({ attempt: 1, waiting: 'reply', seq: 1 });
    // The step's timeout starts with the actual send.
    expect(sent.wake).toEqual({ delayMs: 1000 });
  });

  it('outcomes for the breaker: timeout and outage reply are technical, a decline and a success are ok; a step may name its own gate', () => {
    const def = sagaWith();
    const s = decide(def, null, start, ctx()).instance!;
    expect(decide(def, s, reply(s, 'R.Declined', { why: 'card' }), ctx()).signals).toEqual([{ gate: 'r.pay', outcome: 'ok' }]);
    expect(decide(def, s, reply(s, 'R.Declined', { why: 'down' }), ctx()).signals).toEqual([{ gate: 'r.pay', outcome: 'technical' }]);
    expect(decide(def, s, { kind: 'timer' }, ctx()).signals).toEqual([{ gate: 'r.pay', outcome: 'technical' }]);
    const paid = decide(def, s, reply(s, 'R.Paid', {}), ctx());
    expect(paid.signals).toEqual([{ gate: 'r.pay', outcome: 'ok' }]);
    expect(paid.commands[0]!.gate).toBe('R.Ship');
  });

  it('a cancel of a held saga compensates without touching a step row', () => {
    const def = sagaWith();
    const h = decide(def, null, start, ctx(held('r.pay'))).instance!;
    const c = decide(def, h, { kind: 'cancel', reason: 'x' }, ctx());
    expect(c.instance!.status).toBe('compensated');
    expect(c.steps).toEqual([]);
  });
});

describe('engine: deadline', () => {
  it('the definition deadline goes with the start; a start may set its own', () => {
    expect(decide(sagaWith({ ms: 5000 }), null, start, ctx()).deadlineMs).toBe(5000);
    expect(decide(sagaWith({ ms: 5000 }), null, { ...start, deadlineMs: 50 } as SagaInput, ctx()).deadlineMs).toBe(50);
    expect(decide(sagaWith(), null, start, ctx()).deadlineMs).toBeUndefined();
  });

  it('expiry while running forward compensates what was done, the attempt in flight cancelled; once compensating it no longer applies', () => {
    const def = sagaWith({ ms: 5000 });
    let s = decide(def, null, start, ctx()).instance!;
    s = decide(def, s, reply(s, 'R.Paid', {}), ctx()).instance!;
    const d: Decision = decide(def, s, { kind: 'timer', deadline: true }, ctx());
    expect(d.instance!.status).toBe('compensating');
    expect(d.instance!.reason).toBe('deadline exceeded');
    expect(d.steps.find((r) => r.step === 'ship')).toMatchObject({ status: 'cancelled', error: 'deadline exceeded' });
    expect(d.commands.map((c) => c.message.type)).toEqual(['R.Refund']);
    expect(d.events.map((e) => e.type)).toContain('SagaDeadlineExpired');
    // A second deadline timer while compensating is an ordinary (stale) timer.
    const again = decide(def, d.instance, { kind: 'timer', deadline: true }, ctx());
    expect(again.events.map((e) => e.type)).not.toContain('SagaDeadlineExpired');
  });

  it('onExpiry fail stops the saga as failed', () => {
    const def = sagaWith({ ms: 5000, onExpiry: 'fail' });
    const s = decide(def, null, start, ctx()).instance!;
    const d = decide(def, s, { kind: 'timer', deadline: true }, ctx());
    expect(d.instance).toMatchObject({ status: 'failed', reason: 'deadline exceeded' });
  });
});

describe('breaker rules', () => {
  const p = breakerPolicy('x', { failureThreshold: 3, windowMs: 1000 });
  const row = (o: Partial<BreakerRow> = {}): BreakerRow => ({ state: 'closed', forced: null, failures: 0, calls: 0, prevFailures: 0, prevCalls: 0, windowAgeMs: 0, probeSaga: null, ...o });
  const outcomes = (technical: number, ok: number, bySaga: [string, 'ok' | 'technical'][] = []): Outcomes => ({ technical, ok, bySaga: new Map(bySaga) });

  it('opens at the threshold within the sliding window, counting the previous window by its overlap', () => {
    expect(applyOutcomes(row(), outcomes(2, 10), p)).toMatchObject({ state: 'closed', failures: 2, opened: false });
    expect(applyOutcomes(row({ failures: 2 }), outcomes(1, 0), p)).toMatchObject({ state: 'open', opened: true });
    // 2 failures in the previous window, 3/4 of it still overlapping: 1.5 + 1 < 3.
    const rolled = rollWindow(row({ failures: 2, windowAgeMs: 1250 }), 1000);
    expect(rolled).toMatchObject({ windowShift: 'advance', prevFailures: 2, failures: 0, ageMs: 250 });
    expect(windowEstimate(rolled, 1000).failures).toBeCloseTo(1.5);
    expect(applyOutcomes(row({ failures: 2, windowAgeMs: 1250 }), outcomes(1, 0), p).state).toBe('closed');
    expect(rollWindow(row({ failures: 9, windowAgeMs: 2500 }), 1000).windowShift).toBe('reset');
  });

  it('a failure rate needs enough calls and the share', () => {
    const r = breakerPolicy('x', { failureThreshold: 1, failureRate: 0.5, minCalls: 4 });
    expect(applyOutcomes(row(), outcomes(2, 0), r).state).toBe('closed');
    expect(applyOutcomes(row(), outcomes(2, 3), r).state).toBe('closed');
    expect(applyOutcomes(row(), outcomes(3, 1), r).state).toBe('open');
  });

  it('open ignores outcomes; half-open listens to its probe only: success closes (release), failure re-opens', () => {
    expect(applyOutcomes(row({ state: 'open' }), outcomes(0, 50), p)).toMatchObject({ state: 'open', opened: false, closed: false });
    const half = row({ state: 'half_open', probeSaga: 'probe' });
    expect(applyOutcomes(half, outcomes(1, 0, [['other', 'technical']]), p).state).toBe('half_open');
    expect(applyOutcomes(half, outcomes(0, 1, [['probe', 'ok']]), p)).toMatchObject({ state: 'closed', closed: true, windowShift: 'reset' });
    expect(applyOutcomes(half, outcomes(1, 0, [['probe', 'technical']]), p)).toMatchObject({ state: 'open', opened: true });
  });

  it('bad settings are refused at startup', () => {
    expect(() => breakerPolicy('x', { failureThreshold: 0 })).toThrow(/failureThreshold/);
    expect(() => breakerPolicy('x', { failureRate: 2 })).toThrow(/failureRate/);
    expect(() => breakerPolicy('x', { coolDownMs: -1 })).toThrow(/coolDownMs/);
  });
});
