/**
 * A small seeded PRNG for sampling: a Weyl sequence (step 0x9E3779B9) through the MurmurHash3 32-bit
 * finaliser. Deterministic per seed; returns floats in [0, 1) with 32 random bits.
 */
export function createRandom(seed: number): () => number {
  let state = (Math.trunc(seed) ^ 0x5bd1e995) >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    return (z >>> 0) / 4294967296;
  };
}
