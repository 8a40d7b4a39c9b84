/**
 * Seeded randomness for tests: the seed comes from SAGAFLOW_TEST_SEED or is drawn once, and is
 * printed so a failing run can be repeated exactly.
 */
export function seededRandom(label: string): { seed: number; random: () => number } {
  const seed = process.env.SAGAFLOW_TEST_SEED ? Number(process.env.SAGAFLOW_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);
  console.log(`[sagaflow tests] ${label}: seed ${seed} (repeat with SAGAFLOW_TEST_SEED=${seed})`);
  return { seed, random: mulberry32(seed) };
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
