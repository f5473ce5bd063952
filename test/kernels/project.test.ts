/**
 * kernels/linear `project`: the decode matvec with its fusions (shaders/linear_mv.wgsl: input RMSNorm,
 * residual add, SwiGLU) and the dispatches it stands for with several tokens, against the CPU reference
 * (worker/reference/project.ts), on every weight format, both reductions, and the matvec's tuning variants.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Gpu } from '../../worker/gpu/context';
import { Encoder } from '../../worker/gpu/encoder';
import { linearTuning, project, type ProjectOptions } from '../../worker/kernels/linear';
import { packRows, uploadMatrix } from '../../worker/load/pack';
import type { WeightFormat } from '../../worker/model/types';
import { projectRef } from '../../worker/reference/project';
import { dequantizeRows } from '../../worker/reference/quant';
import { maxRelErr, randn, testGpu } from '../gpu';

const FORMATS: WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];
/** Floats after the output that the kernels must not touch. */
const TAIL = 64;
const saved = { ...linearTuning, gemm: { ...linearTuning.gemm } };
afterEach(() => Object.assign(linearTuning, { ...saved, gemm: { ...saved.gemm } }));

type Mode = { name: string; norm: boolean; bias: boolean; epilogue: 'store' | 'add' | 'silu' };
const MODES: Mode[] = [
  { name: 'norm + bias', norm: true, bias: true, epilogue: 'store' },
  { name: 'residual add', norm: false, bias: false, epilogue: 'add' },
  { name: 'norm + SwiGLU', norm: true, bias: false, epilogue: 'silu' },
  { name: 'SwiGLU', norm: false, bias: false, epilogue: 'silu' },
];

async function run(gpu: Gpu, format: WeightFormat, rows: number, cols: number, tokens: number, m: Mode, o: { maxPartBytes?: number; seed?: number; wScale?: number } = {}) {
  const seed = o.seed ?? rows * 7 + cols * 3 + tokens;
  const w = randn(rows * cols, seed, o.wScale ?? 0.5);
  const x = randn(tokens * cols, seed + 1, 2);
  const outRows = m.epilogue === 'silu' ? rows / 2 : rows;
  const y0 = randn(tokens * outRows, seed + 2);
  const nw = randn(cols, seed + 3, 1).map((v) => 1 + 0.5 * v);
  const bias = m.bias ? randn(rows, seed + 4) : null;
  const mat = uploadMatrix(gpu, 'w', w, rows, cols, format, o.maxPartBytes);
  const bx = gpu.upload('x', x);
  const out = new Float32Array(tokens * outRows + TAIL).fill(NaN);
  out.set(m.epilogue === 'add' ? y0 : new Float32Array(tokens * outRows).fill(NaN));
  const by = gpu.upload('y', out);
  const bnw = gpu.upload('nw', nw);
  const bb = bias ? gpu.upload('bias', bias) : null;
  const normed = gpu.buffer('normed', tokens * cols * 4);
  const product = gpu.buffer('product', tokens * rows * 4);
  const opts: ProjectOptions = { norm: m.norm ? { weight: bnw, eps: 1e-5 } : null, bias: bb, epilogue: m.epilogue };
  const enc = new Encoder(gpu);
  project(enc, mat, bx, by, tokens, opts, { normed, product });
  enc.submit();
  const got = await gpu.readF32(by, tokens * outRows + TAIL);
  for (const b of [bx, by, bnw, normed, product, ...(bb ? [bb] : [])]) gpu.destroy(b);
  for (const p of mat.parts) { gpu.destroy(p.data); if (p.scales) gpu.destroy(p.scales); }
  const wq = dequantizeRows(packRows(w, rows, cols, format), rows, cols, format);
  const want = projectRef(x, wq, rows, cols, tokens, { norm: m.norm ? { weight: nw, eps: 1e-5 } : null, bias, epilogue: m.epilogue }, y0);
  return { got: got.subarray(0, tokens * outRows), tail: got.subarray(tokens * outRows), want, parts: mat.parts.length };
}

function expectClose(r: Awaited<ReturnType<typeof run>>, what: string): void {
  expect(maxRelErr(r.got, r.want, 1e-4, 1e-4), what).toBeLessThanOrEqual(1);
  expect(r.tail.every(Number.isNaN), `${what}: nothing written past the output`).toBe(true);
}

