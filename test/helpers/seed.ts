import { mulberry32 } from '../../src/testing/random.js';

export { mulberry32 };
/**
 * Seeded randomness for tests: the seed comes from SAGAFLOW_TEST_SEED or is drawn once, and is
 * printed so a failing run can be repeated exactly.
 */
export function seededRandom(label: string): { seed: number; random: () => number } {
  const seed = process.env.SAGAFLOW_TEST_SEED ? Number(process.env.SAGAFLOW_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);
  console.log(`[sagaflow tests] ${label}: seed ${seed} (repeat with SAGAFLOW_TEST_SEED=${seed})`);
  return { seed, random: mulberry32(seed) };
}
