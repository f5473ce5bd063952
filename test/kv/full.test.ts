import { describe, expect, it } from 'vitest';
import { testGpu } from '../gpu';
import { makeDriver, prefillDecode } from './harness';

const shapes = [
  { hq: 4, hkv: 4, d: 16 },
  { hq: 4, hkv: 2, d: 32 },
  { hq: 8, hkv: 2, d: 64 },
  { hq: 8, hkv: 2, d: 128 },
  { hq: 6, hkv: 3, d: 40 },
];

describe("policy 'full': GPU attention == dense causal reference", () => {
  for (const { hq, hkv, d } of shapes) {
    it(`prefill 37 in chunks of 16, then 20 decode steps (Hq ${hq}, Hkv ${hkv}, d ${d}, 2 layers)`, async () => {
      const gpu = await testGpu();
      const dr = makeDriver(gpu, {
        shape: { numLayers: 2, numHeads: hq, numKvHeads: hkv, headDim: d, dms: null },
        cache: { policy: 'full', maxTokens: 64, maxStepTokens: 16 },
        seed: hq * 1000 + d,
      });
      await prefillDecode(dr, 37, 16, 20);
      const st = await dr.cache.stats();
      expect(st.tokensSeen).toBe(57);
      expect(st.residentTokens).toBe(57 * 2 * hkv);
      expect(st.peakTokens).toBe(57 * 2 * hkv);
      expect(st.compression).toBe(1);
      expect(st.tokenReads).toBe(st.tokenReadsFull);
      expect(st.tokenReads).toBe(dr.ref.tokenReads);
      dr.cache.destroy();
    });
  }

  it('splits long decode over several workgroups (flash-decoding) and merges, forced and automatic', async () => {
    const gpu = await testGpu();
    for (const splitKeys of [64, 0]) {
      const dr = makeDriver(gpu, {
        shape: { numLayers: 1, numHeads: 4, numKvHeads: 1, headDim: 32, dms: null },
        cache: { policy: 'full', maxTokens: 400, maxStepTokens: 128, tuning: { splitKeys } },
        seed: 7 + splitKeys,
        qkScale: 3,
      });
      await prefillDecode(dr, 300, 128, 6);
      dr.cache.destroy();
    }
  });

  it('stays exact with peaky scores (numerically stable softmax)', async () => {
    const gpu = await testGpu();
    const dr = makeDriver(gpu, {
      shape: { numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 64, dms: null },
      cache: { policy: 'full', maxTokens: 80, maxStepTokens: 8, tuning: { splitKeys: 64 } },
      seed: 99,
      qkScale: 6,
      atol: 1e-4,
      rtol: 1e-3,
    });
    await prefillDecode(dr, 70, 8, 5);
    dr.cache.destroy();
  });
});
