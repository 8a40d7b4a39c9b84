/** The hand-written name-based UUIDs give exactly the ids of the reference implementation. */
import fc from 'fast-check';
import { v5 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { DERIVED_ID_NAMESPACE, uuidNamespace, uuidV5 } from '../../src/ids.js';
import { seededRandom } from '../helpers/seed.js';

describe('uuidV5', () => {
  const ns = uuidNamespace(DERIVED_ID_NAMESPACE);
  const { seed } = seededRandom('uuid v5');
  it('matches the uuid package for any name', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (name) => uuidV5(name, ns) === v5(name, DERIVED_ID_NAMESPACE)), {
      seed,
      numRuns: 2000,
    });
  });
  it('gives the published id for a known name', () => {
    expect(uuidV5('', ns)).toBe('f604bd4f-d09d-5ff9-992f-3c976aea59a6');
  });
  it('refuses a namespace that is not a UUID', () => {
    expect(() => uuidNamespace('nope')).toThrow(/not a UUID/);
  });
});