for (const path of ['subgroups', 'fallback'] as const) {
  describe(`project (${path} reduction)`, () => {
    for (const format of FORMATS) {
      it(`${format}: every fusion, 1 token (the fused matvec) and 5 and 17 tokens (separate dispatches, GEMM)`, async () => {
        const gpu = await testGpu();
        linearTuning.allowSubgroups = path === 'subgroups';
        for (const m of MODES) {
          for (const [rows, cols] of [[96, 64], [64, 160]]) {
            for (const tokens of [1, 5, 17]) expectClose(await run(gpu, format, rows, cols, tokens, m), `${format} ${m.name} ${rows}x${cols} x${tokens}`);
          }
        }
      });
    }
  });
}

describe('project variants', () => {
  it('the fused decode matvec in every rows x lanes x unroll shape the benchmark tries', async () => {
    const gpu = await testGpu();
    // (Every variant compiles a pipeline per mode: on the CPU adapter that is most of the time, so two modes.)
    for (const [r, l, u] of [[8, 32, 2], [4, 64, 4], [16, 32, 1]]) {
      Object.assign(linearTuning, { mvRows: r, mvLanes: l, mvUnroll: u });
      for (const m of [MODES[1], MODES[2]]) expectClose(await run(gpu, 'q4', 80, 320, 1, m), `q4 ${m.name} mv ${r}x${l}x${u}`);
    }
    // 128 and 256 lanes (the default and the widest tried) need rows of at least 65 and 129 groups of 32.
    const compiled = vi.spyOn(gpu, 'pipeline');
    for (const l of [128, 256]) {
      Object.assign(linearTuning, { mvRows: 8, mvLanes: l, mvUnroll: 1 });
      for (const m of [MODES[1], MODES[2]]) expectClose(await run(gpu, 'q4', 40, 32 * l, 1, m), `q4 ${m.name} mv 8x${l}x1`);
      expect(compiled.mock.calls.map(([label]) => label).filter((s) => s.startsWith(`linear_mv_q4 R8 L${l} `))).toHaveLength(2);
    }
    compiled.mockRestore();
  });

  it('q8/q4 weights small enough that their group scales are f16 subnormals: the matvec, tiled kernel and GEMM unpack them as the CPU does', async () => {
    const gpu = await testGpu();
    const store: Mode = { name: 'store', norm: false, bias: false, epilogue: 'store' };
    for (const format of ['q8', 'q4'] as const) {
      for (const tokens of [1, 5, 17, 37]) {
        const r = await run(gpu, format, 64, 160, tokens, store, { wScale: 3e-5 });
        // Outputs are ~1e-3: the absolute floor is far below them, so a flushed (zero) scale fails.
        expect(maxRelErr(r.got, r.want, 1e-9, 1e-4), `${format} x${tokens}`).toBeLessThanOrEqual(1);
      }
    }
  });

  it('columns not in groups of 32, and SwiGLU over a matrix in several parts, fall back to separate dispatches', async () => {
    const gpu = await testGpu();
    for (const m of MODES) expectClose(await run(gpu, 'f32', 48, 40, 1, m), `f32 ${m.name} 48x40`);
    const r = await run(gpu, 'q8', 96, 64, 1, MODES[2], { maxPartBytes: 96 * 32 });
    expect(r.parts).toBeGreaterThanOrEqual(2);
    expectClose(r, 'q8 norm + SwiGLU in parts');
  });

  it('the prefill GEMM in several tile shapes, odd token and row counts', async () => {
    const gpu = await testGpu();
    for (const [tm, tn, mt, nt] of [[64, 64, 4, 4], [64, 128, 8, 8], [128, 64, 8, 8], [32, 32, 4, 4], [32, 128, 4, 8]]) {
      linearTuning.gemm = { ...linearTuning.gemm, tm, tn, mt, nt };
      for (const format of ['q4', 'f32'] as const) {
        expectClose(await run(gpu, format, 200, 96, 37, MODES[0]), `${format} gemm ${tm}x${tn}x${mt}x${nt}`);
      }
    }
  });
});
