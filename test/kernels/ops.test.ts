/**
 * The op table, as ggml's test-backend-ops: each element-wise, gather and projection kernel against its CPU
 * reference (worker/reference/<name>.ts) over its sizes and, where it has two, both reductions (subgroups,
 * which the test adapters have, and the workgroup-memory fallback). Every buffer a kernel writes ends in a
 * sentinel tail that must come back bit for bit (./ops.ts), so a kernel that writes past its output fails
 * even when the output is right. Each kernel's particular checks (limits, grids, errors, tuning variants)
 * are in test/kernels/<name>.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { linearTuning } from '../../worker/kernels/linear';
import { qkNormRopeTuning } from '../../worker/kernels/qk-norm-rope';
import { rmsNormTuning } from '../../worker/kernels/rmsnorm';
import { matrixBytes } from '../../worker/load/pack';
import type { WeightFormat } from '../../worker/model/types';
import { linearRef } from '../../worker/reference/linear';
import { rmsNormRef } from '../../worker/reference/rmsnorm';
import { maxRelErr, testGpu } from '../gpu';
import { runAdd, runEmbed, runLinear, runQkNormRope, runRmsNorm, runSiluMul, withBuffers, type OpBuffers, type QkCase } from './ops';

type Path = 'subgroups' | 'workgroup memory';

interface Op<C> {
  /** Sizes and variants, each an `it` (per path). */
  cases: C[];
  label(c: C): string;
  /** Selects the reduction of a kernel that has two; absent for kernels with one. */
  path?: (subgroups: boolean) => void;
  /** Runs one case on fresh buffers and compares with the reference; `i` is the case's index. */
  check(t: OpBuffers, c: C, i: number): Promise<void>;
}

function table<C>(name: string, op: Op<C>): void {
  describe(name, () => {
    for (const path of op.path ? (['subgroups', 'workgroup memory'] as Path[]) : [null]) {
      for (const [i, c] of op.cases.entries()) {
        it(`matches the CPU reference: ${op.label(c)}${path ? ` (${path})` : ''}`, async () => {
          const gpu = await testGpu();
          op.path?.(path === 'subgroups');
          await withBuffers(gpu, (t) => op.check(t, c, i));
        });
      }
    }
  });
}

afterEach(() => {
  rmsNormTuning.allowSubgroups = true;
  qkNormRopeTuning.allowSubgroups = true;
  linearTuning.allowSubgroups = true;
});

const FORMATS: WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

table('add', {
  cases: [1, 255, 257, 10_000],
  label: (n) => `n=${n}`,
  async check(t, n) {
    const r = await runAdd(t, n);
    expect(maxRelErr(r.got, r.want)).toBeLessThanOrEqual(1);
  },
});

