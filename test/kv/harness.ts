/** Drives a GPU KV cache and the CPU reference through the same steps and compares every output. */
import { expect } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import type { Gpu } from '../../worker/gpu/context';
import type { KvCacheOptions, ModelShape, Segment } from '../../worker/kv/cache';
import { SlotKvCache, type SlotCacheTuning } from '../../worker/kv/slot-cache';
import { attentionRef } from '../../worker/reference/attention';
import { dmsVisible, KvCacheRef } from '../../worker/reference/kv-cache';
import { storeKvRows } from '../../worker/kv/quant';
import type { KvDtype } from '../../worker/model/types';
import { maxRelErr, randn } from '../gpu';

export interface StepSpec {
  seq: number;
  tokens: number;
}

export interface Driver {
  cache: SlotKvCache;
  ref: KvCacheRef;
  /** Runs one step (one segment per entry) through both and checks every layer's output. Returns the worst error. */
  step(segs: StepSpec[]): Promise<number>;
  steps: number;
  /** cache.fork and the same on the reference. */
  fork(src: number, dsts: number[]): void;
  /** cache.reset and the same on the reference. */
  reset(seq: number): void;
}

export interface DriverOptions {
  shape: ModelShape;
  cache: Omit<KvCacheOptions, 'policy'> & { policy: KvCacheOptions['policy']; tuning?: SlotCacheTuning };
  seed?: number;
  /** Scale of q and k values (larger = peakier softmax). */
  qkScale?: number;
  /** Probability that an alpha logit is positive (evict). */
  evictRate?: number;
  /** Alpha logits chosen by the test: (layer, seq, pos, kvHead) -> logit. Overrides evictRate. */
  alphaFn?: (layer: number, seq: number, pos: number, h: number) => number;
  /**
   * Also check the reference against the plain dense DMS mask over the whole history (valid only when
   * no budget eviction happens): the reference's slot-free simulation must equal the spec's rule.
   */
  dense?: boolean;
  /** Tolerance of maxRelErr. */
  atol?: number;
  rtol?: number;
}

/** The KV storage types: every cache test runs in each (the reference rounds K and V alike). */
export const DTYPES: readonly KvDtype[] = ['f32', 'f16', 'q8', 'q4'];

/** A test's head dim d as `dtype` can store it: q4 needs a multiple of 32 (one scale per 32 values). */
export function kvDim(d: number, dtype: KvDtype): number {
  return dtype === 'q4' ? Math.ceil(d / 32) * 32 : d;
}

