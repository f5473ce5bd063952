import { describe, expect, it } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import { siluMul } from '../../worker/kernels/silu-mul';
import { siluMulRef } from '../../worker/reference/silu-mul';
import { maxRelErr, randn, testGpu } from '../gpu';

describe('siluMul', () => {
  for (const [rows, F] of [[1, 1], [1, 300], [3, 257], [37, 100], [2, 6000]]) {
    it(`matches the CPU reference rows=${rows} F=${F}`, async () => {
      const gpu = await testGpu();
      const gateUp = randn(rows * 2 * F, rows * 7 + F, 8);
      const bg = gpu.upload('gateUp', gateUp), bo = gpu.upload('out', new Float32Array(rows * F).fill(NaN));
      const enc = new Encoder(gpu);
      siluMul(enc, bg, bo, rows, F);
      enc.submit();
      expect(maxRelErr(await gpu.readF32(bo, rows * F), siluMulRef(gateUp, rows, F))).toBeLessThanOrEqual(1);
      gpu.destroy(bg); gpu.destroy(bo);
    });
  }

  it('has the right limits and keeps gate and up apart', async () => {
    const gpu = await testGpu();
    // Row 0: gate [0, 1, -100, 100], up [5, 2, 3, 0.5]; row 1: gate [1, 1, 1, 1], up [0, 1, 2, 3].
    const gateUp = new Float32Array([0, 1, -100, 100, 5, 2, 3, 0.5, 1, 1, 1, 1, 0, 1, 2, 3]);
    const bg = gpu.upload('gateUp', gateUp), bo = gpu.buffer('out', 32);
    const enc = new Encoder(gpu);
    siluMul(enc, bg, bo, 2, 4);
    enc.submit();
    const out = await gpu.readF32(bo, 8);
    const s1 = 1 / (1 + Math.exp(-1));
    const want = [0, 2 * s1, 0, 50, 0, s1, 2 * s1, 3 * s1];
    for (let i = 0; i < 8; i++) expect(out[i]).toBeCloseTo(want[i], 5);
    expect(Math.abs(out[2])).toBeLessThan(1e-30);
    gpu.destroy(bg); gpu.destroy(bo);
  });
});
