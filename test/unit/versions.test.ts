/**
 * Definition versions without a database: derive() copies a version and edits the copy, a module
 * refuses two definitions with one name and version (DEFINITION_INVALID), the definition set picks
 * the newest for new sagas and the exact version for running ones, migrations are checked at load
 * and refuse sagas in steps they do not cover, and history replay names the input that diverged.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { DefinitionError } from '../../src/errors.js';
import { defineMessage } from '../../src/messages/message.js';
import { validateModule } from '../../src/module.js';
import { defineSaga } from '../../src/saga/definition.js';
import { decide, type SagaInput } from '../../src/saga/engine.js';
import { checkMigration, migrateInstance, type SagaMigration } from '../../src/saga/migration.js';
import { pathOf } from '../../src/saga/path.js';
import type { SagaInstance } from '../../src/saga/state.js';
import { DefinitionSet, waitingReason } from '../../src/saga/versions.js';
import { HISTORY_FORMAT, HistoryDivergence, replayHistory, type SagaHistory } from '../../src/testing/replay.js';

const Start = defineMessage({ type: 'V.Start', topic: 'v.saga', schema: z.object({ n: z.number() }) });
const DoA = defineMessage({ type: 'V.DoA', topic: 'v.a', schema: z.object({ n: z.number() }) });
const ADone = defineMessage({ type: 'V.ADone', schema: z.object({ ref: z.string() }) });
const UndoA = defineMessage({ type: 'V.UndoA', topic: 'v.a', schema: z.object({ ref: z.string() }) });
const AUndone = defineMessage({ type: 'V.AUndone', schema: z.object({}) });
const DoB = defineMessage({ type: 'V.DoB', topic: 'v.b', schema: z.object({ n: z.number() }) });
const BDone = defineMessage({ type: 'V.BDone', schema: z.object({}) });
const BRefused = defineMessage({ type: 'V.BRefused', schema: z.object({}) });
const DoC = defineMessage({ type: 'V.DoC', topic: 'v.c', schema: z.object({ n: z.number() }) });
const CDone = defineMessage({ type: 'V.CDone', schema: z.object({}) });

const v1 = defineSaga({ name: 'ver', version: 1, start: Start, data: (s) => ({ n: s.n }) })
  .step('a', {
    command: DoA,
    payload: (d) => ({ n: d.n }),
    success: [ADone],
    keep: (r) => ({ ref: r.ref }),
    compensate: { command: UndoA, payload: (_d, k) => ({ ref: k.ref }), success: [AUndone] },
  })
  .step('b', { command: DoB, payload: (d) => ({ n: d.n }), success: [BDone], failure: [BRefused] })
  .build();

// The common change: copy v1, add a step between a and b.
const v2 = v1.derive({ version: 2 }).step('c', { command: DoC, payload: (d) => ({ n: d.n + 1 }), success: [CDone] }, { after: 'a' }).build();

const SAGA = '22222222-2222-4222-8222-222222222222';
const ctx = { random: () => 0.5 };
let msg = 0;
const mid = () => `00000000-0000-4000-8000-${String(++msg).padStart(12, '0')}`;
const start = (): SagaInput => ({ kind: 'start', sagaId: SAGA, messageId: mid(), tenantId: 't', correlationId: 'c', payload: { n: 1 } });
const reply = (inst: SagaInstance, type: string, payload: unknown = {}): SagaInput => ({
  kind: 'reply',
  messageId: mid(),
  type,
  tenantId: 't',
  causationId: inst.state.cursor!.commandId!,
  headers: {},
  payload,
});

/** Runs inputs through decide() and records them as `sagaflow history export` would. */
function record(def: typeof v1, inputs: ((inst: SagaInstance | null) => SagaInput)[]): SagaHistory {
  let inst: SagaInstance | null = null;
  const out: SagaHistory['inputs'][number][] = [];
  for (const make of inputs) {
    const input = make(inst);
    const d = decide(def, inst, input, ctx);
    expect(d.outcome).toBe('applied');
    inst = d.instance;
    out.push({ version: inst!.version, definitionVersion: def.version, input: input as never, path: pathOf(d) });
  }
  return { format: HISTORY_FORMAT, sagaId: SAGA, sagaType: def.name, definitionVersion: def.version, inputs: out };
}

describe('derive', () => {
  it('copies the steps into a new version and edits only the copy', () => {
    expect(v2.version).toBe(2);
    expect(v2.steps.map((s) => `${s.index}:${s.name}`)).toEqual(['0:a', '1:c', '2:b']);
    expect(v1.steps.map((s) => `${s.index}:${s.name}`)).toEqual(['0:a', '1:b']);
    expect(v2.step('a')!.compensation).toBe(v1.step('a')!.compensation);
    const v3 = v2.derive({ version: 3 }).removeStep('c').step('b', { command: DoB, payload: (d) => ({ n: d.n * 2 }), success: [BDone] }, { replace: 'b' }).build();
    expect(v3.steps.map((s) => s.name)).toEqual(['a', 'b']);
    expect(v3.step('b')!.forward.failure.size).toBe(0);
    expect(() => v1.derive({ version: 1 })).toThrow(/above 1/);
    expect(() => v1.derive({ version: 2 }).step('x', { command: DoC, payload: () => ({ n: 1 }), success: [CDone] }, { before: 'nope' })).toThrow(/no step nope/);
    expectTypeOf(v1.derive({ version: 9 }).step).parameter(1).toHaveProperty('payload');
  });
});

