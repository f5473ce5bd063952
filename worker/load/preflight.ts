/**
 * Pre-flight: from config.json alone (before any weight is downloaded), how many bytes the model needs
 * on the GPU in each weight format, what its KV cache and activations take at the chosen context and
 * policy, and whether that fits this adapter's buffer limits and a memory budget. `preflight()` picks
 * the format (or checks the one asked for) and throws a `PreflightError` carrying the numbers otherwise.
 *
 * Sizes follow the engine exactly: weights as `worker/load/weights.ts` lays them out (q/k/v and
 * gate/up concatenated, norms and biases f32, rows split into parts by `matrixParts`, each buffer
 * rounded up to 16 bytes); the KV cache as `worker/kv/layout.ts` lays it out (docs/kv-cache.md);
 * activations as `worker/engine/forward.ts` allocates them.
 */
import type { KvDtype, KvPolicyName, ModelConfig, WeightFormat } from '../model/types';
import { kvPolicy } from '../kv/cache';
import { kvCacheBytes, kvCapacity, streamKvBytes } from '../kv/layout';
import { DEFAULT_KV_DTYPE, kvDtypeProblem, kvRowBytes } from '../model/dtype';
import { rowScaleWords, rowWords } from './pack';

export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];
/** The order tried when no format is asked for: best quality first. */
export const AUTO_ORDER: readonly WeightFormat[] = ['f16', 'q8', 'q4'];
/**
 * Without an asked format, the best quality whose weights stay under this is taken (else the smallest
 * format that fits): a decode step reads every weight once, and the user downloads them. An 8B model
 * gets q4 (4.8 GiB to read per token and to download) rather than f16 (15 GiB) on a GPU that could hold both.
 */
export const AUTO_MAX_WEIGHT_BYTES = 4 * 2 ** 30;

/** What the adapter allows; `memoryBytes` is the budget for all GPU buffers (see defaultMemoryBudget). */
export interface PreflightLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** Bytes the model may take on the GPU in total. Default: defaultMemoryBudget(limits). */
  memoryBytes?: number;
}

export interface PreflightOptions {
  /** The format asked for; absent = the first of AUTO_ORDER that fits within AUTO_MAX_WEIGHT_BYTES, else the smallest that fits. */
  weights?: WeightFormat;
  /** Most tokens in the conversation (default 4096, clamped to max_position_embeddings as the engine does). */
  maxContext?: number;
  kv?: KvPolicyName;
  kvBudget?: number;
  /** How the KV cache stores K and V (default 'f16', as the engine). */
  kvDtype?: KvDtype;
  sequences?: number;
  prefillChunk?: number;
  /** Largest weight part (default: the adapter's maxStorageBufferBindingSize). */
  maxPartBytes?: number;
}

export interface MatrixEstimate {
  name: string;
  rows: number;
  cols: number;
  /** Bytes of one packed row (data; scales are a separate buffer). */
  rowBytes: number;
  parts: number;
  /** Largest part buffer (data or scales), after the 16-byte rounding. */
  largestPartBytes: number;
  bytes: number;
}

export interface FormatEstimate {
  format: WeightFormat;
  /** All weight buffers, 16-byte rounded, as allocated. */
  weightBytes: number;
  /** Weights + KV + activations + overhead. */
  totalBytes: number;
  largestPartBytes: number;
  parts: number;
  /** Why this format does not fit, or null. */
  problem: string | null;
}

export interface PreflightReport {
  format: WeightFormat;
  formats: Record<WeightFormat, FormatEstimate>;
  maxContext: number;
  kvPolicy: KvPolicyName;
  kvDtype: KvDtype;
  /** KV slots per (layer, sequence, KV head). */
  kvCapacity: number;
  kvBytes: number;
  /** One (layer, sequence) K buffer: must fit maxStorageBufferBindingSize. */
  kvLayerBytes: number;
  activationBytes: number;
  overheadBytes: number;
  memoryBytes: number;
  limits: PreflightLimits;
  parameters: number;
}

