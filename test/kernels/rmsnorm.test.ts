/** RMSNorm beyond the op table (./ops.test.ts): a grid of more workgroups than one dimension holds. */
import { describe, expect, it } from 'vitest';
import { rmsNorm } from '../../worker/kernels/rmsnorm';
import { rmsNormRef } from '../../worker/reference/rmsnorm';
import { maxRelErr, randn, testGpu } from '../gpu';
import { withBuffers } from './ops';

describe('rmsNorm', () => {
  it('normalises many rows through a 2-D grid of workgroups', async () => {
    const gpu = await testGpu();
    // 66,000 workgroups of 256 invocations take minutes on SwiftShader: this runs on lavapipe only.
    if (gpu.caps.maxComputeWorkgroupsPerDimension > 70_000 || /swiftshader/i.test(gpu.caps.adapter)) return;
    const rows = 66_000, cols = 3;
    const x = randn(rows * cols, 5), w = new Float32Array([1, 2, 3]);
    await withBuffers(gpu, async (t) => {
      const by = t.output(rows * cols);
      t.run((enc) => rmsNorm(enc, t.input(x), t.input(w), by, rows, cols, 1e-6));
      expect(maxRelErr(await t.read(by), rmsNormRef(x, w, rows, cols, 1e-6))).toBeLessThanOrEqual(1);
    });
  });
});
