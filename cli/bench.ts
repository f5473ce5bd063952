/**
 * `dms bench`: decode and prefill speed of random-weight models of real shapes, against the bandwidth
 * bound measured on the same device (docs/benchmarks.md). With `--model` it loads a checkpoint instead
 * (Engine.load: streamed and quantized on the GPU, or the converted form), reports the load's time,
 * bytes and memory, and measures its weights the same way.
 */
import { basename } from 'node:path';
import { randomMatrix, randomWeights } from '../worker/bench/random-weights';
import { benchMaxContext, benchRows, formatRow, keepBusy, measureBandwidth, timeToFirstToken, type BenchRow } from '../worker/bench/rows';
import { SHAPES, withDms } from '../worker/bench/shapes';
import { Engine } from '../worker/engine/engine';
import { destroyWeights, type ModelWeights } from '../worker/load/weights';
import type { Gpu } from '../worker/gpu/context';
import { applyTuning, TUNING_PARAMS, TuningError } from '../worker/bench/tuning';
import { Encoder } from '../worker/gpu/encoder';
import { linear, linearTuning } from '../worker/kernels/linear';
import { nodeGpu } from '../worker/gpu/node';
import type { GpuMatrix, KvDtype, KvPolicyName, ModelConfig, WeightFormat } from '../worker/model/types';
import { KV_DTYPES } from '../worker/model/dtype';
export type { BenchRow };
import { choiceArg, choiceListArg, intArg, numArg, parseArgs, UsageError } from './args';
import { WEIGHTS } from './generate';
import { modelSource } from './model-source';