/** Thrown when nothing fits; `report` has every number, `message` says them in words. */
export class PreflightError extends Error {
  readonly kind = 'preflight';
  constructor(message: string, readonly report: PreflightReport) {
    super(message);
    this.name = 'PreflightError';
  }
}

/** Pipelines, uniform arenas, staging for uploads and readbacks: a fixed allowance. */
export const OVERHEAD_BYTES = 64 * 1024 * 1024;

/**
 * The memory budget when the caller gives none. WebGPU does not say how much memory the GPU has, so:
 * four times maxBufferSize (browsers report 2-4 GiB on desktop GPUs, i.e. 8-16 GiB), at least 2 GiB and at
 * most 16 GiB. A caller that knows better (the user, navigator.deviceMemory for integrated GPUs, the
 * CLI's --gpu-memory) passes `memoryBytes`.
 */
export function defaultMemoryBudget(limits: Pick<PreflightLimits, 'maxBufferSize'>): number {
  return Math.max(2 * 2 ** 30, Math.min(16 * 2 ** 30, 4 * limits.maxBufferSize));
}

const round16 = (n: number) => Math.max(16, Math.ceil(n / 16) * 16);

/** The weight matrices the engine builds (names as in weights.ts, per layer once with `layers.*`). */
export function weightMatrices(c: ModelConfig): { name: string; rows: number; cols: number; count: number; quantized: boolean }[] {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
  const out = [
    { name: 'embed', rows: c.vocabSize, cols: H, count: 1, quantized: true },
    { name: 'layers.*.qkv', rows: (c.numHeads + 2 * c.numKvHeads) * d, cols: H, count: c.numLayers, quantized: true },
    { name: 'layers.*.o', rows: H, cols: c.numHeads * d, count: c.numLayers, quantized: true },
    { name: 'layers.*.gate_up', rows: 2 * F, cols: H, count: c.numLayers, quantized: true },
    { name: 'layers.*.down', rows: H, cols: F, count: c.numLayers, quantized: true },
  ];
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head', rows: c.vocabSize, cols: H, count: 1, quantized: true });
  if (c.dms?.separateAlpha) out.push({ name: 'layers.*.dms_alpha', rows: c.numKvHeads, cols: H, count: c.numLayers, quantized: false });
  return out;
}

/** Bytes of the f32 vectors (norms, biases) the engine uploads, each buffer rounded to 16 bytes; per layer times layers, never a per-layer list (num_hidden_layers may be 1e9). */
function vectorBytes(c: ModelConfig): number {
  const H = c.hiddenSize, d = c.headDim;
  const per: number[] = [H, H];
  if (c.qkNorm) per.push(d, d);
  if (c.attentionBias) per.push((c.numHeads + 2 * c.numKvHeads) * d);
  if (c.dms?.separateAlpha) per.push(H);
  return c.numLayers * per.reduce((n, v) => n + round16(4 * v), 0) + round16(4 * H);
}

/** Rows per part, as matrixParts splits them (without needing a Gpu). */
export function rowsPerPart(cols: number, format: WeightFormat, maxPartBytes: number, maxBufferSize: number): number {
  const limit = Math.floor(Math.min(maxPartBytes, maxBufferSize) / 16) * 16;
  const rowBytes = Math.max(rowWords(cols, format), rowScaleWords(cols, format)) * 4;
  return Math.floor(limit / rowBytes);
}

export function matrixEstimate(name: string, rows: number, cols: number, format: WeightFormat, maxPartBytes: number, maxBufferSize: number): MatrixEstimate {
  const per = rowsPerPart(cols, format, maxPartBytes, maxBufferSize);
  const rowBytes = rowWords(cols, format) * 4;
  const scaleBytes = rowScaleWords(cols, format) * 4;
  if (per < 1) return { name, rows, cols, rowBytes, parts: 0, largestPartBytes: Math.max(rowBytes, scaleBytes), bytes: NaN };
  const parts = Math.max(1, Math.ceil(rows / per));
  // parts - 1 full parts and the rest, in closed form: a hostile config may ask for 1e15 rows.
  const part = (n: number) => ({ data: round16(n * rowBytes), scales: scaleBytes ? round16(n * scaleBytes) : 0 });
  const full = part(per), last = part(rows - per * (parts - 1));
  const bytes = (parts - 1) * (full.data + full.scales) + last.data + last.scales;
  const largest = Math.max(last.data, last.scales, parts > 1 ? Math.max(full.data, full.scales) : 0);
  return { name, rows, cols, rowBytes, parts, largestPartBytes: largest, bytes };
}

