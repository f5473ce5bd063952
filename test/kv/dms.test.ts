import { describe, expect, it } from 'vitest';
import type { DmsConfig } from '../../worker/model/types';
import { testGpu } from '../gpu';
import { DTYPES, kvDim, makeDriver, prefillDecode } from './harness';

const dmsCfg = (windowSize: number): DmsConfig => ({ windowSize, alphaScale: 100, alphaOffset: 5, cr: null, separateAlpha: false });

describe.each(DTYPES)("policy 'dms', K/V in %s: GPU == brute-force reference == dense visibility mask", (dtype) => {
  for (const w of [1, 2, 8]) {
    for (const g of [1, 2, 4]) {
      it(`w=${w}, group size ${g}: prefill in chunks, decode, second turn, decode`, async () => {
        const gpu = await testGpu();
        const hkv = g === 4 ? 1 : 2;
        const shape = { numLayers: 2, numHeads: hkv * g, numKvHeads: hkv, headDim: 32, dms: dmsCfg(w) };
        const dr = makeDriver(gpu, {
          shape,
          cache: { policy: 'dms', maxTokens: 96, maxStepTokens: 12, dtype },
          seed: 100 * w + g,
          dense: true,
          evictRate: 0.6,
        });
        await prefillDecode(dr, 29, 12, 12); // turn 1: prompt 29 (chunks 12, 12, 5), 12 decode steps
        await prefillDecode(dr, 17, 12, 10); // turn 2 continues on the compressed cache
        const st = await dr.cache.stats();
        expect(st.tokensSeen).toBe(68);
        expect(st.residentTokens).toBe(dr.ref.resident());
        expect(st.peakTokens).toBe(dr.ref.peakResident);
        expect(st.residentTokens).toBeLessThan(68 * 2 * hkv); // something was evicted
        expect(st.tokenReads).toBe(dr.ref.tokenReads);
        expect(st.tokenReads).toBeLessThan(st.tokenReadsFull);
        expect(st.peakTokensFull).toBe(68 * 2 * hkv);
        expect(st.compression).toBeCloseTo(st.peakTokensFull / st.peakTokens, 12);
        expect(st.budgetEvictions).toBe(0);
        dr.cache.destroy();
      });
    }
  }

  it('the shift by one at step boundaries: each step 1 token, decisions alternating per position', async () => {
    const gpu = await testGpu();
    // Token j is marked iff the logit at j+1 is positive: positions with odd j+1 evict j.
    const dr = makeDriver(gpu, {
      shape: { numLayers: 1, numHeads: 2, numKvHeads: 2, headDim: kvDim(16, dtype), dms: dmsCfg(2) },
      cache: { policy: 'dms', maxTokens: 40, maxStepTokens: 4, dtype },
      alphaFn: (_l, _s, pos, h) => ((pos + h) % 2 === 1 ? 3 : -3),
      dense: true,
    });
    await prefillDecode(dr, 3, 4, 30);
    // After 33 tokens, head 0 keeps even positions' ... compare exact resident sets with the rule.
    for (let h = 0; h < 2; h++) {
      const res = dr.ref.residentPositions(0, 0, h);
      const want: number[] = [];
      for (let j = 0; j < 33; j++) {
        const marked = (j + 1 + h) % 2 === 1;
        if (!marked || j + 2 + 1 > 32) want.push(j);
      }
      expect(res).toEqual(want);
      // The GPU holds the same tokens, each marked by the decision of the token after it.
      const got = await dr.cache.inspect(0, 0, h);
      expect(got.map((t) => t.pos)).toEqual(want);
      for (const t of got) expect(t.marked, `pos ${t.pos}`).toBe(t.pos < 32 && (t.pos + 1 + h) % 2 === 1);
    }
    const st = await dr.cache.stats();
    expect(st.residentTokens).toBe(dr.ref.resident());
    dr.cache.destroy();
  });

  it('all tokens marked: the cache holds exactly w+1 tokens per stream and reuses their slots', async () => {
    const gpu = await testGpu();
    const w = 3;
    const dr = makeDriver(gpu, {
      shape: { numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: kvDim(16, dtype), dms: dmsCfg(w) },
      cache: { policy: 'dms', maxTokens: 200, maxStepTokens: 16, budget: w + 1, dtype },
      alphaFn: () => 1,
      dense: true,
    });
    const bytes0 = (await dr.cache.stats()).allocatedBytes;
    await prefillDecode(dr, 40, 16, 60);
    const st = await dr.cache.stats();
    expect(st.residentTokens).toBe(2 * 2 * (w + 1));
    expect(st.peakTokens).toBe(2 * 2 * (w + 1));
    expect(st.budgetEvictions).toBe(0);
    expect(st.allocatedBytes).toBe(bytes0);
    expect(dr.cache.capacity).toBe(w + 1);
    dr.cache.destroy();
  });

  it('budget fallback: evicts the oldest kept token outside the window, counts it, stays exact', async () => {
    const gpu = await testGpu();
    const dr = makeDriver(gpu, {
      shape: { numLayers: 1, numHeads: 4, numKvHeads: 2, headDim: kvDim(16, dtype), dms: dmsCfg(2) },
      cache: { policy: 'dms', maxTokens: 120, maxStepTokens: 16, budget: 10, dtype },
      seed: 5,
      evictRate: 0.3,
    });
    await prefillDecode(dr, 45, 16, 40);
    const st = await dr.cache.stats();
    expect(dr.ref.budgetEvictions).toBeGreaterThan(0);
    expect(st.budgetEvictions).toBe(dr.ref.budgetEvictions);
    expect(st.residentTokens).toBe(dr.ref.resident());
    expect(st.peakTokens).toBeLessThanOrEqual(1 * 2 * 10);
    dr.cache.destroy();
  });

  it("a DMS model under policy 'full' keeps and sees everything", async () => {
    const gpu = await testGpu();
    const dr = makeDriver(gpu, {
      shape: { numLayers: 1, numHeads: 4, numKvHeads: 2, headDim: kvDim(16, dtype), dms: dmsCfg(2) },
      cache: { policy: 'full', maxTokens: 60, maxStepTokens: 8, dtype },
      evictRate: 0.8,
    });
    await prefillDecode(dr, 20, 8, 10);
    expect((await dr.cache.stats()).residentTokens).toBe(30 * 2);
    dr.cache.destroy();
  });
});
