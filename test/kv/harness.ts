/** Drives a GPU KV cache and the CPU reference through the same steps and compares every output. */
import { expect } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import type { Gpu } from '../../worker/gpu/context';
import type { KvCacheOptions, ModelShape, Segment } from '../../worker/kv/cache';
import { SlotKvCache, type SlotCacheTuning } from '../../worker/kv/slot-cache';
import { KvCacheRef } from '../../worker/reference/dms';
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
  /** Tolerance of maxRelErr. */
  atol?: number;
  rtol?: number;
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
  });
  const stride = (hq + 2 * hkv) * d;
  const pos = new Map<number, number>();
  let seed = o.seed ?? 1;
  const dms = o.cache.policy === 'dms' || !!o.shape.dms;
  const driver: Driver = {
    cache,
    ref,
    steps: 0,
    async step(specs) {
      const segments: Segment[] = [];
      let rows = 0;
      for (const s of specs) {
        segments.push({ seq: s.seq, row: rows, tokens: s.tokens, pos0: pos.get(s.seq) ?? 0 });
        rows += s.tokens;
      }
      const qkvs: Float32Array[] = [];
      const alphas: Float32Array[] = [];
      const enc = new Encoder(gpu);
      const outs: GPUBuffer[] = [];
      const temps: GPUBuffer[] = [];
      cache.begin(enc, segments);
      for (let l = 0; l < L; l++) {
        const qkv = randn(rows * stride, seed++, o.qkScale ?? 1);
        const alpha = new Float32Array(rows * hkv);
        const rnd = randn(rows * hkv, seed++);
        for (const s of segments) {
          for (let r = 0; r < s.tokens; r++) {
            for (let h = 0; h < hkv; h++) {
              const i = (s.row + r) * hkv + h;
              alpha[i] = o.alphaFn ? o.alphaFn(l, s.seq, s.pos0 + r, h) : rnd[i] * 0.5 + 0.5 < (o.evictRate ?? 0.5) ? 1 + rnd[i] : -1 - rnd[i];
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
      let worst = 0;
      for (let l = 0; l < L; l++) {
        const got = await gpu.readF32(outs[l], rows * hq * d);
        for (const s of segments) {
          const q = qkvs[l].slice(s.row * stride, (s.row + s.tokens) * stride);
          const a = dms ? alphas[l].slice(s.row * hkv, (s.row + s.tokens) * hkv) : null;
          const want = ref.step(l, s.seq, s.pos0, s.tokens, q, a);
          const err = maxRelErr(got.subarray(s.row * hq * d, (s.row + s.tokens) * hq * d), want, o.atol ?? 2e-5, o.rtol ?? 2e-4);
          if (!(err <= 1)) expect.fail(`step ${driver.steps} layer ${l} seq ${s.seq} (pos0 ${s.pos0}, ${s.tokens} tokens): error ${err}`);
          worst = Math.max(worst, err);
        }
      }
      for (const s of segments) pos.set(s.seq, s.pos0 + s.tokens);
      for (const b of temps) gpu.destroy(b);
      driver.steps++;
      return worst;
    },
  };
  return driver;
}

/** Prefill `prompt` tokens in chunks of `chunk`, then `decode` single-token steps, for one sequence. */
export async function prefillDecode(dr: Driver, prompt: number, chunk: number, decode: number, seq = 0): Promise<void> {
  for (let done = 0; done < prompt; done += chunk) await dr.step([{ seq, tokens: Math.min(chunk, prompt - done) }]);
  for (let i = 0; i < decode; i++) await dr.step([{ seq, tokens: 1 }]);
}
