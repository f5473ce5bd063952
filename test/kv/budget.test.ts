import { describe, expect, it } from 'vitest';
import { testGpu } from '../gpu';
import { kvRowBytes } from '../../worker/model/dtype';
import { DTYPES, kvDim, makeDriver } from './harness';

describe.each(DTYPES)('DMS memory stays within its budget over a long generation, K/V in %s', (dtype) => {
  it('2000 tokens (prefill 40 + 1960 decode steps), budget 16 slots, w=4: exact every step', async () => {
    const gpu = await testGpu();
    const budget = 16;
    const d = kvDim(16, dtype);
    const tokenBytes = 2 * kvRowBytes(d, dtype);
    const dr = makeDriver(gpu, {
      shape: { numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: d, dms: { windowSize: 4, alphaScale: 100, alphaOffset: 5, cr: null, separateAlpha: false } },
      cache: { policy: 'dms', maxTokens: 2000, maxStepTokens: 20, budget, dtype },
      seed: 11,
      evictRate: 0.6,
    });
    const before = gpu.bytes();
    const allocated = (await dr.cache.stats()).allocatedBytes;
    // K + V of 16 slots, d 16, plus state, scratch and counters: far below a full 2000-token cache.
    expect(allocated).toBeLessThan(2000 * tokenBytes);
    await dr.step([{ seq: 0, tokens: 20 }]);
    await dr.step([{ seq: 0, tokens: 20 }]);
    for (let i = 0; i < 1960; i++) {
      await dr.step([{ seq: 0, tokens: 1 }]);
      if (i % 200 === 0) {
        const st = await dr.cache.stats();
        expect(st.residentTokens).toBeLessThanOrEqual(budget);
        expect(st.residentTokens).toBe(dr.ref.resident());
        expect(st.allocatedBytes).toBe(allocated);
      }
    }
    const st = await dr.cache.stats();
    expect(st.tokensSeen).toBe(2000);
    expect(st.peakTokens).toBeLessThanOrEqual(budget);
    expect(st.peakTokensFull).toBe(2000);
    expect(st.compression).toBeGreaterThanOrEqual(2000 / budget);
    expect(st.kvDtype).toBe(dtype);
    expect(st.bytesPerToken).toBe(tokenBytes);
    expect(st.peakBytes).toBe(st.peakTokens * tokenBytes);
    expect(st.budgetEvictions).toBeGreaterThan(100);
    expect(st.budgetEvictions).toBe(dr.ref.budgetEvictions);
    expect(st.tokenReads).toBe(dr.ref.tokenReads);
    expect(st.allocatedBytes).toBe(allocated);
    expect(gpu.bytes()).toBe(before); // no buffer grew or leaked over the run
    dr.cache.destroy();
    expect(gpu.bytes()).toBe(before - allocated);
  });
});
