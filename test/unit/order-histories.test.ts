/**
 * The order example's golden histories (examples/order/histories/*.json, recorded by record.ts
 * there with a real worker and `history export`'s format) replayed against the order saga as it
 * is now, with the pure engine. A change to the saga that would take any of them down another
 * path fails here with the input that diverged: such a change needs a new definition version.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { orderSaga } from '../../examples/order/index.js';
import { readHistory, replayHistory, replayHistoryFiles } from '../../src/testing/replay.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../../examples/order/histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe('order saga golden histories', () => {
  it('keeps one history per way an order ends', () => {
    expect(files).toEqual(['compensated.json', 'completed.json', 'replayed.json', 'timed-out.json']);
    const ends = files.map((f) => replayHistory(orderSaga, readHistory(join(dir, f)), f).final!.status);
    expect(ends).toEqual(['compensated', 'completed', 'completed', 'compensated']);
  });

  it('every recorded history still takes the same path', () => {
    const results = replayHistoryFiles(orderSaga, files.map((f) => join(dir, f)));
    expect(results.map((r) => r.replayed)).toEqual(files.map((f) => readHistory(join(dir, f)).inputs.length));
  });

  it('an incompatible change fails with the input that diverged (shipping dropped from the saga)', () => {
    const changed = orderSaga.derive({ version: 2 }).removeStep('shipOrder').build();
    expect(() => replayHistoryFiles({ ...changed, version: 1 } as typeof changed, files.map((f) => join(dir, f)))).toThrow(
      /2 of 4 histories diverged:\n.*completed\.json \(order v1\) diverged at input #3 of 4, reply PaymentCharged[^\n]*\n {2}status: recorded "running", now "completed"/,
    );
  });
});
