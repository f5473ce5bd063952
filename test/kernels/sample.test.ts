import { afterEach, describe, expect, it } from 'vitest';
import type { Gpu } from '../../worker/gpu/context';
import { Encoder } from '../../worker/gpu/encoder';
import { createRandom } from '../../worker/engine/random';
import { sample, sampleTuning, type SampleOptions } from '../../worker/kernels/sample';
import { sampleRef, sampleThreshold } from '../../worker/reference/sample';
import { randn, testGpu } from '../gpu';

afterEach(() => { sampleTuning.allowSubgroups = true; });

/** One dispatch per option set (batched into few submits); returns the sampled ids. */
async function gpuSample(gpu: Gpu, logits: Float32Array, opts: SampleOptions[], offset = 0, vocab = logits.length - offset): Promise<Uint32Array> {
  const bl = gpu.upload('logits', logits), bo = gpu.upload('ids', new Uint32Array(opts.length).fill(0xdeadbeef));
  for (let s = 0; s < opts.length; s += 2000) {
    await gpu.guarded('sample', () => {
      const enc = new Encoder(gpu);
      for (let k = s; k < Math.min(opts.length, s + 2000); k++) sample(enc, bl, offset, vocab, bo, k, opts[k]);
      enc.submit();
    });
  }
  const ids = await gpu.readU32(bo, opts.length);
  gpu.destroy(bl); gpu.destroy(bo);
  return ids;
}

/**
 * The GPU sums in f32 and in another order than the f64 reference, so where u or topP falls within rounding of a
 * boundary it may legitimately pick the neighbouring outcome: accept the reference's answers under u ± 1e-5 and
 * topP ± 1e-5, and require most draws to match exactly.
 */
function expectMatches(logits: Float32Array, opts: SampleOptions[], ids: Uint32Array, minExact: number): void {
  const D = 1e-5;
  let exact = 0;
  const bad: string[] = [];
  opts.forEach((o, k) => {
    const want = sampleRef(logits, o);
    if (ids[k] === want) { exact++; return; }
    const ok = new Set<number>();
    for (const du of [-D, 0, D]) for (const dp of [-D, 0, D]) {
      ok.add(sampleRef(logits, { ...o, u: Math.min(Math.max(o.u + du, 0), 1 - 2 ** -24), topP: o.topP < 1 ? o.topP + dp : o.topP }));
    }
    if (!ok.has(ids[k])) bad.push(`${JSON.stringify(o)}: gpu ${ids[k]}, cpu ${want}`);
  });
  expect(bad).toEqual([]);
  expect(exact / opts.length).toBeGreaterThanOrEqual(minExact);
}

function combos(temps: number[], topKs: number[], topPs: number[], us: number[]): SampleOptions[] {
  const out: SampleOptions[] = [];
  for (const temperature of temps) for (const topK of topKs) for (const topP of topPs) for (const u of us) out.push({ temperature, topK, topP, u });
  return out;
}

describe('sample reference', () => {
  const draws = (logits: number[], o: Omit<SampleOptions, 'u'>) => {
    const seen = new Set<number>();
    for (let k = 0; k < 1000; k++) seen.add(sampleRef(logits, { ...o, u: (k + 0.5) / 1000 }));
    return [...seen].sort((a, b) => a - b);
  };

  it('is greedy with the lowest index on ties when temperature <= 0 or topK == 1', () => {
    expect(sampleRef([1, 3, 3, 2], { temperature: 0, topK: 0, topP: 1, u: 0.9 })).toBe(1);
    expect(sampleRef([1, 3, 3, 2], { temperature: 1, topK: 1, topP: 1, u: 0.9 })).toBe(1);
    expect(sampleRef([-0, 0], { temperature: -1, topK: 5, topP: 0.5, u: 0.9 })).toBe(0);
  });

  it('keeps every token tied with the topK-th logit', () => {
    expect(draws([0, 5, 3, 3, 1], { temperature: 1, topK: 2, topP: 1 })).toEqual([1, 2, 3]);
    expect(draws([0, 5, 3, 3, 1], { temperature: 1, topK: 4, topP: 1 })).toEqual([1, 2, 3, 4]);
    expect(draws([0, 5, 3, 3, 1], { temperature: 1, topK: 5, topP: 1 })).toEqual([0, 1, 2, 3, 4]);
  });

  it('keeps the fewest highest tokens holding topP of the mass', () => {
    const l = [0.5, 0.3, 0.15, 0.05].map(Math.log);
    const o = { temperature: 1, topK: 0 };
    expect(draws(l, { ...o, topP: 0 })).toEqual([0]);
    expect(draws(l, { ...o, topP: 0.49 })).toEqual([0]);
    expect(draws(l, { ...o, topP: 0.6 })).toEqual([0, 1]);
    expect(draws(l, { ...o, topP: 0.79 })).toEqual([0, 1]);
    expect(draws(l, { ...o, topP: 0.81 })).toEqual([0, 1, 2]);
    expect(draws(l, { ...o, topP: 0.99 })).toEqual([0, 1, 2, 3]);
    // top-p applies to the renormalised top-k mass: top-2 holds 0.5 / 0.8 = 0.625 in token 0.
    expect(draws(l, { temperature: 1, topK: 2, topP: 0.6 })).toEqual([0]);
    expect(draws(l, { temperature: 1, topK: 2, topP: 0.63 })).toEqual([0, 1]);
    // Ties with the lowest kept logit are kept together.
    expect(draws([2, 1, 1, 0], { temperature: 1, topK: 0, topP: 0.6 })).toEqual([0, 1, 2]);
    expect(sampleThreshold([2, 1, 1, 0], { temperature: 1, topK: 0, topP: 0.6, u: 0 })).toBe(1);
  });

  it('picks the first token whose cumulative mass exceeds u * total, in index order', () => {
    const l = [0.25, 0.25, 0.5].map(Math.log);
    const o = { temperature: 1, topK: 0, topP: 1 };
    expect(sampleRef(l, { ...o, u: 0 })).toBe(0);
    expect(sampleRef(l, { ...o, u: 0.2499 })).toBe(0);
    expect(sampleRef(l, { ...o, u: 0.2501 })).toBe(1);
    expect(sampleRef(l, { ...o, u: 0.4999 })).toBe(1);
    expect(sampleRef(l, { ...o, u: 0.5001 })).toBe(2);
    expect(sampleRef(l, { ...o, u: 0.999999 })).toBe(2);
    // Tokens without mass (-inf logits) are never drawn.
    expect(sampleRef([-Infinity, 0, -Infinity], { ...o, u: 0 })).toBe(1);
    expect(sampleRef([0, -Infinity, -Infinity], { ...o, u: 0.99 })).toBe(0);
  });
});

