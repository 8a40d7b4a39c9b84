/** The Batcher's spare slots: a short queue starts at once beside busy batches; a long one waits. */
import { describe, expect, it } from 'vitest';
import { Batcher } from '../../src/scheduling/batcher.js';

function gatedBatcher(opts: { maxBatch: number; maxConcurrent: number; spare: number; spareQueueMax?: number }) {
  const started: number[][] = [];
  const gates: (() => void)[] = [];
  const b = new Batcher<number, void>({
    ...opts,
    run: async (items) => {
      started.push(items);
      await new Promise<void>((r) => gates.push(r));
      return items.map(() => ({ ok: true as const, value: undefined }));
    },
  });
  const turn = () => new Promise((r) => setImmediate(r));
  return { b, started, gates, turn };
}

describe('Batcher spare slots', () => {
  it('starts a short queue in a spare slot while the regular slots are busy', async () => {
    const { b, started, gates, turn } = gatedBatcher({ maxBatch: 16, maxConcurrent: 1, spare: 1 });
    const all = [b.submit(1)];
    await turn();
    expect(started).toEqual([[1]]);
    all.push(b.submit(2), b.submit(3));
    await turn();
    expect(started).toEqual([[1], [2, 3]]); // queue of 2 <= 16/8: the spare slot takes it
    all.push(b.submit(4));
    await turn();
    expect(started.length).toBe(2); // both slots busy: 4 waits
    gates.shift()!();
    await turn();
    expect(started[2]).toEqual([4]);
    for (const g of gates.splice(0)) g();
    await turn();
    for (const g of gates.splice(0)) g();
    await Promise.all(all);
    await b.idle();
  });

  it('leaves the spare slot unused for a long queue, which waits and then goes as one large batch', async () => {
    const { b, started, gates, turn } = gatedBatcher({ maxBatch: 16, maxConcurrent: 1, spare: 2 });
    const all = [b.submit(0)];
    await turn();
    for (let i = 1; i <= 5; i++) all.push(b.submit(i)); // 5 > 16/8 = 2
    await turn();
    expect(started).toEqual([[0]]);
    gates.shift()!();
    await turn();
    expect(started[1]).toEqual([1, 2, 3, 4, 5]);
    for (const g of gates.splice(0)) g();
    await Promise.all(all);
    expect(b.batches).toBe(2);
  });

  it('without spare slots (the default) behaves as before', async () => {
    const { b, started, gates, turn } = gatedBatcher({ maxBatch: 16, maxConcurrent: 1, spare: 0 });
    const all = [b.submit(1)];
    await turn();
    all.push(b.submit(2));
    await turn();
    expect(started).toEqual([[1]]);
    gates.shift()!();
    await turn();
    expect(started[1]).toEqual([2]);
    for (const g of gates.splice(0)) g();
    await Promise.all(all);
  });
});
