/**
 * The benchmark's measurements (docs/benchmarks.md), shared by `dms bench` (Node, cli/bench.ts) and the
 * benchmark page (bench.html, in a module worker as the app runs the engine): decode and prefill speed
 * against the bandwidth bound measured on the same device, the dispatches and CPU time of a decode step,
 * its GPU time, and where the GPU time goes per kernel (timestamp queries, where the adapter has them).
 */
import copySource from '../../shaders/copy_bandwidth.wgsl';
import { Engine } from '../engine/engine';
import type { ModelWeights } from '../load/weights';
import type { Gpu } from '../gpu/context';
import { Encoder, params } from '../gpu/encoder';
import type { KvDtype, KvPolicyName, ModelConfig, WeightFormat } from '../model/types';

/** GPU time of one decode step's dispatches, summed per pipeline label. */
export interface KernelTime {
  label: string;
  dispatches: number;
  us: number;
}

export interface BenchRow {
  shape: string;
  weights: WeightFormat;
  context: number;
  kv: KvPolicyName;
  kvDtype: KvDtype;
  decodeTokensPerSecond: number;
  prefillTokensPerSecond: number;
  bytesPerToken: number;
  weightBytes: number;
  kvBytesRead: number;
  /** K and V bytes of one resident token of one layer and KV head, scales included (stats().bytesPerToken). */
  kvBytesPerToken: number;
  bandwidthGBps: number;
  boundTokensPerSecond: number;
  fractionOfBound: number;
  kvBytes: number;
  residentTokens: number;
  dispatchesPerToken: number;
  /**
   * Decode one step at a time, each step recorded only after the previous id is read back (tok/s): what
   * decodeTokensPerSecond (generate(), which runs one step ahead) gains by overlapping.
   */
  serialTokensPerSecond: number;
  /** Mean CPU time per decode step of generate() spent recording and submitting, and waiting for the sampled id. */
  recordMs: number;
  waitMs: number;
  submitsPerToken: number;
  /** GPU time of one decode step recorded in one compute pass (timestamps), or null without timestamp-query. */
  gpuStepMs: number | null;
  /** One decode step, each dispatch timed in a pass of its own, summed per pipeline, or null. */
  kernels: KernelTime[] | null;
  /** Weight bytes of the decode projections over their kernels' time (linear_mv*), GB/s, or null. */
  matvecGBps: number | null;
  /** K/V bytes one decode step reads over the decode attention kernels' time, GB/s, or null. */
  attentionGBps: number | null;
}

/**
 * Device bandwidth: a vec4 copy of a large buffer, bytes read + written per second (GB/s). A decode
 * step only reads, and a copy's read+write rate is what the memory system sustains, so the bound is
 * bandwidth / bytes read per token.
 */
export async function measureBandwidth(gpu: Gpu, bytes: number): Promise<number> {
  const words = Math.floor(bytes / 16) * 4;
  const src = gpu.buffer('bench:copy src', words * 4);
  const dst = gpu.buffer('bench:copy dst', words * 4);
  const run = async (reps: number) => {
    const enc = new Encoder(gpu, 'bandwidth');
    for (let i = 0; i < reps; i++) enc.dispatch(gpu.pipeline('copy_bandwidth', copySource), params(words / 4), [src, dst], enc.grid(Math.ceil(words / 4 / 256)));
    enc.submit();
    await gpu.device.queue.onSubmittedWorkDone();
  };
  await run(2);
  const reps = 10;
  const t0 = performance.now();
  await run(reps);
  const s = (performance.now() - t0) / 1000;
  gpu.destroy(src);
  gpu.destroy(dst);
  return (2 * words * 4 * reps) / s / 1e9;
}

/** Back-to-back copies of one buffer pair for `seconds` (the GPU's clocks rise under sustained load). */
export async function keepBusy(gpu: Gpu, bytes: number, seconds: number): Promise<void> {
  const words = Math.floor(bytes / 16) * 4;
  const src = gpu.buffer('bench:busy src', words * 4);
  const dst = gpu.buffer('bench:busy dst', words * 4);
  for (const t0 = performance.now(); performance.now() - t0 < seconds * 1000;) {
    const enc = new Encoder(gpu, 'busy');
    for (let i = 0; i < 8; i++) enc.dispatch(gpu.pipeline('copy_bandwidth', copySource), params(words / 4), [src, dst], enc.grid(Math.ceil(words / 4 / 256)));
    enc.submit();
    await gpu.device.queue.onSubmittedWorkDone();
  }
  gpu.destroy(src);
  gpu.destroy(dst);
}

/** What benchRows measures: a model (config and weights on the GPU) at each context and KV policy. */
export interface BenchSetup {
  name: string;
  /** With a DMS configuration (policy 'dms' needs one). */
  config: ModelConfig;
  weights: ModelWeights;
  format: WeightFormat;
  contexts: number[];
  policies: KvPolicyName[];
  /** How K and V are stored: each context and policy runs once per dtype. */
  kvDtypes: KvDtype[];
  /** Fraction of the older tokens a primed DMS cache evicts; the window stays. */
  evictRate: number;
  window: number;
  steps: number;
  prefill: number;
  bandwidthGBps: number;
}