/**
 * KV cache bytes, as the slot cache allocates them (worker/kv/layout.ts): K, V (2 bytes a value in f16, the
 * default; 4 in f32) and the state words per (layer, sequence), plus the shared scratch and counters.
 */
export function kvBytes(c: ModelConfig, policy: KvPolicyName, maxTokens: number, opts: { budget?: number; sequences?: number; maxStepTokens?: number; dtype?: KvDtype } = {}): { bytes: number; layerBytes: number; capacity: number } {
  const cap = kvCapacity(c, policy, maxTokens, opts.budget);
  const dtype = opts.dtype ?? DEFAULT_KV_DTYPE;
  return {
    bytes: kvCacheBytes(c, policy, cap, { sequences: opts.sequences, maxStepTokens: opts.maxStepTokens, dtype }),
    layerBytes: streamKvBytes(c.numKvHeads, cap, c.headDim, dtype),
    capacity: cap,
  };
}

/** Activation buffers of the forward pass at `step` rows (worker/engine/forward.ts). */
export function activationBytes(c: ModelConfig, step: number): number {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
  const floats = [
    step, step, step * H, step * H, step * (c.numHeads + 2 * c.numKvHeads) * d, step * c.numHeads * d, step * H,
    step * 2 * F, step * F, c.dms ? step * c.numKvHeads : 0, c.dms?.separateAlpha ? step * H : 0, step * H, step * c.vocabSize, d / 2,
  ];
  return floats.reduce((n, f) => n + (f ? round16(4 * f) : 0), 0) + round16(4 * step);
}

export function parameterCount(c: ModelConfig): number {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
  const qkvRows = (c.numHeads + 2 * c.numKvHeads) * d;
  const perLayer = qkvRows * H + H * c.numHeads * d + 3 * F * H + 2 * H + (c.qkNorm ? 2 * d : 0) + (c.attentionBias ? qkvRows : 0);
  return c.numLayers * perLayer + c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2) + H;
}

/** Weight bytes of one format, and the first problem with the buffer limits (a row that fits no part). */
export function weightEstimate(c: ModelConfig, format: WeightFormat, limits: PreflightLimits, maxPartBytes = limits.maxStorageBufferBindingSize): { bytes: number; parts: number; largestPartBytes: number; problem: string | null } {
  let bytes = 0, parts = 0, largest = 0;
  let problem: string | null = null;
  for (const m of weightMatrices(c)) {
    const f = m.quantized ? format : 'f32';
    const e = matrixEstimate(m.name, m.rows, m.cols, f, maxPartBytes, limits.maxBufferSize);
    if (e.parts === 0) {
      problem ??= `one row of ${m.name} (${m.cols} ${f} values, ${fmtBytes(e.largestPartBytes)}) is larger than the ${fmtBytes(Math.min(maxPartBytes, limits.maxBufferSize))} buffer limit`;
      continue;
    }
    bytes += e.bytes * m.count;
    parts += e.parts * m.count;
    largest = Math.max(largest, e.largestPartBytes);
  }
  bytes += vectorBytes(c);
  return { bytes, parts, largestPartBytes: largest, problem };
}

export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/**
 * Sizes the model in every format against `limits` and picks one: `opts.weights` when it fits, else the
 * first of AUTO_ORDER that fits with weights under AUTO_MAX_WEIGHT_BYTES, else the smallest that fits. Throws PreflightError with the numbers when the asked format, or every
 * format, does not fit.
 */