describe('DefinitionSet and module validation', () => {
  it('refuses two definitions with one name and version (DEFINITION_INVALID)', () => {
    const again = v1.derive({ version: 2 }).build();
    const err = (() => {
      try {
        validateModule({ sagas: [v1, v2, again] });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DefinitionError);
    expect((err as DefinitionError).code).toBe('DEFINITION_INVALID');
    expect((err as Error).message).toMatch(/ver v2 is defined twice/);
  });

  it('accepts versions side by side: newest for new sagas, the exact version for running ones', () => {
    validateModule({ sagas: [v2, v1] });
    const set = new DefinitionSet([v2, v1]);
    expect(set.newest('ver')).toBe(v2);
    expect(set.get('ver', 1)).toBe(v1);
    expect(set.get('ver', 3)).toBeUndefined();
    expect(set.keys()).toEqual([{ type: 'ver', version: 1 }, { type: 'ver', version: 2 }]);
    expect(waitingReason({ type: 'order', version: 1 })).toBe('waiting for definition order v1');
  });

  it('refuses versions of one saga with different start messages', () => {
    const Other = defineMessage({ type: 'V.Other', topic: 'v.saga2', schema: z.object({ n: z.number() }) });
    const odd = defineSaga({ name: 'ver', version: 5, start: Other, data: (s) => ({ n: s.n }) }).step('a', { command: DoA, payload: (d) => ({ n: d.n }), success: [ADone] }).build();
    expect(() => new DefinitionSet([v1, odd])).toThrow(/share the start message/);
  });

  it('checks migrations at load: both versions defined, every mapped step exists', () => {
    const m: SagaMigration = { saga: 'ver', from: 1, to: 2, steps: { a: 'a', b: 'b' } };
    validateModule({ sagas: [v1, v2], migrations: [m] });
    expect(() => validateModule({ sagas: [v1], migrations: [m] })).toThrow(/must define both versions/);
    expect(() => checkMigration({ ...m, steps: { a: 'zz' } }, v1, v2)).toThrow(/v2 has no step zz/);
    expect(() => validateModule({ sagas: [v1, v2], migrations: [m, m] })).toThrow(/two migrations/);
  });
});

describe('migrateInstance', () => {
  const atB = (): SagaInstance => {
    const s = decide(v1, null, start(), ctx).instance!;
    return decide(v1, s, reply(s, 'V.ADone', { ref: 'r1' }), ctx).instance!;
  };

  it('renames the steps and maps the data of a saga the mapping covers', () => {
    const inst = atB();
    const r = migrateInstance({ saga: 'ver', from: 1, to: 2, steps: { a: 'a', b: 'b' }, data: (d: { n: number }) => ({ n: d.n, migrated: true }) }, v1, v2, inst);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.state.cursor?.step).toBe('b');
    expect(r.state.done).toEqual(['a']);
    expect(r.data).toEqual({ n: 1, migrated: true });
    // The migrated saga goes on with v2: b's success ends it (c is before b, not run again).
    const moved = { ...inst, definitionVersion: 2, data: r.data, state: r.state };
    const d = decide(v2, moved, reply(moved, 'V.BDone'), ctx);
    expect(d.instance!.status).toBe('completed');
  });

  it('refuses a saga in a step the mapping does not cover, and a reply the new step would not understand', () => {
    const inst = atB();
    const r = migrateInstance({ saga: 'ver', from: 1, to: 2, steps: { a: 'a' } }, v1, v2, inst);
    expect(r).toEqual({ ok: false, reason: expect.stringMatching(/step\(s\) b, which the migration ver v1 -> v2 does not cover/) });
    const r2 = migrateInstance({ saga: 'ver', from: 1, to: 2, steps: { a: 'a', b: 'c' } }, v1, v2, inst);
    expect(r2).toEqual({ ok: false, reason: expect.stringMatching(/waits for the reply to V.DoB at b; c in v2 sends V.DoC instead/) });
  });
});

describe('replayHistory', () => {
  const completed = () =>
    record(v1, [() => start(), (i) => reply(i!, 'V.ADone', { ref: 'r1' }), (i) => reply(i!, 'V.BDone')]);

  it('replays a recorded history against the definition it ran on', () => {
    const h = completed();
    const r = replayHistory(v1, h);
    expect(r.replayed).toBe(3);
    expect(r.final!.status).toBe('completed');
  });

  it('fails on an incompatible change and says which input diverged and how', () => {
    const h = completed();
    let err: unknown;
    try {
      replayHistory({ ...v2, version: 1 } as typeof v2, h, 'golden completed');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HistoryDivergence);
    const msg = (err as Error).message;
    expect(msg).toMatch(/golden completed \(ver v1\) diverged at input #2 of 3, reply V.ADone/);
    expect(msg).toMatch(/commands sent: recorded \[\{"phase":"forward","step":"b","type":"V.DoB"\}\], now \[\{"phase":"forward","step":"c","type":"V.DoC"\}\]/);
    expect((err as HistoryDivergence).index).toBe(1);
  });

  it('passes a compatible change (a payload tweak takes the same path)', () => {
    const tweaked = v1.derive({ version: 2 }).step('b', { command: DoB, payload: (d) => ({ n: d.n + 100 }), success: [BDone], failure: [BRefused] }, { replace: 'b' }).build();
    expect(replayHistory(tweaked, completed()).replayed).toBe(3);
  });
});