describe('sample on the GPU', () => {
  for (const subgroups of [true, false]) {
    const variant = subgroups ? 'subgroups when available' : 'workgroup memory';

    it(`matches the reference on vocab 7 (${variant})`, async () => {
      const gpu = await testGpu();
      sampleTuning.allowSubgroups = subgroups;
      const logits = new Float32Array([0.5, -1, 2, 0, 1.2, -3, 0.7]);
      const opts = combos([0, 0.3, 1, 2.5], [0, 1, 2, 3, 9], [0, 0.3, 0.8, 1], [0, 0.31, 0.77, 0.999]);
      expectMatches(logits, opts, await gpuSample(gpu, logits, opts), 0.99);
    });

    it(`matches the reference on vocab 1000, with and without ties (${variant})`, async () => {
      const gpu = await testGpu();
      sampleTuning.allowSubgroups = subgroups;
      const smooth = randn(1000, 3, 4);
      const ties = smooth.map((v) => Math.round(v * 0.8)); // ~9 distinct values: ties at every threshold
      const opts = combos([0, 0.7, 1.3], [0, 1, 5, 50, 999], [0.1, 0.5, 0.95, 1], [0.01, 0.5, 0.93]);
      for (const logits of [smooth, ties]) expectMatches(logits, opts, await gpuSample(gpu, logits, opts), 0.95);
    });
  }

  it('matches the reference on vocab 151936 (peaked logits, a few -inf)', async () => {
    const gpu = await testGpu();
    const V = 151_936;
    const logits = randn(V, 17, 3);
    for (let k = 0; k < 40; k++) logits[(k * 7919 + 13) % V] = 8 + (k % 5);
    for (let k = 0; k < 10; k++) logits[(k * 104_729 + 5) % V] = -Infinity;
    const opts: SampleOptions[] = [
      { temperature: 0.6, topK: 20, topP: 0.95, u: 0.3 }, { temperature: 0.6, topK: 20, topP: 0.95, u: 0.97 },
      { temperature: 1, topK: 0, topP: 1, u: 0.5 }, { temperature: 1, topK: 0, topP: 0.9, u: 0.2 },
      { temperature: 0.7, topK: 50, topP: 1, u: 0.8 }, { temperature: 1.5, topK: 1000, topP: 0.8, u: 0.66 },
      { temperature: 2, topK: 0, topP: 0.5, u: 0.05 }, { temperature: 0.9, topK: 40, topP: 0.4, u: 0.99 },
    ];
    expectMatches(logits, opts, await gpuSample(gpu, logits, opts), 0.75);
    sampleTuning.allowSubgroups = false;
    const few = [opts[0], opts[3], opts[5]];
    expectMatches(logits, few, await gpuSample(gpu, logits, few), 0.66);
  });

  it('is greedy with the lowest index on ties, for every vocab size', async () => {
    const gpu = await testGpu();
    const cases: Array<[Float32Array, number]> = [];
    cases.push([new Float32Array([1, 5, 2, 5, 5, -1, 0]), 1]);
    cases.push([new Float32Array([-0, 0, -1]), 0]);
    cases.push([new Float32Array([-Infinity, -7, -3, -3, -Infinity]), 2]);
    const b = randn(1000, 9, 2); b[700] = 3; b[300] = 3; b[999] = 3;
    cases.push([b, 300]);
    const c = randn(151_936, 4, 2); c[151_935] = 9; c[100_000] = 9;
    cases.push([c, 100_000]);
    const d = randn(151_936, 5, 2); d[0] = 9; d[151_935] = 9;
    cases.push([d, 0]);
    for (const subgroups of [true, false]) {
      sampleTuning.allowSubgroups = subgroups;
      for (const [logits, want] of cases) {
        const opts = [{ temperature: 0, topK: 0, topP: 1, u: 0.7 }, { temperature: 1, topK: 1, topP: 0.5, u: 0.2 }, { temperature: -1, topK: 40, topP: 0.9, u: 0.99 }];
        const ids = await gpuSample(gpu, logits, opts);
        expect(Array.from(ids)).toEqual([want, want, want]);
        expect(sampleRef(logits, opts[0])).toBe(want);
      }
    }
  });

  it('reads the row at logitsOffset and writes only out[outIndex]', async () => {
    const gpu = await testGpu();
    const V = 1000, rows = randn(3 * V, 23, 4);
    const row1 = rows.slice(V, 2 * V);
    const bl = gpu.upload('logits', rows), bo = gpu.upload('ids', new Uint32Array([7, 7, 7, 7]));
    const o = { temperature: 1, topK: 10, topP: 0.9, u: 0.4 };
    const enc = new Encoder(gpu);
    sample(enc, bl, V, V, bo, 2, o);
    sample(enc, bl, V, V, bo, 0, { ...o, temperature: 0 });
    enc.submit();
    const ids = await gpu.readU32(bo, 4);
    expect(Array.from(ids)).toEqual([row1.indexOf(Math.max(...row1)), 7, sampleRef(row1, o), 7]);
    gpu.destroy(bl); gpu.destroy(bo);
  });

  for (const subgroups of [true, false]) {
    it(`draws with the right frequencies (2000 draws; 400 on SwiftShader; ${subgroups ? 'subgroups when available' : 'workgroup memory'})`, async () => {
      const gpu = await testGpu();
      sampleTuning.allowSubgroups = subgroups;
      const logits = new Float32Array([0.5, -1, 2, 0, 1.2, -3, 0.7]);
      // SwiftShader runs a 256-invocation workgroup with barriers slowly (~20 ms a dispatch): fewer draws there.
      const T = 0.8, N = /swiftshader/i.test(gpu.caps.adapter) ? 400 : 2000;
      const w = Array.from(logits, (l) => Math.exp(l / T));
      const p = w.map((v) => v / w.reduce((a, b) => a + b));
      const count = (ids: Uint32Array) => { const c = new Array(7).fill(0); for (const id of ids) c[id]++; return c; };

      // Evenly spread u: every count is within one of N * p.
      const even = Array.from({ length: N }, (_, k) => ({ temperature: T, topK: 0, topP: 1, u: (k + 0.5) / N }));
      count(await gpuSample(gpu, logits, even)).forEach((c, i) => expect(Math.abs(c - N * p[i])).toBeLessThanOrEqual(1.01));

      // Seeded random u: Pearson chi-square with 6 degrees of freedom below its 0.999 quantile.
      const rand = createRandom(42);
      const random = Array.from({ length: N }, () => ({ temperature: T, topK: 0, topP: 1, u: rand() }));
      const chi2 = count(await gpuSample(gpu, logits, random)).reduce((s, c, i) => s + (c - N * p[i]) ** 2 / (N * p[i]), 0);
      expect(chi2).toBeLessThan(22.46);

      // top-k 3 (tokens 2, 4, 6), then top-p 0.8 of their mass drops token 6: only 2 and 4, renormalised.
      const restricted = even.map((o) => ({ ...o, topK: 3, topP: 0.8 }));
      const c = count(await gpuSample(gpu, logits, restricted));
      const q2 = w[2] / (w[2] + w[4]);
      expect(w[2] / (w[2] + w[4] + w[6])).toBeLessThan(0.8);
      expect((w[2] + w[4]) / (w[2] + w[4] + w[6])).toBeGreaterThanOrEqual(0.8);
      expect(c[2] + c[4]).toBe(N);
      expect(Math.abs(c[2] - N * q2)).toBeLessThanOrEqual(1.01);
    }, 300_000);
  }
});

describe('createRandom', () => {
  it('is deterministic per seed, in [0, 1), and looks uniform', () => {
    const a = createRandom(7), b = createRandom(7), c = createRandom(8), z = createRandom(0);
    const xs = Array.from({ length: 10_000 }, () => a());
    expect(Array.from({ length: 10_000 }, () => b())).toEqual(xs);
    const ys = Array.from({ length: 100 }, () => c());
    expect(ys).not.toEqual(xs.slice(0, 100));
    expect(z()).not.toBe(z());
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    const buckets = new Array(10).fill(0);
    for (const x of xs) buckets[Math.floor(x * 10)]++;
    for (const n of buckets) expect(Math.abs(n - 1000)).toBeLessThan(130);
    expect(new Set(xs).size).toBeGreaterThan(9990);
  });
});
