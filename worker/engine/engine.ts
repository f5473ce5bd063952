/**
 * The engine: loads a checkpoint onto the GPU and generates. One conversation (sequence 0) whose KV
 * cache is kept between calls, so a chat turn only prefills what is new.
 */
import type { Gpu } from '../gpu/context';
import { Encoder } from '../gpu/encoder';
import { sample, type SampleOptions } from '../kernels/sample';
import { kvPolicy, type KvCache } from '../kv/cache';
import { SlotKvCache } from '../kv/slot-cache';
import { readModelConfig } from '../model/config';
import { listTensors } from '../load/safetensors';
import { CountingSource, exportConverted, loadConverted, readConvertedManifest, type ConvertedManifest, type ConvertOptions, type ConvertSink } from '../load/converted';
import { parameterCount, preflight } from '../load/preflight';
import type { ModelSource } from '../load/source';
import { ModelTokenizer } from '../model/tokenizer';
import type { GenerationDefaults, KvDtype, KvPolicyName, KvResidency, KvStats, ModelConfig, WeightFormat } from '../model/types';
import type { LoadProgress, ModelInfo, SamplingOptions, Timing } from '../protocol';
import { Forward } from './forward';
import { createRandom } from './random';
import { destroyWeights, keyedWeights, loadWeights, type ModelWeights } from '../load/weights';

export interface EngineOptions {
  weights?: WeightFormat;
  kv?: KvPolicyName;
  kvBudget?: number;
  /** How the KV cache stores K and V: 'f16' (default, half the memory and reads) or 'f32' (exact). */
  kvDtype?: KvDtype;
  /** Most tokens in the conversation (prompt + generated). */
  maxContext?: number;
  /** Rows per prefill step (also the most sequences one step can advance). */
  prefillChunk?: number;
  /** Sequences the KV cache holds at once (parallel chains; see ../hyperscale/chains.ts). Default 1. */
  sequences?: number;
  onProgress?: (p: LoadProgress) => void;
  /** GPU memory budget of the pre-flight (default: defaultMemoryBudget, worker/load/preflight.ts). */
  gpuMemoryBytes?: number;
  /** Largest weight part (default maxStorageBufferBindingSize; tests force small parts). */
  maxPartBytes?: number;
  /** Largest read while streaming weights (default 8 MiB). */
  sliceBytes?: number;
}

/** How the last load went: wall time, bytes read from the source, and whether it was a converted model. */
export interface LoadStats {
  ms: number;
  bytesRead: number;
  fromConverted: boolean;
  /** Bytes of the weights in the source read (the checkpoint's tensors, or the converted shards). */
  sourceBytes: number;
}

export interface GenerateOptions extends SamplingOptions {
  signal?: AbortSignal;
  onToken?: (id: number) => void;
  /** Stop ids; the model's EOS ids by default. */
  stopIds?: number[];
}

export interface GenerateResult {
  ids: number[];
  finishReason: 'stop' | 'length' | 'abort';
  promptTokens: number;
  timing: Timing;
  kv: KvStats;
}

/** What collect() answers when the logits it sampled from are not finite (outside every vocabulary). */
const NON_FINITE = 0xffffffff;

/** A sampled step submitted to the GPU, its id on the way to `readback`. */
interface PendingSample {
  readback: GPUBuffer;
  dispatches: number;
  /** CPU time to record and submit it. */
  recordMs: number;
}

/** CPU time of a generation's decode steps (see Engine.decodeStats). */
export interface DecodeStats {
  steps: number;
  recordMs: number;
  waitMs: number;
}

export class EngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineError';
  }
}

