import { afterEach, describe, expect, it } from 'vitest';
import type { Gpu } from '../../worker/gpu/context';
import { Encoder } from '../../worker/gpu/encoder';
import { linear, linearTuning } from '../../worker/kernels/linear';
import { packRows, uploadMatrix } from '../../worker/load/pack';
import type { GpuMatrix, WeightFormat } from '../../worker/model/types';
import { linearRef } from '../../worker/reference/linear';
import { dequantizeRows } from '../../worker/reference/quant';
import { maxRelErr, randn, testGpu } from '../gpu';

const FORMATS: WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

function shapes(format: WeightFormat): Array<[number, number]> {
  const s: Array<[number, number]> = [[1, 32], [33, 64], [1000, 96], [33, 100], [7, 40]];
  if (format === 'f32' || format === 'f16') s.push([33, 31], [5, 1], [2, 13]);
  else s.push([9, 31]); // logical cols below one group: padded internally
  return s;
}

/** Runs linear on the GPU; returns y and the dequantized weights the GPU saw. */
async function run(gpu: Gpu, format: WeightFormat, rows: number, cols: number, tokens: number, opts: { bias?: boolean; maxPartBytes?: number; seed?: number } = {}) {
  const seed = opts.seed ?? rows * 131 + cols * 7 + tokens;
  const w = randn(rows * cols, seed, 0.5);
  const x = randn(tokens * cols, seed + 1);
  const bias = opts.bias ? randn(rows, seed + 2) : null;
  const m: GpuMatrix = uploadMatrix(gpu, 'w', w, rows, cols, format, opts.maxPartBytes);
  const bx = gpu.upload('x', x);
  const by = gpu.buffer('y', tokens * rows * 4);
  gpu.write(by, new Float32Array(tokens * rows).fill(NaN));
  const bb = bias ? gpu.upload('bias', bias) : null;
  const enc = new Encoder(gpu);
  linear(enc, m, bx, by, tokens, bb);
  enc.submit();
  const y = await gpu.readF32(by, tokens * rows);
  for (const p of m.parts) { gpu.destroy(p.data); if (p.scales) gpu.destroy(p.scales); }
  gpu.destroy(bx); gpu.destroy(by); if (bb) gpu.destroy(bb);
  const wq = dequantizeRows(packRows(w, rows, cols, format), rows, cols, format);
  return { y, w, wq, x, bias, parts: m.parts.length };
}

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
    for (const format of FORMATS) {
      for (const tokens of [1, 3, 17, 64]) {
        it(`${format}, ${tokens} token(s), odd shapes, with and without bias`, async () => {
          const gpu = await testGpu();
          linearTuning.allowSubgroups = path === 'subgroups';
          let k = 0;
          for (const [rows, cols] of shapes(format)) {
            const bias = k++ % 2 === 1;
            const r = await run(gpu, format, rows, cols, tokens, { bias });
            const ref = linearRef(r.x, r.wq, rows, cols, tokens, r.bias);
            const err = maxRelErr(r.y, ref, 1e-5, 1e-4);
            expect(err, `${format} rows=${rows} cols=${cols} tokens=${tokens} bias=${bias}`).toBeLessThanOrEqual(1);
          }
        });
      }
      it(`${format}, matrix in several parts`, async () => {
        const gpu = await testGpu();
        linearTuning.allowSubgroups = path === 'subgroups';
        const rows = 301, cols = 72;
        for (const tokens of [1, 9]) {
          // ~1/3 of the matrix per part
          const bytesPerRow = format === 'f32' ? cols * 4 : format === 'f16' ? cols * 2 : format === 'q8' ? 96 : 48;
          const r = await run(gpu, format, rows, cols, tokens, { bias: tokens > 1, maxPartBytes: bytesPerRow * 110 });
          expect(r.parts).toBeGreaterThanOrEqual(3);
          expect(maxRelErr(r.y, linearRef(r.x, r.wq, rows, cols, tokens, r.bias))).toBeLessThanOrEqual(1);
        }
      });
    }
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
