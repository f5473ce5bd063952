import { describe, expect, it } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import type { Gpu } from '../../worker/gpu/context';
import { SlotKvCache } from '../../worker/kv/slot-cache';
import { kvRowBytes, roundF16 } from '../../worker/model/dtype';
import { storeKv } from '../../worker/reference/kv-commit';
import { randn, testGpu } from '../gpu';
import { DTYPES, kvDim, makeDriver, prefillDecode } from './harness';

const shapes = [
  { hq: 4, hkv: 4, d: 16 },
  { hq: 4, hkv: 2, d: 32 },
  { hq: 8, hkv: 2, d: 64 },
  { hq: 8, hkv: 2, d: 128 },
  { hq: 6, hkv: 3, d: 40 },
];

describe.each(DTYPES)("policy 'full', K/V in %s: GPU attention == dense causal reference", (dtype) => {
  for (const { hq, hkv, d: d0 } of shapes) {
    const d = kvDim(d0, dtype);
    it(`prefill 37 in chunks of 16, then 20 decode steps (Hq ${hq}, Hkv ${hkv}, d ${d}, 2 layers)`, async () => {
      const gpu = await testGpu();
      const dr = makeDriver(gpu, {
        shape: { numLayers: 2, numHeads: hq, numKvHeads: hkv, headDim: d, dms: null },
        cache: { policy: 'full', maxTokens: 64, maxStepTokens: 16, dtype },
        seed: hq * 1000 + d,
      });
      await prefillDecode(dr, 37, 16, 20);
      const st = await dr.cache.stats();
      expect(st.tokensSeen).toBe(57);
      expect(st.residentTokens).toBe(57 * 2 * hkv);
      expect(st.peakTokens).toBe(57 * 2 * hkv);
      expect(st.compression).toBe(1);
      expect(st.tokenReads).toBe(st.tokenReadsFull);
      expect(st.tokenReads).toBe(dr.ref.tokenReads);
      dr.cache.destroy();
    });
  }

  it('splits long decode over several workgroups (flash-decoding) and merges, forced and automatic (d 32 and 128)', async () => {
    const gpu = await testGpu();
    for (const [hq, hkv, d] of [[4, 1, 32], [8, 2, 128]]) {
      for (const splitKeys of [64, 0]) {
        const dr = makeDriver(gpu, {
          shape: { numLayers: 1, numHeads: hq, numKvHeads: hkv, headDim: d, dms: null },
          cache: { policy: 'full', maxTokens: 400, maxStepTokens: 128, tuning: { splitKeys }, dtype },
          seed: 7 + splitKeys + d,
          qkScale: 3,
        });
        await prefillDecode(dr, 300, 128, 6);
        dr.cache.destroy();
      }
    }
  });

  it('stays exact with peaky scores (numerically stable softmax)', async () => {
    const gpu = await testGpu();
    const dr = makeDriver(gpu, {
      shape: { numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 64, dms: null },
      cache: { policy: 'full', maxTokens: 80, maxStepTokens: 8, tuning: { splitKeys: 64 }, dtype },
      seed: 99,
      qkScale: 6,
      atol: 1e-4,
      rtol: 1e-3,
    });
    await prefillDecode(dr, 70, 8, 5);
    dr.cache.destroy();
  });
});

/** One prefill step of `tokens` rows of `qkv` into layer 0 of a fresh cache (sequence 0): written, then attended. */
function storeStep(gpu: Gpu, cache: SlotKvCache, qkv: Float32Array, tokens: number, qWidth: number): { bq: GPUBuffer; out: GPUBuffer } {
  const bq = gpu.upload('test qkv', qkv);
  const out = gpu.buffer('test out', tokens * qWidth * 4);
  const enc = new Encoder(gpu);
  cache.begin(enc, [{ seq: 0, row: 0, tokens, pos0: 0 }]);
  cache.write(enc, 0, bq, null);
  cache.attend(enc, 0, bq, out);
  cache.end(enc);
  enc.submit();
  return { bq, out };
}

