/**
 * The saga builder refuses broken definitions at startup (build time), and TypeScript infers the
 * payload, reply and kept-data types from the zod schemas.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '../../src/messages/message.js';
import { defineSaga } from '../../src/saga/definition.js';

const Start = defineMessage({ type: 'D.Start', topic: 'd.saga', schema: z.object({ n: z.number() }) });
const Cmd = defineMessage({ type: 'D.Cmd', topic: 'd.p', schema: z.object({ n: z.number() }) });
const Ok = defineMessage({ type: 'D.Ok', schema: z.object({ ref: z.string() }) });
const No = defineMessage({ type: 'D.No', schema: z.object({}) });
const Undo = defineMessage({ type: 'D.Undo', topic: 'd.p', schema: z.object({ ref: z.string() }) });

const base = () => defineSaga({ name: 'def', start: Start, data: (s) => ({ n: s.n }) });
const step = { command: Cmd, payload: (d: { n: number }) => ({ n: d.n }), success: [Ok] } as const;

describe('defineSaga', () => {
  it('builds a frozen definition with its registry, topic and consumer', () => {
    const s = base().step('one', step).build();
    expect(s.topic).toBe('d.saga');
    expect(s.consumer).toBe('orchestrator.def');
    expect(s.registry.types()).toEqual(['D.Cmd', 'D.Ok', 'D.Start']);
    expect(Object.isFrozen(s)).toBe(true);
    expect(s.step('one')!.onFailure).toBe('compensate');
  });

  it('refuses duplicate step names', () => {
    expect(() => base().step('one', step).step('one', step)).toThrow(/used twice/);
  });

  it('refuses a reply that means both success and failure', () => {
    expect(() => base().step('one', { ...step, failure: [Ok] })).toThrow(/both success and failure/);
  });

  it('refuses a command without a topic and a start message without a topic', () => {
    const NoTopic = defineMessage({ type: 'D.NoTopic', schema: z.object({}) });
    expect(() => base().step('one', { command: NoTopic, payload: () => ({}), success: [Ok] })).toThrow(/must name a topic/);
    expect(() => defineSaga({ name: 'x', start: NoTopic, data: () => ({ n: 1 }) }).step('one', step).build()).toThrow(/must name a topic/);
  });

  it('refuses one type name standing for two schemas', () => {
    const OkAgain = defineMessage({ type: 'D.Ok', schema: z.object({ other: z.number() }) });
    expect(() => base().step('one', step).step('two', { command: Cmd, payload: (d) => ({ n: d.n }), success: [OkAgain] }).build()).toThrow(
      /defined twice/,
    );
  });

  it('refuses bad names, no steps, bad retry and timeout settings', () => {
    expect(() => defineSaga({ name: 'Bad Name', start: Start, data: () => ({ n: 1 }) }).step('one', step).build()).toThrow(/invalid saga name/);
    expect(() => base().build()).toThrow(/at least one step/);
    expect(() => base().step('one', { ...step, retry: { maxAttempts: 0 } })).toThrow(/maxAttempts/);
    expect(() => base().step('one', { ...step, timeoutMs: -1 })).toThrow(/timeoutMs/);
    expect(() => base().step('bad name', step)).toThrow(/invalid step name/);
  });

  it('infers payload, reply and kept types from the schemas', () => {
    base()
      .step('typed', {
        command: Cmd,
        payload: (d) => {
          expectTypeOf(d).toEqualTypeOf<{ n: number }>();
          return { n: d.n };
        },
        success: [Ok],
        failure: [No],
        keep: (reply) => {
          expectTypeOf(reply).toEqualTypeOf<{ ref: string }>();
          return { ref: reply.ref };
        },
        compensate: {
          command: Undo,
          payload: (_d, kept) => {
            expectTypeOf(kept).toEqualTypeOf<{ ref: string }>();
            return { ref: kept.ref };
          },
          success: [Ok],
        },
      })
      .build();
  });
});