table('rmsNorm', {
  cases: [[1, 1, 1e-6], [3, 7, 1e-5], [5, 255, 1e-6], [2, 1000, 1e-6], [37, 257, 1e-5], [1, 4096, 1e-6]] as Array<[number, number, number]>,
  label: ([rows, cols]) => `rows=${rows} cols=${cols}`,
  path: (subgroups) => (rmsNormTuning.allowSubgroups = subgroups),
  async check(t, [rows, cols, eps]) {
    const r = await runRmsNorm(t, rows, cols, eps);
    expect(maxRelErr(r.got, r.want, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
    // Independent check of one row: unit weights give a row of mean square 1 / (1 + eps / ms).
    const r0 = rmsNormRef(r.x.subarray(0, cols), new Float32Array(cols).fill(1), 1, cols, 0);
    expect(r0.reduce((s, v) => s + v * v, 0) / cols).toBeCloseTo(1, 4);
  },
});

table('siluMul', {
  cases: [[1, 1], [1, 300], [3, 257], [37, 100], [2, 6000]] as Array<[number, number]>,
  label: ([rows, F]) => `rows=${rows} F=${F}`,
  async check(t, [rows, F]) {
    const r = await runSiluMul(t, rows, F);
    expect(maxRelErr(r.got, r.want)).toBeLessThanOrEqual(1);
  },
});

interface EmbedCase { format: WeightFormat; rows: number; cols: number; parts: number; ids: (starts: number[]) => number[]; table?: { seed: number; scale: number }; note?: string }
const embedCases: EmbedCase[] = [];
for (const format of FORMATS) {
  for (const cols of [64, 37, 300]) {
    if ((format === 'q8' || format === 'q4') && cols === 37) continue;
    // Each part holds about a third of the table; the ids reach into every part and across its edges.
    embedCases.push({ format, rows: 1000, cols, parts: 3, ids: (s) => [0, 999, 500, s[1], s[1] - 1, s[s.length - 1], 17, 17, 333, 666, 998, 1] });
  }
}
// q4 with odd cols: padded groups.
embedCases.push({ format: 'q4', rows: 50, cols: 45, parts: 1, ids: () => [49, 0, 20, 21, 39, 40], table: { seed: 9, scale: 1 }, note: 'padded groups' });
// Values small enough that the group scales are f16 subnormals: the kernel must unpack them as the CPU does.
for (const format of ['q8', 'q4'] as const) {
  embedCases.push({ format, rows: 40, cols: 96, parts: 1, ids: () => [0, 39, 7], table: { seed: 5, scale: 3e-5 }, note: 'f16-subnormal scales' });
}

table('embed', {
  cases: embedCases,
  label: (c) => `${c.format}, ${c.rows} x ${c.cols}, ${c.note ?? 'every part of a split table'}`,
  async check(t, c) {
    const maxPartBytes = c.parts > 1 ? Math.ceil(matrixBytes(c.rows, c.cols, c.format) / 3.5) : 20 * 32;
    const r = await runEmbed(t, c.format, c.rows, c.cols, maxPartBytes, (m) => c.ids(m.parts.map((p) => p.rowStart)), c.table);
    expect(r.parts).toBeGreaterThanOrEqual(c.parts);
    expect(Array.from(r.got)).toEqual(Array.from(r.want)); // a gather: bit-exact
  },
});

const qkCases: QkCase[] = [];
// Every (group size, head dim) with every (norm, dms), rows 1 and 37 alternating.
for (const [numHeads, numKvHeads] of [[3, 3], [4, 2], [8, 2]]) {
  for (const headDim of [32, 64, 128]) {
    let k = 0;
    for (const norm of [false, true]) for (const dms of [false, true]) qkCases.push({ rows: (k++ + headDim / 32) % 2 ? 37 : 1, numHeads, numKvHeads, headDim, norm, dms });
  }
}

table('qkNormRope', {
  cases: qkCases,
  label: (c) => `rows=${c.rows} heads=${c.numHeads}/${c.numKvHeads} d=${c.headDim} norm=${c.norm} dms=${c.dms}`,
  path: (subgroups) => (qkNormRopeTuning.allowSubgroups = subgroups),
  async check(t, c, j) {
    const { qkv, got, alpha, ref } = await runQkNormRope(t, c, 100 + j);
    expect(maxRelErr(got, ref.qkv, 2e-5, 2e-4)).toBeLessThanOrEqual(1);
    const stride = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
    for (let r = 0; r < c.rows; r++) {
      // v heads are bit-for-bit unchanged.
      const v0 = r * stride + (c.numHeads + c.numKvHeads) * c.headDim;
      expect(got.subarray(v0, (r + 1) * stride)).toEqual(qkv.subarray(v0, (r + 1) * stride));
    }
    if (c.dms) {
      // alpha = 100 * x - 5 amplifies the error of x a hundredfold.
      expect(maxRelErr(alpha, ref.alpha!, 2e-3, 1e-4)).toBeLessThanOrEqual(1);
      const g = c.numHeads / c.numKvHeads;
      for (let r = 0; r < c.rows; r++) for (let h = 0; h < c.numHeads; h += g) expect(got[r * stride + h * c.headDim + c.headDim - 1]).toBe(0);
    } else {
      expect(Array.from(alpha).every(Number.isNaN)).toBe(true);
    }
  },
});

function linearShapes(format: WeightFormat): Array<[number, number]> {
  const s: Array<[number, number]> = [[1, 32], [33, 64], [1000, 96], [33, 100], [7, 40]];
  if (format === 'f32' || format === 'f16') s.push([33, 31], [5, 1], [2, 13]);
  else s.push([9, 31]); // logical cols below one group: padded internally
  return s;
}

type LinearCase = { format: WeightFormat; tokens: number } | { format: WeightFormat; parts: true };
const linearCases: LinearCase[] = FORMATS.flatMap((format) => [...[1, 3, 17, 64].map((tokens) => ({ format, tokens })), { format, parts: true as const }]);

table('linear', {
  cases: linearCases,
  label: (c) => ('parts' in c ? `${c.format}, matrix in several parts` : `${c.format}, ${c.tokens} token(s), odd shapes, with and without bias`),
  path: (subgroups) => (linearTuning.allowSubgroups = subgroups),
  async check(t, c) {
    const { format } = c;
    if ('parts' in c) {
      const rows = 301, cols = 72;
      for (const tokens of [1, 9]) {
        // ~1/3 of the matrix per part
        const bytesPerRow = format === 'f32' ? cols * 4 : format === 'f16' ? cols * 2 : format === 'q8' ? 96 : 48;
        const r = await runLinear(t, format, rows, cols, tokens, { bias: tokens > 1, maxPartBytes: bytesPerRow * 110 });
        expect(r.parts).toBeGreaterThanOrEqual(3);
        expect(maxRelErr(r.y, linearRef(r.x, r.wq, rows, cols, tokens, r.bias))).toBeLessThanOrEqual(1);
      }
      return;
    }
    let k = 0;
    for (const [rows, cols] of linearShapes(format)) {
      const bias = k++ % 2 === 1;
      const r = await runLinear(t, format, rows, cols, c.tokens, { bias });
      const err = maxRelErr(r.y, linearRef(r.x, r.wq, rows, cols, c.tokens, r.bias), 1e-5, 1e-4);
      expect(err, `${format} rows=${rows} cols=${cols} tokens=${c.tokens} bias=${bias}`).toBeLessThanOrEqual(1);
    }
  },
});