export async function benchCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, {
    values: ['shape', 'model', 'gpu-memory', 'warmup', 'weights', 'context', 'kv', 'kv-dtype', 'dms-evict-rate', 'dms-window', 'dms-rule', 'steps', 'prefill', 'ttft', ...TUNING_PARAMS],
    switches: ['json', 'gemv'],
  });
  let tuning;
  try {
    tuning = applyTuning((name) => values.get(name));
  } catch (e) {
    throw e instanceof TuningError ? new UsageError(e.message) : e;
  }
  const model = values.get('model');
  if (model !== undefined && values.has('shape')) throw new UsageError('give --shape (random weights) or --model (a checkpoint), not both');
  if (model !== undefined && switches.has('gemv')) throw new UsageError('--gemv measures a --shape, not a --model');
  if (model === undefined && (values.has('gpu-memory') || values.has('warmup'))) throw new UsageError('--gpu-memory and --warmup go with --model');
  const shapeName = values.get('shape') ?? 'tiny';
  const base = SHAPES[shapeName];
  if (!base && model === undefined) throw new UsageError(`--shape must be one of ${Object.keys(SHAPES).join(', ')}`);
  const weights = choiceArg(values, 'weights', WEIGHTS) ?? 'q4';
  const contexts = (values.get('context') ?? '1024').split(',').map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--context: "${v}" is not a token count`);
    return n;
  });
  const policies = (values.get('kv') ?? 'full,dms').split(',').map((v) => {
    if (v !== 'full' && v !== 'dms') throw new UsageError(`--kv: the benchmark measures full and dms, not "${v}"`);
    return v as KvPolicyName;
  });
  const kvDtypes = choiceListArg(values, 'kv-dtype', KV_DTYPES, 'f16');
  const steps = intArg(values, 'steps', 1, 16)!;
  const prefill = intArg(values, 'prefill', 1, shapeName === 'tiny' && model === undefined ? 64 : 512)!;
  if (model !== undefined) {
    await modelBench(model, {
      // Absent: the engine's choice (a converted folder's format, else the first that fits).
      weights: choiceArg(values, 'weights', WEIGHTS), contexts, policies, kvDtypes, steps, prefill,
      evictRate: numArg(values, 'dms-evict-rate', 0, 0.999),
      window: intArg(values, 'dms-window', 1),
      gpuMemoryMB: numArg(values, 'gpu-memory', 1, 1e9),
      warmupS: numArg(values, 'warmup', 0, 600) ?? 3,
      json: switches.has('json'),
    });
    return;
  }
  const evictRate = numArg(values, 'dms-evict-rate', 0, 0.999) ?? 0.875;
  const window = intArg(values, 'dms-window', 1, 256)!;
  const dmsRule = choiceArg(values, 'dms-rule', ['nvidia', 'fastdms'] as const) ?? 'nvidia';
  const config = withDms(base, window, 1 / (1 - evictRate), dmsRule);

  const gpu = await nodeGpu();
  if (switches.has('gemv')) {
    await gemvBench(gpu, base, weights);
    return;
  }
  const bandwidthGBps = await measureBandwidth(gpu, Math.min(1 << 30, gpu.caps.maxStorageBufferBindingSize / 2));
  const w = randomWeights(gpu, config, weights);
  const json = switches.has('json');
  const rows = await benchRows(gpu, { name: shapeName, config, weights: w, format: weights, contexts, policies, kvDtypes, evictRate, window, steps, prefill, bandwidthGBps }, json ? undefined : printRow);
  const ttftPrompt = intArg(values, 'ttft', 0) ?? (shapeName === 'tiny' ? 0 : 2048);
  const ttft = ttftPrompt > 0 ? await timeToFirstToken(gpu, { name: shapeName, config, weights: w, format: weights }, ttftPrompt, prefill) : null;
  if (ttft && !json) process.stdout.write(`time to first token, ${ttft.prompt}-token prompt (chunks of ${prefill}): ${ttft.ms.toFixed(0)} ms (${ttft.tokensPerSecond.toFixed(0)} tok/s)\n`);
  if (json) process.stdout.write(JSON.stringify({ adapter: gpu.caps.adapter, bandwidthGBps, tuning, dmsRule, ttft, rows }) + '\n');
}

/** Peaks of the process's memory while something runs: sampled on a timer and whenever `sample()` is called. */
class MemorySampler {
  readonly before = process.memoryUsage();
  readonly maxRssBefore = process.resourceUsage().maxRSS * 1024;
  peak = { rss: this.before.rss, heapUsed: this.before.heapUsed, arrayBuffers: this.before.arrayBuffers, external: this.before.external };
  samples = 0;
  private last = 0;
  private readonly timer = setInterval(() => this.take(), 50);

  /** Samples unless the last sample is under 10 ms old (a load calls this per slice read). */
  sample(): void {
    if (performance.now() - this.last >= 10) this.take();
  }
  private take(): void {
    const m = process.memoryUsage();
    this.last = performance.now();
    this.samples++;
    for (const k of ['rss', 'heapUsed', 'arrayBuffers', 'external'] as const) this.peak[k] = Math.max(this.peak[k], m[k]);
  }
  stop(): void {
    this.take();
    clearInterval(this.timer);
  }
}

/** How `bench --model` loaded the checkpoint (JSON `load`). */
export interface BenchLoad {
  model: string;
  /** The format on the GPU (what the pre-flight accepted). */
  weights: WeightFormat;
  ms: number;
  bytesRead: number;
  /** Bytes read per second of load time, GB/s. */
  readGBps: number;
  /** Loaded from a converted (pre-quantized) folder: webdms-manifest.json and its shards. */
  fromConverted: boolean;
  /** GPU bytes of the weights as allocated. */
  gpuWeightBytes: number;
  /** process.resourceUsage().maxRSS after the load, and before it (bytes). */
  maxRssBytes: number;
  maxRssBeforeBytes: number;
  /** Peaks of process.memoryUsage() sampled during the load (every 50 ms and per slice read), and the values before. */
  peak: { rss: number; heapUsed: number; arrayBuffers: number; external: number };
  before: { rss: number; heapUsed: number; arrayBuffers: number; external: number };
  samples: number;
  /** When the load ended (ISO time: to split a GPU memory trace into load and rows). */
  endedAt: string;
  /** The DMS configuration of the rows: from the checkpoint's config.json, or added for the benchmark. */
  dms: { windowSize: number; cr: number; fromCheckpoint: boolean };
}

/**
 * `dms bench --model`: loads a checkpoint through Engine.load (the streaming, GPU-quantizing loader, or
 * the converted form), reports the load, then measures its weights exactly as the random-weight bench does.
 */
async function modelBench(
  model: string,
  o: { weights?: WeightFormat; contexts: number[]; policies: KvPolicyName[]; kvDtypes: KvDtype[]; steps: number; prefill: number; evictRate?: number; window?: number; gpuMemoryMB?: number; warmupS: number; json: boolean },
): Promise<void> {
  const source = modelSource(model);
  const gpu = await nodeGpu();
  const mem = new MemorySampler();
  // The load's own cache is the smallest the rows need (it is freed before they run: each makes its own).
  const loadContext = benchMaxContext(Math.min(...o.contexts), o.prefill, o.steps);
  let engine: Engine;
  try {
    engine = await Engine.load(gpu, source, {
      weights: o.weights, kv: 'full', maxContext: loadContext, prefillChunk: o.prefill,
      gpuMemoryBytes: o.gpuMemoryMB === undefined ? undefined : o.gpuMemoryMB * 1e6,
      onProgress: () => mem.sample(),
    });
  } finally {
    mem.stop();
  }
  const stats = engine.loadStats!;
  const endedAt = new Date().toISOString();
  const loaded = engine.config;
  // A checkpoint without DMS keys gets the random-weight bench's DMS configuration for the dms rows.
  const cr = o.evictRate !== undefined ? 1 / (1 - o.evictRate) : loaded.dms?.cr ?? 8;
  const window = o.window ?? loaded.dms?.windowSize ?? 256;
  const config: ModelConfig = loaded.dms
    ? { ...loaded, dms: { ...loaded.dms, windowSize: window, cr } }
    : withDms(loaded, window, cr);
  const load: BenchLoad = {
    model,
    weights: engine.info.weights,
    ms: stats.ms,
    bytesRead: stats.bytesRead,
    readGBps: stats.bytesRead / stats.ms / 1e6,
    fromConverted: stats.fromConverted,
    gpuWeightBytes: engine.info.weightBytes,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    maxRssBeforeBytes: mem.maxRssBefore,
    peak: mem.peak,
    before: { rss: mem.before.rss, heapUsed: mem.before.heapUsed, arrayBuffers: mem.before.arrayBuffers, external: mem.before.external },
    samples: mem.samples,
    endedAt,
    dms: { windowSize: window, cr, fromCheckpoint: !!loaded.dms },
  };
  if (!o.json) printLoad(load);
  // Keep the weights; free the load's KV cache and activations. (The engine keeps its weights private:
  // element access reads them; the rows assemble their own engines over them, as for random weights.)
  const weights: ModelWeights = engine['weights'];
  engine.release();
  // During a load the GPU is nearly idle (reading the files dominates) and its clocks fall (H200: SM clock
  // 345 MHz from ~1980, the copy probe at 1.46 instead of 3.4-3.8 TB/s, measured with nvidia-smi): keep it
  // busy with copies for `warmupS` seconds first, then take the best of three probes (one of five runs on
  // the H200 gave a single probe of 0.5 TB/s after the warm-up). The probe right after the load is reported too.
  const probeBytes = Math.min(1 << 30, gpu.caps.maxStorageBufferBindingSize / 2);
  const firstBandwidthGBps = await measureBandwidth(gpu, probeBytes);
  const probesGBps = [firstBandwidthGBps];
  if (o.warmupS > 0) {
    await keepBusy(gpu, probeBytes, o.warmupS);
    probesGBps.length = 0;
    for (let i = 0; i < 3; i++) probesGBps.push(await measureBandwidth(gpu, probeBytes));
  }
  const bandwidthGBps = Math.max(...probesGBps);
  const warmup = { seconds: o.warmupS, firstBandwidthGBps, probesGBps };
  const gbps = (x: number) => x.toFixed(x >= 100 ? 0 : 2);
  if (!o.json) process.stdout.write(`GPU warm-up: ${o.warmupS} s of copies; copy bandwidth ${gbps(firstBandwidthGBps)} GB/s right after the load, ${gbps(bandwidthGBps)} GB/s after (best of ${probesGBps.map(gbps).join(', ')})\n`);
  const name = basename(model.replace(/\/+$/, '')) || model;
  const rows = await benchRows(gpu, {
    name, config, weights, format: load.weights, contexts: o.contexts, policies: o.policies, kvDtypes: o.kvDtypes,
    evictRate: 1 - 1 / cr, window, steps: o.steps, prefill: o.prefill, bandwidthGBps,
  }, o.json ? undefined : printRow);
  if (o.json) process.stdout.write(JSON.stringify({ adapter: gpu.caps.adapter, bandwidthGBps, warmup, load, rows }) + '\n');
}

function printLoad(l: BenchLoad): void {
  const gb = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(2)} MB`);
  const mb = (b: number) => (b / 1e6).toFixed(1);
  process.stdout.write(
    `load ${l.model}: ${l.weights} ${l.fromConverted ? 'from the converted form (webdms-manifest.json)' : 'streamed from safetensors, quantized on the GPU'} ` +
      `in ${(l.ms / 1000).toFixed(2)} s, ${gb(l.bytesRead)} read (${l.readGBps.toFixed(2)} GB/s), weights on the GPU ${gb(l.gpuWeightBytes)}; ended ${l.endedAt}\n` +
      `load memory: peak RSS ${gb(l.maxRssBytes)} (maxRSS; ${gb(l.maxRssBeforeBytes)} before the load), ` +
      `JS arrayBuffers peak ${mb(l.peak.arrayBuffers)} MB (${mb(l.before.arrayBuffers)} before), heap used peak ${mb(l.peak.heapUsed)} MB (${mb(l.before.heapUsed)} before), ` +
      `${l.samples} samples\n` +
      `dms rows: window ${l.dms.windowSize}, CR ${l.dms.cr.toFixed(2)} (${l.dms.fromCheckpoint ? "the checkpoint's DMS configuration" : 'added: the checkpoint has none'})\n`,
  );
}

