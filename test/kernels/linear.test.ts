/** linear beyond the op table (./ops.test.ts): which reduction each path compiles, and the quantization error against f32 weights. */
import { afterEach, describe, expect, it } from 'vitest';
import type { Gpu } from '../../worker/gpu/context';
import { linearTuning } from '../../worker/kernels/linear';
import type { WeightFormat } from '../../worker/model/types';
import { linearRef } from '../../worker/reference/linear';
import { testGpu } from '../gpu';
import { runLinear, withBuffers } from './ops';

const FORMATS: WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

/** Runs linear on the GPU; returns y and the weights (as given and as the GPU saw them). */
const run = (gpu: Gpu, format: WeightFormat, rows: number, cols: number, tokens: number) => withBuffers(gpu, (t) => runLinear(t, format, rows, cols, tokens));

afterEach(() => { linearTuning.allowSubgroups = true; });

for (const path of ['subgroups', 'fallback'] as const) {
  describe(`linear (${path} reduction)`, () => {
    it('compiles the intended reduction', async () => {
      const gpu = await testGpu();
      expect(gpu.caps.subgroups, 'the test adapters (lavapipe, SwiftShader) have subgroups').toBe(true);
      linearTuning.allowSubgroups = path === 'subgroups';
      const before = new Set(gpu.pipelines.keys());
      await run(gpu, 'f32', 5, 24, 2);
      const added = [...gpu.pipelines.keys()].filter((k) => !before.has(k)).map((k) => k.split('\u0000')[0]);
      const label = `linear_f32 R4 T8 L64${path === 'subgroups' ? ' sg' : ''} aligned`;
      if (added.length) expect(added).toEqual([label]);
      else expect([...gpu.pipelines.keys()].some((k) => k.startsWith(`${label}\u0000`))).toBe(true);
    });
  });
}

describe('linear quantization error', () => {
  // Each code is within half a step of the weight: |w - wq| <= scale / 2 (q8: maxabs/254, q4: maxabs/14),
  // so the output error relative to sum |x w| is bounded by those; checked end to end on the GPU.
  const bound: Record<WeightFormat, number> = { f32: 1e-6, f16: 1e-3, q8: 1 / 254 + 1e-6, q4: 1 / 14 + 1e-6 };
  for (const format of FORMATS) {
    it(`${format}: outputs close to the f32 weights' outputs`, async () => {
      const gpu = await testGpu();
      const rows = 64, cols = 256, tokens = 4;
      const r = await run(gpu, format, rows, cols, tokens);
      const exact = linearRef(r.x, r.w, rows, cols, tokens);
      let worst = 0, sqErr = 0, sqRef = 0;
      for (let t = 0; t < tokens; t++) {
        for (let o = 0; o < rows; o++) {
          let absDot = 0, maxW = 0;
          for (let c = 0; c < cols; c++) { absDot += Math.abs(r.x[t * cols + c]); maxW = Math.max(maxW, Math.abs(r.w[o * cols + c])); }
          const e = Math.abs(r.y[t * rows + o] - exact[t * rows + o]);
          worst = Math.max(worst, e / (absDot * maxW));
          sqErr += e * e; sqRef += exact[t * rows + o] ** 2;
        }
      }
      expect(worst).toBeLessThanOrEqual(bound[format]);
      const rel = Math.sqrt(sqErr / sqRef);
      // Typical error: f16 ~1e-4, q8 ~1e-2, q4 ~0.2 of the output's RMS for uniform weights.
      expect(rel).toBeLessThan({ f32: 1e-6, f16: 1e-3, q8: 0.02, q4: 0.2 }[format]);
      if (format !== 'f32') expect(rel).toBeGreaterThan(0);
    });
  }
});
