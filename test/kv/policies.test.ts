import { describe, expect, it } from 'vitest';
import type { KvPolicyName } from '../../worker/model/types';
import { maxRelErr, testGpu } from '../gpu';
import { DTYPES, kvDim, makeDriver, prefillDecode, type Driver } from './harness';

/** Same resident positions on the GPU and in the reference; for tova/h2o also the same scores. */
async function sameResidents(dr: Driver, L: number, hkv: number, seq = 0): Promise<void> {
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < hkv; h++) {
      expect(await dr.cache.residentPositions(l, seq, h), `layer ${l} head ${h}`).toEqual(dr.ref.residentPositions(l, seq, h));
      if (dr.cache.policy === 'tova' || dr.cache.policy === 'h2o') {
        const got = await dr.cache.inspect(l, seq, h);
        const want = got.map((t) => dr.ref.score(l, seq, h, t.pos)!);
        expect(maxRelErr(got.map((t) => t.score!), want, 1e-6, 1e-4)).toBeLessThanOrEqual(1);
      }
    }
  }
}

describe.each(DTYPES)('training-free policies, K/V in %s: GPU == CPU reference of each rule', (dtype) => {
  const cases: Array<{ policy: KvPolicyName; g: number; budget: number }> = [
    { policy: 'window', g: 1, budget: 10 },
    { policy: 'window', g: 4, budget: 7 },
    { policy: 'tova', g: 1, budget: 10 },
    { policy: 'tova', g: 2, budget: 8 },
    { policy: 'tova', g: 4, budget: 12 },
    { policy: 'h2o', g: 1, budget: 10 },
    { policy: 'h2o', g: 2, budget: 8 },
    { policy: 'h2o', g: 4, budget: 12 },
  ];
  for (const { policy, g, budget } of cases) {
    it(`${policy}, budget ${budget}, group size ${g}: prefill 30 in chunks of 8, 40 decode steps, same residents`, async () => {
      const gpu = await testGpu();
      const hkv = 2;
      const dr = makeDriver(gpu, {
        shape: { numLayers: 2, numHeads: hkv * g, numKvHeads: hkv, headDim: kvDim(16, dtype), dms: null },
        cache: { policy, maxTokens: 80, maxStepTokens: 8, budget, dtype },
        seed: budget * 10 + g,
        qkScale: 2,
      });
      await prefillDecode(dr, 30, 8, 20);
      await sameResidents(dr, 2, hkv);
      await prefillDecode(dr, 0, 8, 20);
      await sameResidents(dr, 2, hkv);
      const st = await dr.cache.stats();
      expect(st.residentTokens).toBe(2 * hkv * budget);
      expect(st.peakTokens).toBe(2 * hkv * budget);
      expect(st.tokenReads).toBe(dr.ref.tokenReads);
      expect(st.budgetEvictions).toBe(0);
      if (policy === 'window') {
        // StreamingLLM: the 4 sinks and the budget-4 most recent tokens.
        const want = [0, 1, 2, 3, ...Array.from({ length: budget - 4 }, (_, i) => 70 - (budget - 4) + i)];
        expect(await dr.cache.residentPositions(1, 0, 1)).toEqual(want);
      }
      if (policy === 'h2o') {
        // The budget/2 most recent tokens are always resident.
        const res = await dr.cache.residentPositions(0, 0, 0);
        for (let t = 70 - budget / 2; t < 70; t++) expect(res).toContain(t);
      }
      dr.cache.destroy();
    });
  }
});

describe.each(DTYPES)('long contexts, K/V in %s: key splits (flash-decoding) with every policy', (dtype) => {
  const cases: Array<{ policy: KvPolicyName; budget?: number }> = [
    { policy: 'dms' },
    { policy: 'dms', budget: 50 },
    { policy: 'window', budget: 150 },
    { policy: 'tova', budget: 150 },
    { policy: 'h2o', budget: 150 },
  ];
  for (const { policy, budget } of cases) {
    it(`${policy}${budget ? `, budget ${budget}` : ''}: prefill 200 in chunks of 40, 12 decode steps, 64 keys per split`, async () => {
      const gpu = await testGpu();
      const dr = makeDriver(gpu, {
        shape: { numLayers: 1, numHeads: 4, numKvHeads: 2, headDim: 32, dms: { windowSize: 16, alphaScale: 100, alphaOffset: 5, cr: null, separateAlpha: false } },
        cache: { policy, maxTokens: 256, maxStepTokens: 40, budget, tuning: { splitKeys: 64 }, dtype },
        seed: 77,
        evictRate: 0.7,
        dense: policy === 'dms' && !budget,
      });
      await prefillDecode(dr, 200, 40, 12);
      await sameResidents(dr, 1, 2);
      const st = await dr.cache.stats();
      expect(st.residentTokens).toBe(dr.ref.resident());
      expect(st.budgetEvictions).toBe(dr.ref.budgetEvictions);
      if (budget && policy === 'dms') expect(st.budgetEvictions).toBeGreaterThan(0);
      dr.cache.destroy();
    });
  }
});
