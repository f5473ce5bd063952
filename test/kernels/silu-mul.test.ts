/** SiLU-mul beyond the op table (./ops.test.ts): its limits, and gate and up kept apart. */
import { describe, expect, it } from 'vitest';
import { testGpu } from '../gpu';
import { runSiluMul, withBuffers } from './ops';

describe('siluMul', () => {
  it('has the right limits and keeps gate and up apart', async () => {
    const gpu = await testGpu();
    // Row 0: gate [0, 1, -100, 100], up [5, 2, 3, 0.5]; row 1: gate [1, 1, 1, 1], up [0, 1, 2, 3].
    const gateUp = new Float32Array([0, 1, -100, 100, 5, 2, 3, 0.5, 1, 1, 1, 1, 0, 1, 2, 3]);
    const out = (await withBuffers(gpu, (t) => runSiluMul(t, 2, 4, gateUp))).got;
    const s1 = 1 / (1 + Math.exp(-1));
    const want = [0, 2 * s1, 0, 50, 0, s1, 2 * s1, 3 * s1];
    for (let i = 0; i < 8; i++) expect(out[i]).toBeCloseTo(want[i], 5);
    expect(Math.abs(out[2])).toBeLessThan(1e-30);
  });
});