export class Engine {
  /** Ids of the tokens whose K/V are in the cache (sequence 0), in order; their position is the cache's seen[0]. */
  private cached: number[] = [];
  private readonly sampled: GPUBuffer;
  /**
   * The sampled id's way back to the CPU: two, used in turn, so that the next step's copy can be queued while
   * this step's buffer is mapped (see run()).
   */
  private readonly readbacks: [GPUBuffer, GPUBuffer];
  private nextReadback = 0;
  private busy = false;
  /** Set by load(). */
  loadStats: LoadStats | null = null;
  /** Submits of the last sampled step (the early flushes of its encoder and the last one). */
  lastSubmits = 0;
  /**
   * CPU time of the last generation's decode steps (the first sample, after the prompt, not counted): recording
   * and submitting them, and waiting for their ids.
   */
  decodeStats: DecodeStats = { steps: 0, recordMs: 0, waitMs: 0 };
  /**
   * Benchmarks: GPU timestamps of the next steps. 'step': the whole step in one compute pass (queries 0
   * and 1); 'dispatch': each dispatch of a replayed decode step in a pass of its own (queries 2i, 2i + 1).
   */
  gpuTiming: { querySet: GPUQuerySet; mode: 'step' | 'dispatch' } | null = null;

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly generation: GenerationDefaults,
    readonly tokenizer: ModelTokenizer | null,
    readonly info: ModelInfo,
    private readonly weights: ModelWeights,
    private readonly forward: Forward,
    private readonly kv: KvCache,
  ) {
    this.sampled = gpu.buffer('act:sampled', 4 * forward.maxStepTokens);
    const readback = (i: number) => gpu.device.createBuffer({ label: `act:sampled readback ${i}`, size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.readbacks = [readback(0), readback(1)];
  }

  static async load(gpu: Gpu, original: ModelSource, opts: EngineOptions = {}): Promise<Engine> {
    const t0 = performance.now();
    const source = new CountingSource(original);
    const progress = opts.onProgress ?? (() => {});
    const { config, generation } = await readModelConfig(source);
    const tokenizer = (await source.exists('tokenizer.json')) ? await ModelTokenizer.load(source) : null;
    // A converted model (worker/load/converted.ts) fixes the format; the pre-flight checks it fits.
    const converted = await readConvertedManifest(source);
    if (converted && opts.weights && opts.weights !== converted.weights) {
      throw new EngineError(`${source.name} is converted to ${converted.weights}; it cannot be loaded as ${opts.weights}`);
    }
    const limits = { maxBufferSize: gpu.caps.maxBufferSize, maxStorageBufferBindingSize: gpu.caps.maxStorageBufferBindingSize, memoryBytes: opts.gpuMemoryBytes };
    const format = preflight(config, limits, { ...opts, weights: converted?.weights ?? opts.weights }).format;
    const tensors = converted ? null : await listTensors(source);
    const totalBytes = converted ? converted.totalBytes : [...tensors!.values()].reduce((n, t) => n + t.byteLength, 0);
    let loadedBytes = 0;
    const onBytes = (bytes: number, file: string) => {
      loadedBytes += bytes;
      progress({ phase: 'upload', file, loadedBytes, totalBytes });
    };
    const weights = await gpu.guarded(`loading ${source.name}`, () =>
      converted ? loadConverted(gpu, source, converted, config, onBytes, opts) : loadWeights(gpu, source, tensors!, config, format, onBytes, opts),
    );
    let engine: Engine;
    try {
      engine = Engine.assemble(gpu, source.name, config, generation, tokenizer, weights, { ...opts, weights: format });
    } catch (e) {
      const { matrices, vectors } = keyedWeights(config, weights);
      destroyWeights(gpu, matrices.values(), vectors.values());
      throw e;
    }
    progress({ phase: 'compile', loadedBytes, totalBytes });
    progress({ phase: 'ready', loadedBytes, totalBytes });
    engine.loadStats = { ms: performance.now() - t0, bytesRead: source.bytesRead, fromConverted: !!converted, sourceBytes: totalBytes };
    return engine;
  }

  /** An engine over weights already on the GPU (load() and the benchmark's random weights). */
  static assemble(
    gpu: Gpu,
    name: string,
    config: ModelConfig,
    generation: GenerationDefaults,
    tokenizer: ModelTokenizer | null,
    weights: ModelWeights,
    opts: EngineOptions & { weights: WeightFormat },
  ): Engine {
    const maxContext = Math.min(opts.maxContext ?? 4096, config.maxPositionEmbeddings);
    const chunk = Math.min(opts.prefillChunk ?? 64, maxContext);
    const policy = kvPolicy(opts.kv, config.dms);
    if (policy === 'dms' && !config.dms) {
      throw new EngineError(`--kv dms needs a DMS checkpoint (config.json has no dms_window_size); use full, window, tova or h2o`);
    }
    const forward = new Forward(gpu, config, weights, chunk, chunk);
    const kv = new SlotKvCache(
      gpu,
      { numLayers: config.numLayers, numHeads: config.numHeads, numKvHeads: config.numKvHeads, headDim: config.headDim, dms: config.dms },
      { policy, maxTokens: maxContext, budget: opts.kvBudget, maxStepTokens: chunk, sequences: opts.sequences, dtype: opts.kvDtype },
    );
    const info: ModelInfo = {
      name,
      architecture: config.architecture,
      parameters: parameterCount(config),
      weights: opts.weights,
      weightBytes: weights.bytes,
      numLayers: config.numLayers,
      numKvHeads: config.numKvHeads,
      dms: config.dms ? { windowSize: config.dms.windowSize, cr: config.dms.cr, ...(config.dms.convention === 'fastdms' ? { rule: 'fastdms' as const } : {}) } : null,
      adapter: gpu.caps.adapter,
      maxContext,
      kvDtype: kv.dtype,
    };
    return new Engine(gpu, config, generation, tokenizer, info, weights, forward, kv);
  }

  get policy(): KvPolicyName {
    return this.kv.policy;
  }

  /** How the KV cache stores K and V. */
  get kvDtype(): KvDtype {
    return this.kv.dtype;
  }

  /** Rows one forward step can take (the prefill chunk; also the most chains one step can advance). */
  get maxStepTokens(): number {
    return this.forward.maxStepTokens;
  }

  /** Tokens currently in the conversation's cache. */
  get cachedTokens(): readonly number[] {
    return this.cached;
  }

  /** Forgets the conversation. */
  reset(): void {
    this.kv.reset();
    this.cached = [];
  }

  /**
   * Feeds `ids` after the cached tokens in prefill chunks; leaves the logits of the last `logitRows`
   * rows of the final chunk in forward.logits. Returns the dispatches recorded. `ids` null: one token, the id
   * the last sampled step left on the GPU (run() pushes it to `cached` once it is read back).
   */
  private feed(ids: number[] | null, logitRows: number, last?: (enc: Encoder) => void): number {
    const chunk = this.forward.maxStepTokens;
    const count = ids ? ids.length : 1;
    let dispatches = 0;
    for (let i = 0; i < count; i += chunk) {
      const rows = Math.min(chunk, count - i);
      const pos0 = this.kv.seen[0];
      const positions = Array.from({ length: rows }, (_, k) => pos0 + k);
      if (ids) this.forward.setRows(ids.slice(i, i + rows), positions);
      else this.forward.setPositions(positions);
      const t = this.gpuTiming;
      const enc = new Encoder(this.gpu, 'prefill', !t ? { flush: true }
        : t.mode === 'step' ? { timestamps: { querySet: t.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
        : { profile: t.querySet });
      if (!ids) enc.copy(this.sampled, 0, this.forward.ids, 0, 4);
      const isLast = i + rows >= count;
      this.forward.encode(enc, this.kv, [{ seq: 0, row: 0, tokens: rows, pos0 }], rows, isLast ? Math.min(logitRows, rows) : 0);
      if (isLast && last) last(enc);
      dispatches += enc.dispatches;
      enc.submit();
      if (ids) for (let k = 0; k < rows; k++) this.cached.push(ids[i + k]);
    }
    return dispatches;
  }

  /**
   * Feeds `ids` (null: the last sampled id, on the GPU) and samples the next token from the last row's logits
   * in the same submit as the final forward chunk, with a copy of the id to the next readback buffer. Does not
   * wait: collect() reads the id back.
   */
  private submitSample(ids: number[] | null, s: Omit<SampleOptions, 'u'>, u: number): PendingSample {
    const V = this.config.vocabSize;
    const t0 = performance.now();
    const readback = this.readbacks[this.nextReadback];
    this.nextReadback ^= 1;
    const dispatches = this.feed(ids, 1, (enc) => {
      sample(enc, this.forward.logits, 0, V, this.sampled, 0, { ...s, u });
      enc.copy(this.sampled, 0, readback, 0, 4);
      // The row's first logit too: NaN logits can sample a valid-looking id (see checkSampled).
      enc.copy(this.forward.logits, 0, readback, 4, 4);
      this.lastSubmits = enc.submits + 1;
    });
    return { readback, dispatches, recordMs: performance.now() - t0 };
  }

  /** Waits for a submitted sample's id (NON_FINITE when its logits were not finite). */
  private async collect(p: PendingSample): Promise<{ id: number; waitMs: number }> {
    const t0 = performance.now();
    await p.readback.mapAsync(GPUMapMode.READ, 0, 8);
    const mapped = p.readback.getMappedRange(0, 8);
    const id = new Uint32Array(mapped, 0, 1)[0];
    const finite = Number.isFinite(new Float32Array(mapped, 4, 1)[0]);
    p.readback.unmap();
    this.gpu.check();
    return { id: finite ? id : NON_FINITE, waitMs: performance.now() - t0 };
  }

  /**
   * Non-finite logits (NaN or Inf weights, an f16 overflow) make the sampler answer an id outside the
   * vocabulary, or a valid-looking one read from NaNs (collect() then answers NON_FINITE): stop rather
   * than feed it back as a token. `n` counts the reply's tokens from 1.
   */
  private checkSampled(id: number, n: number): void {
    if (id >= this.config.vocabSize) {
      throw new EngineError(`the model produced non-finite logits at token ${n} (NaN or Inf: broken weights, or an f16 overflow); generation stopped`);
    }
  }

  private checkRoom(extra: number): void {
    const max = this.info.maxContext;
    if (this.kv.seen[0] + extra > max) {
      throw new EngineError(`the conversation would reach ${this.kv.seen[0] + extra} tokens, over this engine's context of ${max}; start a new conversation or load with a larger context`);
    }
  }

  /**
   * Teacher-forced logits of every position of `ids` (a fresh sequence), handed to `onRows` a step at a
   * time as f32 [rows][vocab] starting at position `start`. `step` rows per forward step (1 = token by
   * token, as decoding sees the cache; default the prefill chunk).
   */
  async scan(ids: number[], onRows: (logits: Float32Array, start: number, rows: number) => void, step = this.forward.maxStepTokens): Promise<void> {
    this.reset();
    this.checkRoom(ids.length);
    const V = this.config.vocabSize;
    const chunk = Math.max(1, Math.min(step, this.forward.maxStepTokens));
    for (let i = 0; i < ids.length; i += chunk) {
      const part = ids.slice(i, i + chunk);
      this.feed(part, part.length);
      onRows(await this.gpu.readF32(this.forward.logits, part.length * V), i, part.length);
    }
  }

  /** Teacher-forced logits of every position: f32 [ids.length][vocab]. */
  async logits(ids: number[], step?: number): Promise<Float32Array> {
    const V = this.config.vocabSize;
    const out = new Float32Array(ids.length * V);
    await this.scan(ids, (rows, start) => out.set(rows, start * V), step);
    return out;
  }

  async generate(promptIds: number[], opts: GenerateOptions = {}): Promise<GenerateResult> {
    if (this.busy) throw new EngineError('a generation is already running');
    if (promptIds.length === 0) throw new EngineError('the prompt is empty');
    for (const id of promptIds) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) throw new EngineError(`token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
    }
    this.busy = true;
    try {
      return await this.run(promptIds, opts);
    } finally {
      this.busy = false;
    }
  }

  private async run(promptIds: number[], opts: GenerateOptions): Promise<GenerateResult> {
    const g = this.generation;
    const maxTokens = opts.maxTokens ?? 256;
    const temperature = opts.temperature ?? g.temperature ?? 0;
    const topK = opts.topK ?? g.topK ?? 0;
    const topP = opts.topP ?? g.topP ?? 1;
    const random = createRandom(opts.seed ?? 0);
    const stop = new Set(opts.stopIds ?? this.config.eosTokenIds);

    // Continue the cached conversation when the prompt extends it; otherwise start over.
    const prefix = this.cached.length <= promptIds.length && this.cached.every((t, i) => promptIds[i] === t);
    if (!prefix) this.reset();
    const fresh = promptIds.slice(this.cached.length);
    if (fresh.length === 0) {
      // Everything is cached already: re-feed the last token so there are logits to sample from.
      this.reset();
      fresh.push(...promptIds);
    }
    this.checkRoom(fresh.length);
    const out: number[] = [];
    let finishReason: GenerateResult['finishReason'] = 'length';

    const sampling = { temperature, topK, topP };
    const stats: DecodeStats = { steps: 0, recordMs: 0, waitMs: 0 };
    const t0 = performance.now();
    let t1 = 0;
    let cur = this.submitSample(fresh, sampling, random());
    try {
      while (true) {
        // Run ahead: the next step is recorded and submitted, fed from the id still on the GPU, before this one's
        // id is read back, so the GPU does not idle while the id travels back and the CPU records. When this id
        // ends the reply (a stop id, an abort) that step is wasted, but it fed the id: `cached` ends with it.
        const mayFollow = out.length + 1 < maxTokens && this.kv.seen[0] < this.info.maxContext && !opts.signal?.aborted;
        const ahead = mayFollow ? this.submitSample(null, sampling, random()) : null;
        const got = await this.collect(cur);
        if (out.length === 0) {
          t1 = performance.now();
        } else {
          stats.steps++;
          stats.recordMs += cur.recordMs;
          stats.waitMs += got.waitMs;
        }
        this.checkSampled(got.id, out.length + 1);
        if (ahead) this.cached.push(got.id);
        out.push(got.id);
        opts.onToken?.(got.id);
        if (stop.has(got.id)) {
          finishReason = 'stop';
          break;
        }
        if (opts.signal?.aborted) {
          finishReason = 'abort';
          break;
        }
        if (!ahead) break;
        cur = ahead;
      }
    } catch (e) {
      // A step may have fed an id that was never checked (non-finite logits, a lost device): start over next time.
      this.reset();
      throw e;
    }
    this.decodeStats = stats;
    const t2 = performance.now();
    const decoded = Math.max(0, out.length - 1);
    return {
      ids: out,
      finishReason,
      promptTokens: promptIds.length,
      timing: { prefillMs: t1 - t0, decodeMs: t2 - t1, decodeTokensPerSecond: decoded > 0 ? (decoded * 1000) / (t2 - t1) : 0 },
      kv: await this.kv.stats(),
    };
  }

  /** Benchmarks: pretends `tokens` tokens were seen, a `keptFraction` of the older ones resident. */
  prime(tokens: number, keptFraction = 1): void {
    this.reset();
    this.kv.prime(0, tokens, keptFraction);
    this.cached = new Array<number>(tokens).fill(0);
  }

  /** Benchmarks: one forward step over `ids` after the cache, then a greedy sample; returns the dispatches recorded. */
  async step(ids: number[]): Promise<{ id: number; dispatches: number }> {
    this.checkRoom(ids.length);
    const p = this.submitSample(ids, { temperature: 0, topK: 0, topP: 1 }, 0);
    return { id: (await this.collect(p)).id, dispatches: p.dispatches };
  }

  /** Benchmarks: the pipeline label of each dispatch of the decode step step([id]) replays next (null before one was recorded). */
  decodeLabels(): string[] | null {
    const seg = { seq: 0, row: 0, tokens: 1, pos0: this.kv.seen[0] };
    return this.forward.plan(this.kv, [seg], 1)?.labels() ?? null;
  }

  /**
   * Parallel sequences (../hyperscale/chains.ts): one forward step in which each entry's ids continue sequence
   * `seq` where it stopped (the cache's seen[seq]); keeps the logits of every row (rows in entry order).
   */
  stepSequences(entries: { seq: number; ids: number[] }[], logitRows?: number): void {
    const rows = entries.reduce((n, e) => n + e.ids.length, 0);
    const ids: number[] = [], positions: number[] = [];
    const segments = entries.map((e) => {
      const seg = { seq: e.seq, row: ids.length, tokens: e.ids.length, pos0: this.kv.seen[e.seq] };
      e.ids.forEach((id, k) => (ids.push(id), positions.push(seg.pos0 + k)));
      return seg;
    });
    this.forward.setRows(ids, positions);
    const enc = new Encoder(this.gpu, 'step');
    // logitRows < rows keeps only the last rows' logits (a prefill chunk, as generate() does).
    this.forward.encode(enc, this.kv, segments, rows, Math.min(rows, logitRows ?? rows));
    enc.submit();
  }

  /** Reads back the first `rows` logits rows of the last step: f32 [rows][vocab] (chain scoring). */
  readLogits(rows: number): Promise<Float32Array> {
    return this.gpu.readF32(this.forward.logits, rows * this.config.vocabSize);
  }

  /** Samples each of the first `rows` logits rows (u[r] is row r's uniform draw); reads back the ids. */
  async sampleRows(rows: number, o: { temperature: number; topK: number; topP: number }, u: number[], from?: number[]): Promise<number[]> {
    const V = this.config.vocabSize;
    const enc = new Encoder(this.gpu, 'sample rows');
    // from[r]: the logits row that output r samples (several draws from one row: the first token of forked chains).
    for (let r = 0; r < rows; r++) sample(enc, this.forward.logits, (from?.[r] ?? r) * V, V, this.sampled, r, { ...o, u: u[r] });
    enc.submit();
    return Array.from(await this.gpu.readU32(this.sampled, rows));
  }

  /** Copies sequence `src`'s cache into each of `dsts` (parallel chains from one prompt). */
  forkSequence(src: number, dsts: number[]): void {
    this.kv.fork(src, dsts);
  }

  /** Which positions of the conversation are resident per (layer, KV head). */
  kvResidency(): Promise<KvResidency> {
    return this.kv.residency(0);
  }

  kvStats(): Promise<KvStats> {
    return this.kv.stats();
  }

  /**
   * Writes the weights as they are on the GPU in the converted form (worker/load/converted.ts) to
   * `sink`, with config and tokenizer files copied from `source`: how a checkpoint quantized while it
   * streamed in is kept, so the next start reads only the quantized bytes.
   */
  exportConverted(sink: ConvertSink, source: ModelSource, opts: Pick<ConvertOptions, 'shardBytes' | 'sliceBytes' | 'onProgress'> = {}): Promise<ConvertedManifest> {
    return this.gpu.guarded(`saving ${this.info.name}`, () =>
      exportConverted(this.gpu, this.weights, this.config, this.info.weights, sink, source, this.loadStats?.sourceBytes ?? 0, opts),
    );
  }

  /** Frees the cache and activations but not the weights (the benchmark reuses them). */
  release(): void {
    this.kv.destroy();
    this.forward.destroy();
    this.gpu.destroy(this.sampled);
    for (const b of this.readbacks) b.destroy();
  }

  destroy(): void {
    this.release();
    const { matrices, vectors } = keyedWeights(this.config, this.weights);
    destroyWeights(this.gpu, matrices.values(), vectors.values());
  }
}