/** Tokens an engine for `context` must hold: the context, one prefill chunk, the decode steps twice, the timed GPU steps, slack. */
export function benchMaxContext(context: number, prefill: number, steps: number): number {
  return context + prefill + 2 * steps + 16;
}

/** Reads `count` timestamps (ns) of a query set. */
async function readTimestamps(gpu: Gpu, qs: GPUQuerySet, count: number): Promise<BigInt64Array> {
  const bytes = count * 8;
  const resolve = gpu.device.createBuffer({ label: 'bench:timestamps', size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = gpu.device.createBuffer({ label: 'bench:timestamps read', size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const e = gpu.device.createCommandEncoder();
  e.resolveQuerySet(qs, 0, count, resolve, 0);
  e.copyBufferToBuffer(resolve, 0, read, 0, bytes);
  gpu.device.queue.submit([e.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const out = new BigInt64Array(read.getMappedRange().slice(0));
  read.unmap();
  resolve.destroy();
  read.destroy();
  return out;
}

/**
 * GPU timings of the engine's next decode steps (each advances its cache by one token): the whole step
 * in one pass, then one step with each dispatch in a pass of its own. Null without timestamp-query.
 */
async function gpuTimings(gpu: Gpu, engine: Engine): Promise<{ stepMs: number; kernels: KernelTime[] } | null> {
  if (!gpu.device.features.has('timestamp-query')) return null;
  const labels = engine.decodeLabels();
  if (!labels) return null;
  const qs = gpu.device.createQuerySet({ type: 'timestamp', count: Math.max(2, 2 * labels.length) });
  try {
    engine.gpuTiming = { querySet: qs, mode: 'step' };
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      await engine.step([1]);
      const [a, b] = await readTimestamps(gpu, qs, 2);
      best = Math.min(best, Number(b - a) / 1e6);
    }
    engine.gpuTiming = { querySet: qs, mode: 'dispatch' };
    await engine.step([1]);
    const t = await readTimestamps(gpu, qs, 2 * labels.length);
    const byLabel = new Map<string, KernelTime>();
    labels.forEach((label, i) => {
      const k = byLabel.get(label) ?? { label, dispatches: 0, us: 0 };
      k.dispatches++;
      k.us += Number(t[2 * i + 1] - t[2 * i]) / 1000;
      byLabel.set(label, k);
    });
    return { stepMs: best, kernels: [...byLabel.values()].sort((x, y) => y.us - x.us) };
  } finally {
    engine.gpuTiming = null;
    qs.destroy();
  }
}

/**
 * For each context and policy: an engine over `s.weights` with its KV cache primed to the context, then
 * `steps` timed decode steps after a warm-up, GPU timings of further steps, and one timed prefill chunk
 * (the weights are shared and kept).
 */
export async function benchRows(gpu: Gpu, s: BenchSetup, onRow?: (row: BenchRow) => void): Promise<BenchRow[]> {
  const { config, weights: w, steps, prefill, evictRate, window } = s;
  const rows: BenchRow[] = [];
  for (const context of s.contexts) {
    for (const kv of s.policies) for (const kvDtype of s.kvDtypes) {
      const kept = kv === 'dms' ? 1 - evictRate : 1;
      const maxContext = benchMaxContext(context, prefill, steps);
      const budget = kv === 'dms' ? window + 1 + Math.ceil(maxContext * kept) + 8 : undefined;
      const engine = Engine.assemble(gpu, s.name, { ...config, maxPositionEmbeddings: maxContext }, {}, null, w, {
        weights: s.format, kv, kvDtype, kvBudget: budget, maxContext, prefillChunk: prefill,
      });
      // Decode: after a warm-up, `steps` tokens one step at a time (each id read back before the next step is
      // recorded), then `steps` tokens as the app decodes them (generate(), one step ahead).
      engine.prime(context, kept);
      for (let i = 0; i < 3; i++) await engine.step([1]);
      let dispatches = 0;
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) dispatches = (await engine.step([1])).dispatches;
      const serialS = (performance.now() - t0) / 1000;
      const submits = engine.lastSubmits;
      const run = await engine.generate([...engine.cachedTokens, 1], { maxTokens: steps + 1, temperature: 0, stopIds: [] });
      const { recordMs, waitMs, steps: decoded } = engine.decodeStats;
      if (decoded !== steps) throw new Error(`bench: generate() decoded ${decoded} steps, not ${steps}`);
      const decodeS = run.timing.decodeMs / 1000;
      const stats = await engine.kvStats();
      // Each decode step reads every weight once and K and V of every resident token once.
      const residentTokens = stats.residentTokens;
      const kvBytesRead = residentTokens * stats.bytesPerToken!;
      const bytesPerToken = w.bytes + kvBytesRead;
      const timing = await gpuTimings(gpu, engine);
      const kernelUs = (re: RegExp) => timing ? timing.kernels.filter((k) => re.test(k.label)).reduce((n, k) => n + k.us, 0) : 0;
      const mvUs = kernelUs(/^linear_mv_/);
      const attUs = kernelUs(/^attention_decode/);
      // Prefill: one chunk of `prefill` tokens on top of the same context.
      engine.prime(context, kept);
      await engine.step(new Array(prefill).fill(1));
      engine.prime(context, kept);
      const t1 = performance.now();
      await engine.step(new Array(prefill).fill(1));
      const prefillS = (performance.now() - t1) / 1000;
      const decodeTokensPerSecond = steps / decodeS;
      const serialTokensPerSecond = steps / serialS;
      const boundTokensPerSecond = (s.bandwidthGBps * 1e9) / bytesPerToken;
      rows.push({
        shape: s.name, weights: s.format, context, kv, kvDtype,
        decodeTokensPerSecond,
        serialTokensPerSecond,
        prefillTokensPerSecond: prefill / prefillS,
        bytesPerToken, weightBytes: w.bytes, kvBytesRead, kvBytesPerToken: stats.bytesPerToken!,
        bandwidthGBps: s.bandwidthGBps,
        boundTokensPerSecond,
        fractionOfBound: decodeTokensPerSecond / boundTokensPerSecond,
        kvBytes: stats.peakBytes,
        residentTokens,
        dispatchesPerToken: dispatches,
        recordMs: recordMs / steps, waitMs: waitMs / steps, submitsPerToken: submits,
        gpuStepMs: timing?.stepMs ?? null,
        kernels: timing?.kernels ?? null,
        // The decode matvecs read every weight but the embedding table (lm_head reads its own or the tied copy).
        matvecGBps: mvUs > 0 ? (w.bytes - (config.tieWordEmbeddings ? 0 : embedBytes(w))) / mvUs / 1e3 : null,
        attentionGBps: attUs > 0 ? kvBytesRead / attUs / 1e3 : null,
      });
      engine.release();
      onRow?.(rows[rows.length - 1]);
    }
  }
  return rows;
}

/** Bytes of the embedding table on the GPU. */
function embedBytes(w: ModelWeights): number {
  return w.embed.parts.reduce((n, p) => n + p.data.size + (p.scales?.size ?? 0), 0);
}

/** Time to first token: a fresh engine prefills `prompt` tokens (in chunks of `chunk`) and samples one. */
export async function timeToFirstToken(gpu: Gpu, s: Pick<BenchSetup, 'name' | 'config' | 'weights' | 'format'>, prompt: number, chunk: number): Promise<{ prompt: number; ms: number; tokensPerSecond: number }> {
  const maxContext = prompt + 8;
  const engine = Engine.assemble(gpu, s.name, { ...s.config, maxPositionEmbeddings: maxContext }, {}, null, s.weights, {
    weights: s.format, kv: 'full', maxContext, prefillChunk: chunk,
  });
  try {
    const ids = new Array(prompt).fill(1);
    await engine.step(ids.slice(0, chunk)); // compiles the pipelines
    engine.reset();
    const t0 = performance.now();
    await engine.step(ids);
    const ms = performance.now() - t0;
    return { prompt, ms, tokensPerSecond: (prompt * 1000) / ms };
  } finally {
    engine.release();
  }
}

export function formatRow(r: BenchRow): string {
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const gbps = (v: number | null) => (v === null ? 'n/a' : `${v.toPrecision(3)} GB/s (${((100 * v) / r.bandwidthGBps).toFixed(0)}% of copy)`);
  let line =
    `${r.shape} ${r.weights} ctx ${r.context} ${r.kv}: decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s ` +
    `(${(100 * r.fractionOfBound).toFixed(0)}% of bound ${r.boundTokensPerSecond.toFixed(1)} at ${r.bandwidthGBps.toFixed(2)} GB/s copy; ` +
    `${r.serialTokensPerSecond.toFixed(1)} tok/s one step at a time), ` +
    `prefill ${r.prefillTokensPerSecond.toFixed(0)} tok/s, ${mb(r.bytesPerToken)} MB/token (KV ${mb(r.kvBytesRead)}), ` +
    `KV ${mb(r.kvBytes)} MB (K/V ${r.kvDtype}, ${r.kvBytesPerToken} B per token and KV head), ${r.dispatchesPerToken} dispatches/token in ${r.submitsPerToken} submits ` +
    `(CPU ${r.recordMs.toFixed(2)} ms recording+submitting, ${r.waitMs.toFixed(2)} ms waiting)`;
  if (r.gpuStepMs !== null) line += `; GPU ${r.gpuStepMs.toFixed(2)} ms/step, matvec ${gbps(r.matvecGBps)}, attention ${gbps(r.attentionGBps)}`;
  if (r.kernels) line += `\n  kernels: ${r.kernels.map((k) => `${k.label} x${k.dispatches} ${k.us.toFixed(0)} us`).join(' | ')}`;
  return line;
}