export function makeDriver(gpu: Gpu, o: DriverOptions): Driver {
  const cache = new SlotKvCache(gpu, o.shape, o.cache);
  const { numLayers: L, numHeads: hq, numKvHeads: hkv, headDim: d } = o.shape;
  const ref = new KvCacheRef(o.shape, {
    policy: o.cache.policy,
    capacity: cache.capacity,
    window: o.shape.dms?.windowSize,
    sink: o.cache.policy === 'window' ? Math.min(4, cache.capacity - 1) : 0,
    recent: o.cache.policy === 'h2o' ? Math.max(1, Math.floor(cache.capacity / 2)) : 0,
    dtype: cache.dtype,
  });
  const stride = (hq + 2 * hkv) * d;
  /** Tokens each sequence has seen, counted here independently of the cache's own count. */
  const seen = new Map<number, number>();
  let seed = o.seed ?? 1;
  // mulberry32: uniform [0, 1) for the alpha decisions.
  let rs = (seed * 0x9e3779b9) >>> 0;
  const rand = (): number => {
    rs = (rs + 0x6d2b79f5) >>> 0;
    let t = rs;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const dms = o.cache.policy === 'dms' || !!o.shape.dms;
  // Dense history per (layer, seq) for the dense check: k, v [pos][hkv*d], alpha [pos][hkv].
  const hist = new Map<string, { k: Float32Array[]; v: Float32Array[]; a: Float32Array[] }>();
  const denseStep = (l: number, seq: number, pos0: number, T: number, qkv: Float32Array, alpha: Float32Array): Float32Array => {
    const key = `${l}/${seq}`;
    const hs = hist.get(key) ?? { k: [], v: [], a: [] };
    hist.set(key, hs);
    const store = (x: Float32Array): Float32Array => storeKvRows(x, d, cache.dtype);
    for (let r = 0; r < T; r++) {
      hs.k.push(store(qkv.slice(r * stride + hq * d, r * stride + (hq + hkv) * d)));
      hs.v.push(store(qkv.slice(r * stride + (hq + hkv) * d, (r + 1) * stride)));
      hs.a.push(alpha.slice(r * hkv, (r + 1) * hkv));
    }
    const n = pos0 + T;
    const keys = new Float32Array(n * hkv * d), values = new Float32Array(n * hkv * d);
    for (let j = 0; j < n; j++) { keys.set(hs.k[j], j * hkv * d); values.set(hs.v[j], j * hkv * d); }
    const q = new Float32Array(T * hq * d);
    for (let r = 0; r < T; r++) q.set(qkv.subarray(r * stride, r * stride + hq * d), r * hq * d);
    const w = o.cache.policy === 'dms' ? o.shape.dms!.windowSize : Infinity;
    return attentionRef(q, keys, values, { rows: T, nk: n, hq, hkv, d }, (r, j, h) => dmsVisible(pos0 + r, j, w, hs.a[j + 1]?.[h]));
  };
  const driver: Driver = {
    cache,
    ref,
    steps: 0,
    async step(specs) {
      const segments: Segment[] = [];
      let rows = 0;
      for (const s of specs) {
        segments.push({ seq: s.seq, row: rows, tokens: s.tokens, pos0: seen.get(s.seq) ?? 0 });
        rows += s.tokens;
      }
      const qkvs: Float32Array[] = [];
      const alphas: Float32Array[] = [];
      const outs: GPUBuffer[] = [];
      const temps: GPUBuffer[] = [];
      await gpu.guarded(`step ${driver.steps}`, () => {
      const enc = new Encoder(gpu);
      cache.begin(enc, segments);
      for (let l = 0; l < L; l++) {
        const qkv = randn(rows * stride, seed++, o.qkScale ?? 1);
        const alpha = new Float32Array(rows * hkv);
        for (const s of segments) {
          for (let r = 0; r < s.tokens; r++) {
            for (let h = 0; h < hkv; h++) {
              const i = (s.row + r) * hkv + h;
              const u = rand();
              alpha[i] = o.alphaFn ? o.alphaFn(l, s.seq, s.pos0 + r, h) : u < (o.evictRate ?? 0.5) ? 0.1 + u : -0.1 - u;
            }
          }
        }
        qkvs.push(qkv);
        alphas.push(alpha);
        const bq = gpu.upload('test qkv', qkv);
        const ba = dms ? gpu.upload('test alpha', alpha) : null;
        const out = gpu.buffer('test out', rows * hq * d * 4);
        temps.push(bq, out);
        if (ba) temps.push(ba);
        outs.push(out);
        cache.write(enc, l, bq, ba);
        cache.attend(enc, l, bq, out);
      }
      cache.end(enc);
      enc.submit();
      });
      let worst = 0;
      for (let l = 0; l < L; l++) {
        const got = await gpu.readF32(outs[l], rows * hq * d);
        for (const s of segments) {
          const q = qkvs[l].slice(s.row * stride, (s.row + s.tokens) * stride);
          const a = dms ? alphas[l].slice(s.row * hkv, (s.row + s.tokens) * hkv) : null;
          const want = ref.step(l, s.seq, s.pos0, s.tokens, q, a);
          if (o.dense) {
            const dense = denseStep(l, s.seq, s.pos0, s.tokens, q, a ?? new Float32Array(s.tokens * hkv).fill(-1));
            const e = maxRelErr(want, dense, 1e-6, 1e-5);
            if (!(e <= 1)) expect.fail(`reference != dense mask at step ${driver.steps} layer ${l} seq ${s.seq}: ${e}`);
          }
          const err = maxRelErr(got.subarray(s.row * hq * d, (s.row + s.tokens) * hq * d), want, o.atol ?? 2e-5, o.rtol ?? 2e-4);
          if (!(err <= 1) && process.env.KV_DEBUG) {
            for (let r = 0; r < s.tokens; r++) console.log('row', r, Array.from(got.subarray((s.row + r) * hq * d, (s.row + r) * hq * d + 4)), Array.from(want.subarray(r * hq * d, r * hq * d + 4)), maxRelErr(got.subarray((s.row + r) * hq * d, (s.row + r + 1) * hq * d), want.subarray(r * hq * d, (r + 1) * hq * d), o.atol ?? 2e-5, o.rtol ?? 2e-4));
          }
          if (!(err <= 1)) expect.fail(`step ${driver.steps} layer ${l} seq ${s.seq} (pos0 ${s.pos0}, ${s.tokens} tokens): error ${err}`);
          worst = Math.max(worst, err);
        }
      }
      for (const s of segments) seen.set(s.seq, s.pos0 + s.tokens);
      for (const b of temps) gpu.destroy(b);
      driver.steps++;
      return worst;
    },
    fork(src, dsts) {
      cache.fork(src, dsts);
      for (const dst of dsts) {
        ref.fork(src, dst);
        seen.set(dst, seen.get(src) ?? 0);
        for (let l = 0; l < L; l++) {
          const h = hist.get(`${l}/${src}`);
          if (h) hist.set(`${l}/${dst}`, { k: [...h.k], v: [...h.v], a: [...h.a] });
        }
      }
    },
    reset(seq) {
      cache.reset(seq);
      ref.reset(seq);
      seen.set(seq, 0);
      for (let l = 0; l < L; l++) hist.delete(`${l}/${seq}`);
    },
  };
  return driver;
}

/** Prefill `prompt` tokens in chunks of `chunk`, then `decode` single-token steps, for one sequence. */
export async function prefillDecode(dr: Driver, prompt: number, chunk: number, decode: number, seq = 0): Promise<void> {
  for (let done = 0; done < prompt; done += chunk) await dr.step([{ seq, tokens: Math.min(chunk, prompt - done) }]);
  for (let i = 0; i < decode; i++) await dr.step([{ seq, tokens: 1 }]);
}