export function preflight(c: ModelConfig, limits: PreflightLimits, opts: PreflightOptions = {}): PreflightReport {
  const maxContext = Math.min(opts.maxContext ?? 4096, c.maxPositionEmbeddings);
  const step = Math.min(opts.prefillChunk ?? 64, maxContext);
  const sequences = opts.sequences ?? 1;
  // Parallel chains advance one row each per step: refuse before sizing (and allocating) caches for them.
  if (!Number.isSafeInteger(sequences) || sequences < 1 || sequences > step) {
    throw new RangeError(`${sequences} parallel chains cannot run here: each chain takes one row of a forward step, and a step takes at most ${step} rows (the prefill chunk, capped by the context of ${maxContext} tokens)`);
  }
  const policy = kvPolicy(opts.kv, c.dms);
  const dtype = opts.kvDtype ?? DEFAULT_KV_DTYPE;
  const dtypeProblem = kvDtypeProblem(c.headDim, dtype);
  if (dtypeProblem) throw new RangeError(dtypeProblem);
  const kv = kvBytes(c, policy, maxContext, { budget: opts.kvBudget, sequences: opts.sequences, maxStepTokens: step, dtype });
  const act = activationBytes(c, step);
  const memoryBytes = limits.memoryBytes ?? defaultMemoryBudget(limits);
  const fixed = kv.bytes + act + OVERHEAD_BYTES;
  const formats = {} as Record<WeightFormat, FormatEstimate>;
  for (const f of WEIGHT_FORMATS) {
    const w = weightEstimate(c, f, limits, opts.maxPartBytes);
    const totalBytes = w.bytes + fixed;
    let problem = w.problem;
    if (!problem && kv.layerBytes > limits.maxStorageBufferBindingSize) {
      problem = `one layer's K cache (${c.numKvHeads} KV heads x ${kv.capacity} tokens x ${kvRowBytes(c.headDim, dtype)} B (head dim ${c.headDim} in ${dtype}) = ${fmtBytes(kv.layerBytes)}) exceeds maxStorageBufferBindingSize ${fmtBytes(limits.maxStorageBufferBindingSize)}; lower the context`;
    }
    if (!problem && totalBytes > memoryBytes) {
      problem = `needs ${fmtBytes(totalBytes)} (weights ${fmtBytes(w.bytes)} + KV ${fmtBytes(kv.bytes)} + activations ${fmtBytes(act)} + ${fmtBytes(OVERHEAD_BYTES)} overhead), over the ${fmtBytes(memoryBytes)} memory budget`;
    }
    formats[f] = { format: f, weightBytes: w.bytes, totalBytes, largestPartBytes: w.largestPartBytes, parts: w.parts, problem };
  }
  const report: Omit<PreflightReport, 'format'> = {
    formats, maxContext, kvPolicy: policy, kvDtype: dtype, kvCapacity: kv.capacity, kvBytes: kv.bytes, kvLayerBytes: kv.layerBytes,
    activationBytes: act, overheadBytes: OVERHEAD_BYTES, memoryBytes, limits, parameters: parameterCount(c),
  };
  const candidates = opts.weights ? [opts.weights] : AUTO_ORDER;
  const fits = candidates.filter((f) => formats[f].problem === null);
  const fit = fits.find((f) => formats[f].weightBytes <= AUTO_MAX_WEIGHT_BYTES) ?? fits[fits.length - 1];
  if (fit) return { ...report, format: fit };
  const params = `${(report.parameters / 1e9).toFixed(2)}B parameters, context ${maxContext}, KV ${policy} ${dtype}`;
  const lines = candidates.map((f) => `  ${f}: ${formats[f].problem}`);
  const hint = opts.weights && opts.weights !== 'q4' && formats.q4.problem === null ? ` (q4 would fit: ${fmtBytes(formats.q4.totalBytes)})` : '';
  throw new PreflightError(
    `the model does not fit this GPU (${params}; maxBufferSize ${fmtBytes(limits.maxBufferSize)}, maxStorageBufferBindingSize ${fmtBytes(limits.maxStorageBufferBindingSize)}, memory budget ${fmtBytes(memoryBytes)}):\n${lines.join('\n')}${hint}`,
    { ...report, format: candidates[candidates.length - 1] },
  );
}
