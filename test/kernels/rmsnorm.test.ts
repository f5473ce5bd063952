import { afterEach, describe, expect, it } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import { rmsNorm, rmsNormTuning } from '../../worker/kernels/rmsnorm';
import { rmsNormRef } from '../../worker/reference/rmsnorm';
import { maxRelErr, randn, testGpu } from '../gpu';

afterEach(() => { rmsNormTuning.allowSubgroups = true; });

describe('rmsNorm', () => {
  const cases: Array<[number, number, number]> = [[1, 1, 1e-6], [3, 7, 1e-5], [5, 255, 1e-6], [2, 1000, 1e-6], [37, 257, 1e-5], [1, 4096, 1e-6]];
  for (const subgroups of [true, false]) {
    for (const [rows, cols, eps] of cases) {
      it(`matches the CPU reference rows=${rows} cols=${cols} (${subgroups ? 'subgroups when available' : 'workgroup memory'})`, async () => {
        const gpu = await testGpu();
        rmsNormTuning.allowSubgroups = subgroups;
        // Rows at very different scales, so the normalisation itself is checked, not only the weights.
        const x = randn(rows * cols, 11 + cols, 1);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) x[r * cols + c] *= 10 ** ((r % 5) - 2);
        const w = randn(cols, 3 + rows, 2);
        const bx = gpu.upload('x', x), bw = gpu.upload('w', w), by = gpu.upload('y', new Float32Array(rows * cols).fill(NaN));
        const enc = new Encoder(gpu);
        rmsNorm(enc, bx, bw, by, rows, cols, eps);
        enc.submit();
        const got = await gpu.readF32(by, rows * cols);
        expect(maxRelErr(got, rmsNormRef(x, w, rows, cols, eps), 1e-5, 1e-4)).toBeLessThanOrEqual(1);
        // Independent check of one row: unit weights give a row of mean square 1 / (1 + eps / ms).
        const r0 = rmsNormRef(x.subarray(0, cols), new Float32Array(cols).fill(1), 1, cols, 0);
        expect(r0.reduce((s, v) => s + v * v, 0) / cols).toBeCloseTo(1, 4);
        gpu.destroy(bx); gpu.destroy(bw); gpu.destroy(by);
      });
    }
  }

  it('normalises many rows through a 2-D grid of workgroups', async () => {
    const gpu = await testGpu();
    // 66,000 workgroups of 256 invocations take minutes on SwiftShader: this runs on lavapipe only.
    if (gpu.caps.maxComputeWorkgroupsPerDimension > 70_000 || /swiftshader/i.test(gpu.caps.adapter)) return;
    const rows = 66_000, cols = 3;
    const x = randn(rows * cols, 5), w = new Float32Array([1, 2, 3]);
    const bx = gpu.upload('x', x), bw = gpu.upload('w', w), by = gpu.buffer('y', rows * cols * 4);
    const enc = new Encoder(gpu);
    rmsNorm(enc, bx, bw, by, rows, cols, 1e-6);
    enc.submit();
    expect(maxRelErr(await gpu.readF32(by, rows * cols), rmsNormRef(x, w, rows, cols, 1e-6))).toBeLessThanOrEqual(1);
    gpu.destroy(bx); gpu.destroy(bw); gpu.destroy(by);
  });
});