export function printRow(r: BenchRow): void {
  process.stdout.write(formatRow(r) + '\n');
}

/**
 * `dms bench --gemv`: the decode projections of a shape alone (one token), each timed over many
 * back-to-back dispatches in one submit, in GB/s of weights read, for the tiled kernel and several
 * matvec shapes; the rows in one line each. The same matrix over and over stays in the GPU's L2 cache
 * where it fits, as the weights of a decode step never do: each row ends with `cold`, the default kernel
 * cycling over enough copies of the matrix (COLD_BYTES together) that every dispatch reads from memory.
 */
/** Bytes the copies of a matrix add up to in the cold run of `--gemv` (several times any GPU's L2 cache), in at most COLD_COPIES. */
const COLD_BYTES = 512e6;
const COLD_COPIES = 64;

async function gemvBench(gpu: Gpu, c: ModelConfig, format: WeightFormat): Promise<void> {
  const H = c.hiddenSize, F = c.intermediateSize, d = c.headDim;
  const shapes: Array<[string, number, number]> = [
    ['qkv', (c.numHeads + 2 * c.numKvHeads) * d, H], ['o', H, c.numHeads * d], ['gate_up', 2 * F, H], ['down', H, F], ['lm_head', c.vocabSize, H],
  ];
  const variants: Array<[string, () => void]> = [
    ['tiled', () => { linearTuning.mv = false; }],
    ...[[8, 128, 1], [8, 256, 1], [4, 128, 1], [8, 64, 1], [8, 32, 1], [8, 32, 2], [8, 64, 2], [4, 32, 2], [4, 64, 4], [16, 32, 1]].map(([r, l, u]) =>
      [`mv ${r}x${l}x${u}`, () => { linearTuning.mv = true; linearTuning.mvRows = r; linearTuning.mvLanes = l; linearTuning.mvUnroll = u; }] as [string, () => void]),
  ];
  const x = gpu.buffer('bench:x', 4 * Math.max(H, F, c.numHeads * d));
  const y = gpu.buffer('bench:y', 4 * c.vocabSize);
  const saved = { ...linearTuning };
  const timed = gpu.device.features.has('timestamp-query');
  const qs = timed ? gpu.device.createQuerySet({ type: 'timestamp', count: 2 }) : null;
  const resolve = timed ? gpu.device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : null;
  const readback = timed ? gpu.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }) : null;
  process.stdout.write(`gemv timing: ${timed ? 'GPU timestamps around the pass' : 'wall time (no timestamp-query)'}\n`);
  for (const [name, rows, cols] of shapes) {
    const m = randomMatrix(gpu, `bench:${name}`, rows, cols, format);
    const bytes = m.parts.reduce((n, p) => n + p.data.size + (p.scales?.size ?? 0), 0);
    const out: string[] = [];
    // GPU time of the pass (timestamp queries) where the adapter has them, else wall time.
    const run = async (reps: number, mats: GpuMatrix[] = [m]): Promise<number> => {
      const enc = new Encoder(gpu, 'gemv', qs ? { timestamps: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
      for (let i = 0; i < reps; i++) linear(enc, mats[i % mats.length], x, y, 1);
      const t0 = performance.now();
      enc.submit();
      await gpu.device.queue.onSubmittedWorkDone();
      const wall = (performance.now() - t0) * 1000;
      if (!qs || !resolve || !readback) return wall;
      const e = gpu.device.createCommandEncoder();
      e.resolveQuerySet(qs, 0, 2, resolve, 0);
      e.copyBufferToBuffer(resolve, 0, readback, 0, 16);
      gpu.device.queue.submit([e.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const [a, b] = new BigInt64Array(readback.getMappedRange());
      readback.unmap();
      return Number(b - a) / 1000;
    };
    const reps = Math.max(10, Math.min(100, Math.round(4e9 / bytes)));
    for (const [vname, set] of variants) {
      set();
      await run(2);
      const us = (await run(reps)) / reps;
      out.push(`${vname} ${us.toFixed(1)} us ${(bytes / us / 1e3).toFixed(0)} GB/s`);
    }
    Object.assign(linearTuning, saved);
    const copies = [m];
    for (let i = 1; i < Math.min(COLD_COPIES, Math.ceil(COLD_BYTES / bytes)); i++) copies.push(randomMatrix(gpu, `bench:${name} copy ${i}`, rows, cols, format));
    await run(copies.length, copies);
    const cold = (await run(Math.max(reps, 2 * copies.length), copies)) / Math.max(reps, 2 * copies.length);
    out.push(`cold ${cold.toFixed(1)} us ${(bytes / cold / 1e3).toFixed(0)} GB/s (${copies.length} copies)`);
    destroyWeights(gpu, copies, []);
    process.stdout.write(`gemv ${format} ${name} ${rows}x${cols} (${(bytes / 1e6).toFixed(1)} MB): ${out.join(' | ')}\n`);
  }
  gpu.destroy(x);
  gpu.destroy(y);
}
