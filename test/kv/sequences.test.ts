import { describe, expect, it } from 'vitest';
import type { KvPolicyName } from '../../worker/model/types';
import { testGpu } from '../gpu';
import { DTYPES, kvDim, makeDriver } from './harness';

const dms = { windowSize: 3, alphaScale: 100, alphaOffset: 5, cr: null, separateAlpha: false };

describe('several sequences in one cache', () => {
  for (const [policy, dtype] of (['full', 'dms', 'window', 'tova', 'h2o'] as KvPolicyName[]).flatMap((p) => DTYPES.map((t) => [p, t] as const))) {
    it(`${policy}, K/V in ${dtype}: segments of different sequences in the same step, then fork one prompt into parallel chains`, async () => {
      const gpu = await testGpu();
      const dr = makeDriver(gpu, {
        shape: { numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: kvDim(16, dtype), dms },
        cache: { policy, maxTokens: 64, maxStepTokens: 24, sequences: 4, budget: policy === 'full' ? undefined : 12, dtype },
        seed: 31,
        evictRate: 0.5,
      });
      // Two conversations prefilled in one step, then decoded together.
      await dr.step([{ seq: 1, tokens: 9 }, { seq: 0, tokens: 13 }]);
      await dr.step([{ seq: 0, tokens: 7 }, { seq: 1, tokens: 1 }]);
      for (let i = 0; i < 6; i++) await dr.step([{ seq: 0, tokens: 1 }, { seq: 1, tokens: 1 }]);
      // Fork sequence 0's compressed cache into 2 and 3; decode all three chains in one step each.
      dr.fork(0, [2, 3]);
      for (let i = 0; i < 8; i++) await dr.step([{ seq: 2, tokens: 1 }, { seq: 0, tokens: 1 }, { seq: 3, tokens: 1 }]);
      let st = await dr.cache.stats();
      expect(st.residentTokens).toBe(dr.ref.resident());
      // Reset one chain; it starts again at position 0 while the others continue.
      dr.reset(2);
      await dr.step([{ seq: 2, tokens: 5 }, { seq: 1, tokens: 1 }]);
      await dr.step([{ seq: 2, tokens: 1 }, { seq: 3, tokens: 1 }]);
      st = await dr.cache.stats();
      expect(st.residentTokens).toBe(dr.ref.resident());
      if (policy !== 'tova' && policy !== 'h2o') expect(st.tokenReads).toBe(dr.ref.tokenReads);
      dr.cache.destroy();
    });
  }

  it('rejects a segment that does not continue its sequence, and two segments of one sequence', async () => {
    const gpu = await testGpu();
    const dr = makeDriver(gpu, {
      shape: { numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 16, dms: null },
      cache: { policy: 'full', maxTokens: 32, maxStepTokens: 8, sequences: 2 },
    });
    await dr.step([{ seq: 0, tokens: 3 }]);
    const { Encoder } = await import('../../worker/gpu/encoder');
    const enc = new Encoder(gpu);
    expect(() => dr.cache.begin(enc, [{ seq: 0, row: 0, tokens: 1, pos0: 2 }])).toThrow(/continues at position 3/);
    expect(() => dr.cache.begin(enc, [{ seq: 1, row: 0, tokens: 1, pos0: 0 }, { seq: 1, row: 1, tokens: 1, pos0: 0 }])).toThrow(/twice/);
    expect(() => dr.cache.begin(enc, [{ seq: 1, row: 0, tokens: 9, pos0: 0 }])).toThrow(/maxStepTokens/);
    dr.cache.destroy();
  });
});
