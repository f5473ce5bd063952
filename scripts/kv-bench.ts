/**
 * KV cache timing on a real GPU (not a test): decode and prefill steps of one layer with Qwen3-8B-like
 * attention shapes (Hq 32, Hkv 8, d 128), per policy, context length and K/V storage type (KV_DTYPE=f16|f32,
 * default both; KV_CONTEXTS=1024,4096 narrows the contexts). Bundle with esbuild and run with Node and the
 * `webgpu` package (docs/kv-cache.md, "Speed"):
 *   npx esbuild scripts/kv-bench.ts --bundle --platform=node --format=esm --external:webgpu --loader:.wgsl=text --outfile=.cache/kv-bench.mjs
 *   node .cache/kv-bench.mjs
 */
import { Encoder } from '../worker/gpu/encoder';
import { nodeGpu } from '../worker/gpu/node';
import { SlotKvCache } from '../worker/kv/slot-cache';
import type { KvDtype, KvPolicyName } from '../worker/model/types';

const hq = 32, hkv = 8, d = 128;
const stride = (hq + 2 * hkv) * d;

async function main(): Promise<void> {
  const gpu = await nodeGpu();
  console.log('adapter', gpu.caps.adapter, 'subgroups', gpu.caps.subgroups);
  const chunk = 512;
  const qkv = gpu.buffer('bench qkv', chunk * stride * 4);
  const alpha = gpu.buffer('bench alpha', chunk * hkv * 4);
  const out = gpu.buffer('bench out', chunk * hq * d * 4);
  // Random-ish data so softmax is not degenerate.
  const data = new Float32Array(chunk * stride);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 12.9898) * 0.5;
  gpu.write(qkv, data);
  const a = new Float32Array(chunk * hkv);
  for (let i = 0; i < a.length; i++) a[i] = Math.sin(i * 7.13) > -0.75 ? 1 : -1; // ~77% evicted
  gpu.write(alpha, a);
  const dms = { windowSize: 512, alphaScale: 100, alphaOffset: 5, cr: 8, separateAlpha: false };

  {
    // Floor: the cost of one tiny dispatch in a long pass (what a decode step pays per kernel).
    const { add } = await import('../worker/kernels/add');
    const x = gpu.buffer('bench x', 1024), y = gpu.buffer('bench y', 1024);
    for (let rep = 0; rep < 2; rep++) {
      const enc = new Encoder(gpu, 'floor');
      for (let i = 0; i < 512; i++) add(enc, x, y, 256);
      const t0 = performance.now();
      enc.submit();
      await gpu.device.queue.onSubmittedWorkDone();
      if (rep) console.log(JSON.stringify({ tinyDispatchUs: +(((performance.now() - t0) * 1000) / 512).toFixed(2) }));
    }
  }
  const dtypes = (process.env.KV_DTYPE ? [process.env.KV_DTYPE] : ['f32', 'f16']) as KvDtype[];
  const runs: Array<{ policy: KvPolicyName; ctx: number; budget?: number; dtype: KvDtype }> = [];
  for (const dtype of dtypes) {
    for (const ctx of (process.env.KV_CONTEXTS ?? '1024,4096,16384,32768').split(',').map(Number)) {
      runs.push({ policy: 'full', ctx, dtype });
      runs.push({ policy: 'dms', ctx, dtype });
    }
    runs.push({ policy: 'tova', ctx: 4096, budget: 1024, dtype });
    runs.push({ policy: 'h2o', ctx: 4096, budget: 1024, dtype });
    runs.push({ policy: 'window', ctx: 4096, budget: 1024, dtype });
  }
  for (const r of runs) {
    const maxTokens = r.ctx + 200;
    const kv = new SlotKvCache(gpu, { numLayers: 1, numHeads: hq, numKvHeads: hkv, headDim: d, dms }, { policy: r.policy, maxTokens, maxStepTokens: chunk, budget: r.budget, dtype: r.dtype });
    const useAlpha = r.policy === 'dms' ? alpha : null;
    const step = (enc: Encoder, T: number) => {
      kv.begin(enc, [{ seq: 0, row: 0, tokens: T, pos0: kv.seen[0] }]);
      kv.write(enc, 0, qkv, useAlpha);
      kv.attend(enc, 0, qkv, out);
      kv.end(enc);
    };
    // Prefill to ctx in chunks, timing the chunks.
    let t0 = performance.now();
    while (kv.seen[0] < r.ctx) {
      const enc = new Encoder(gpu, 'prefill');
      for (let i = 0; i < 4 && kv.seen[0] < r.ctx; i++) step(enc, Math.min(chunk, r.ctx - kv.seen[0]));
      enc.submit();
      await gpu.device.queue.onSubmittedWorkDone();
    }
    const prefillMs = performance.now() - t0;
    // Decode: N single-token steps recorded in one submit.
    const N = 64;
    for (let rep = 0; rep < 2; rep++) {
      const enc = new Encoder(gpu, 'decode');
      for (let i = 0; i < N; i++) step(enc, 1);
      t0 = performance.now();
      enc.submit();
      await gpu.device.queue.onSubmittedWorkDone();
    }
    const decodeMs = (performance.now() - t0) / N;
    const st = await kv.stats();
    const residentPerHead = st.residentTokens / hkv;
    const gbps = (st.residentTokens * st.bytesPerToken!) / (decodeMs * 1e6);
    console.log(JSON.stringify({
      policy: r.policy, dtype: r.dtype, ctx: r.ctx, budget: r.budget ?? null, prefillTokPerS: Math.round(r.ctx / (prefillMs / 1000)),
      decodeUsPerLayer: +(decodeMs * 1000).toFixed(1), residentPerHead: Math.round(residentPerHead), kvGBps: +gbps.toFixed(0),
      compression: +st.compression.toFixed(2), budgetEvictions: st.budgetEvictions,
    }));
    kv.destroy();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