describe('K/V storage types', () => {
  it('f16 stores keys and values rounded to nearest f16 (ties to even, clamped to ±65504), f32 stores them exactly; f16 allocates half', async () => {
    const gpu = await testGpu();
    const hq = 4, hkv = 2, d = 16, T = 6;
    const stride = (hq + 2 * hkv) * d;
    const qkv = randn(T * stride, 5, 3);
    // Edge cases in row 0's keys of head 0: beyond the f16 range, a tie, f16 subnormals, a value that rounds up a binade.
    const edge = [70000, -1e6, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 3e-6, -(2 ** -25), 2 ** -26, 65519, 2047.9999];
    edge.forEach((x, i) => (qkv[hq * d + i] = x));
    const bytes: Record<string, number> = {};
    for (const dtype of ['f32', 'f16'] as const) {
      const cache = new SlotKvCache(gpu, { numLayers: 1, numHeads: hq, numKvHeads: hkv, headDim: d, dms: null }, { policy: 'full', maxTokens: 32, maxStepTokens: 8, dtype });
      expect(cache.dtype).toBe(dtype);
      const { bq, out } = storeStep(gpu, cache, qkv, T, hq * d);
      for (let h = 0; h < hkv; h++) {
        const got = await cache.keysValues(0, 0, h);
        expect(got.map((t) => t.pos)).toEqual([0, 1, 2, 3, 4, 5]);
        for (const t of got) {
          const k = qkv.subarray(t.pos * stride + (hq + h) * d, t.pos * stride + (hq + h + 1) * d);
          const v = qkv.subarray(t.pos * stride + (hq + hkv + h) * d, t.pos * stride + (hq + hkv + h + 1) * d);
          expect(Array.from(t.k)).toEqual(dtype === 'f16' ? Array.from(k, roundF16) : Array.from(k));
          expect(Array.from(t.v)).toEqual(dtype === 'f16' ? Array.from(v, roundF16) : Array.from(v));
          if (dtype === 'f16') expect(Array.from(t.k)).not.toEqual(Array.from(k)); // really rounded
        }
      }
      const head0 = (await cache.keysValues(0, 0, 0))[0].k;
      if (dtype === 'f16') expect(Array.from(head0.subarray(0, edge.length))).toEqual([65504, -65504, 1, 1 + 4 * 2 ** -11, 2.9802322387695312e-6, -0, 0, 65504, 2048]);
      const st = await cache.stats();
      expect(st.kvDtype).toBe(dtype);
      expect(st.bytesPerToken).toBe(2 * d * (dtype === 'f16' ? 2 : 4));
      expect(st.peakBytes).toBe(T * hkv * st.bytesPerToken!);
      bytes[dtype] = st.allocatedBytes;
      cache.destroy();
      gpu.destroy(bq);
      gpu.destroy(out);
    }
    // K and V: 2 x Hkv x 32 slots x d x (4 - 2) bytes saved; the state and scratch buffers are the same.
    expect(bytes.f32 - bytes.f16).toBe(2 * hkv * 32 * d * 2);
    expect(() => new SlotKvCache(gpu, { numLayers: 1, numHeads: hq, numKvHeads: hkv, headDim: d, dms: null }, { policy: 'full', maxTokens: 8, maxStepTokens: 8, dtype: 'bf16' as never })).toThrow(/unknown K\/V dtype/);
  });

  it('q8 and q4 store what the CPU quantizer stores (codes and scales), within their step of the input; bytes per token <= 0.55x / 0.30x of f16', async () => {
    const gpu = await testGpu();
    const hq = 4, hkv = 2, d = 64, T = 5;
    const stride = (hq + 2 * hkv) * d;
    const qkv = randn(T * stride, 8, 2);
    qkv.fill(0, hq * d, (hq + 1) * d); // an all-zero key: scale 0, stored as zeros
    qkv[stride + hq * d + 3] = 40; // one outlier: the rest of its q8 row rounds coarsely, its q4 block too
    const shape = { numLayers: 1, numHeads: hq, numKvHeads: hkv, headDim: d, dms: null };
    const f16Bytes = 2 * kvRowBytes(d, 'f16');
    for (const dtype of ['q8', 'q4'] as const) {
      const cache = new SlotKvCache(gpu, shape, { policy: 'full', maxTokens: 16, maxStepTokens: 8, dtype });
      const { bq, out } = storeStep(gpu, cache, qkv, T, hq * d);
      for (let h = 0; h < hkv; h++) {
        for (const t of await cache.keysValues(0, 0, h)) {
          for (const [got, o] of [[t.k, (hq + h) * d], [t.v, (hq + hkv + h) * d]] as const) {
            const x = qkv.slice(t.pos * stride + o, t.pos * stride + o + d);
            const want = storeKv(x.slice(), dtype, d);
            expect(Array.from(got), `${dtype} pos ${t.pos} head ${h}`).toEqual(Array.from(want));
            // Each value within half a step (q8: max|x| / 254; q4: its block's |s| / 2, one step at the clamped end).
            for (let b = 0; b < d; b += dtype === 'q8' ? d : 32) {
              const amax = Math.max(...Array.from(x.subarray(b, b + (dtype === 'q8' ? d : 32)), Math.abs));
              const step = dtype === 'q8' ? amax / 127 : amax / 8;
              for (let i = b; i < b + (dtype === 'q8' ? d : 32); i++) expect(Math.abs(got[i] - x[i])).toBeLessThanOrEqual(step * (dtype === 'q8' ? 0.5 : 1.01) + 1e-6);
            }
          }
        }
      }
      expect(Array.from((await cache.keysValues(0, 0, 0))[0].k).every((v) => v === 0)).toBe(true);
      const st = await cache.stats();
      expect(st.kvDtype).toBe(dtype);
      expect(st.bytesPerToken).toBe(2 * kvRowBytes(d, dtype));
      expect(st.bytesPerToken! / f16Bytes).toBeLessThanOrEqual(dtype === 'q8' ? 0.55 : 0.3);
      cache.destroy();
      gpu.destroy(bq);
      gpu.destroy(out);
    }
    expect(() => new SlotKvCache(gpu, { ...shape, headDim: 48 }, { policy: 'full', maxTokens: 8, maxStepTokens: 8, dtype: 'q4' })).toThrow(/multiple of 32/);
  });
});
