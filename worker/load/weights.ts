/**
 * Reads a Hugging Face checkpoint's tensors from a ModelSource and puts them on the GPU in the chosen
 * weight format. q/k/v are concatenated into one matrix and gate/up into another, so a layer needs
 * two projections fewer per token.
 *
 * The big tensors are streamed: rows are read in slices of at most `sliceBytes` (raw f32/f16/bf16 bytes,
 * never a whole tensor or shard), written into a small staging buffer, and converted/quantized on the
 * GPU by shaders/quantize.wgsl straight into the GpuMatrix parts (bit-identical to packRows on the CPU).
 * Concatenated matrices are filled by writing each source tensor's rows at its row offset. Norms and
 * biases (small) are read whole.
 *
 * `weightPlan()` describes the model's GPU buffers once; the safetensors loader here, the converted
 * loader and the converter (worker/load/converted.ts) all walk it.
 */
import type { Gpu } from '../gpu/context';
import { Encoder } from '../gpu/encoder';
import { quantizeRows } from '../kernels/quantize';
import { DTYPE_SIZE, readTensorF32, type TensorInfo } from './safetensors';
import type { ModelSource } from './source';
import { matrixBytes, matrixParts, rowScaleWords, rowWords, uploadMatrix } from './pack';
import type { GpuMatrix, MatrixPart, ModelConfig, WeightFormat } from '../model/types';

export interface LayerWeights {
  inputNorm: GPUBuffer;
  qkv: GpuMatrix;
  qkvBias: GPUBuffer | null;
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  o: GpuMatrix;
  postNorm: GPUBuffer;
  gateUp: GpuMatrix;
  down: GpuMatrix;
  /** DMS adapter variant (dms_separate_alpha): alpha = proj(rmsnorm(layer input, norm)). */
  dmsAlpha: { norm: GPUBuffer; proj: GpuMatrix } | null;
}

export interface ModelWeights {
  embed: GpuMatrix;
  layers: LayerWeights[];
  finalNorm: GPUBuffer;
  /** The same object as `embed` when the embeddings are tied. */
  lmHead: GpuMatrix;
  bytes: number;
}

export class WeightError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightError';
  }
}

/** GPU bytes of the whole model in `format` (norms and biases stay f32). */
export function modelWeightBytes(c: ModelConfig, format: WeightFormat): number {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
  const qkvRows = (c.numHeads + 2 * c.numKvHeads) * d;
  let perLayer =
    matrixBytes(qkvRows, H, format) + matrixBytes(H, c.numHeads * d, format) + matrixBytes(2 * F, H, format) + matrixBytes(H, F, format);
  perLayer += 4 * (2 * H + (c.qkNorm ? 2 * d : 0) + (c.attentionBias ? qkvRows : 0));
  const embed = matrixBytes(c.vocabSize, H, format);
  return c.numLayers * perLayer + embed * (c.tieWordEmbeddings ? 1 : 2) + 4 * H;
}

/** A GPU matrix of the model: its key (e.g. `layers.3.qkv`), shape, format and the checkpoint tensors stacked into it. */
export interface MatrixSpec {
  key: string;
  label: string;
  rows: number;
  cols: number;
  format: WeightFormat;
  /** Checkpoint tensors in row order, each [rows, cols]. */
  sources: { tensor: string; rows: number }[];
}

/** An f32 vector of the model (norms, biases), concatenated from checkpoint tensors. */
export interface VectorSpec {
  key: string;
  label: string;
  length: number;
  sources: { tensor: string; length: number }[];
}

/** Every GPU buffer of the model in load order. */
export function weightPlan(c: ModelConfig, format: WeightFormat): { matrices: MatrixSpec[]; vectors: VectorSpec[] } {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize, Hq = c.numHeads, Hkv = c.numKvHeads;
  const matrices: MatrixSpec[] = [];
  const vectors: VectorSpec[] = [];
  const mat = (key: string, rows: number, cols: number, sources: { tensor: string; rows: number }[], f = format) =>
    matrices.push({ key, label: `w:${key.replace(/^layers\./, '')}`, rows, cols, format: f, sources });
  const vec = (key: string, sources: { tensor: string; length: number }[]) =>
    vectors.push({ key, label: `w:${key.replace(/^layers\./, '')}`, length: sources.reduce((n, s) => n + s.length, 0), sources });
  mat('embed', c.vocabSize, H, [{ tensor: 'model.embed_tokens.weight', rows: c.vocabSize }]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const k = `layers.${l}.`;
    mat(`${k}qkv`, (Hq + 2 * Hkv) * d, H, [
      { tensor: `${p}self_attn.q_proj.weight`, rows: Hq * d },
      { tensor: `${p}self_attn.k_proj.weight`, rows: Hkv * d },
      { tensor: `${p}self_attn.v_proj.weight`, rows: Hkv * d },
    ]);
    if (c.attentionBias) {
      vec(`${k}qkv_bias`, [
        { tensor: `${p}self_attn.q_proj.bias`, length: Hq * d },
        { tensor: `${p}self_attn.k_proj.bias`, length: Hkv * d },
        { tensor: `${p}self_attn.v_proj.bias`, length: Hkv * d },
      ]);
    }
    if (c.dms?.separateAlpha) {
      vec(`${k}dms_alpha_norm`, [{ tensor: `${p}self_attn.dms_proj_alpha_norm.weight`, length: H }]);
      mat(`${k}dms_alpha`, Hkv, H, [{ tensor: `${p}self_attn.dms_proj_alpha.weight`, rows: Hkv }], 'f32');
    }
    vec(`${k}input_norm`, [{ tensor: `${p}input_layernorm.weight`, length: H }]);
    if (c.qkNorm) {
      vec(`${k}q_norm`, [{ tensor: `${p}self_attn.q_norm.weight`, length: d }]);
      vec(`${k}k_norm`, [{ tensor: `${p}self_attn.k_norm.weight`, length: d }]);
    }
    mat(`${k}o`, H, Hq * d, [{ tensor: `${p}self_attn.o_proj.weight`, rows: H }]);
    vec(`${k}post_norm`, [{ tensor: `${p}post_attention_layernorm.weight`, length: H }]);
    mat(`${k}gate_up`, 2 * F, H, [
      { tensor: `${p}mlp.gate_proj.weight`, rows: F },
      { tensor: `${p}mlp.up_proj.weight`, rows: F },
    ]);
    mat(`${k}down`, H, F, [{ tensor: `${p}mlp.down_proj.weight`, rows: H }]);
  }
  vec('final_norm', [{ tensor: 'model.norm.weight', length: H }]);
  if (!c.tieWordEmbeddings) mat('lm_head', c.vocabSize, H, [{ tensor: 'lm_head.weight', rows: c.vocabSize }]);
  return { matrices, vectors };
}

/** ModelWeights from the plan's buffers by key. */
export function assembleWeights(gpu: Gpu, c: ModelConfig, m: Map<string, GpuMatrix>, v: Map<string, GPUBuffer>, before: number): ModelWeights {
  const M = (k: string) => m.get(k) ?? missing(k);
  const V = (k: string) => v.get(k) ?? missing(k);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const k = `layers.${l}.`;
    layers.push({
      inputNorm: V(`${k}input_norm`),
      qkv: M(`${k}qkv`),
      qkvBias: c.attentionBias ? V(`${k}qkv_bias`) : null,
      qNorm: c.qkNorm ? V(`${k}q_norm`) : null,
      kNorm: c.qkNorm ? V(`${k}k_norm`) : null,
      o: M(`${k}o`),
      postNorm: V(`${k}post_norm`),
      gateUp: M(`${k}gate_up`),
      down: M(`${k}down`),
      dmsAlpha: c.dms?.separateAlpha ? { norm: V(`${k}dms_alpha_norm`), proj: M(`${k}dms_alpha`) } : null,
    });
  }
  const embed = M('embed');
  return { embed, layers, finalNorm: V('final_norm'), lmHead: c.tieWordEmbeddings ? embed : M('lm_head'), bytes: gpu.bytes('w:') - before };
}

/** The inverse of assembleWeights: every GPU matrix and vector of `w` under its weightPlan key. */
export function keyedWeights(c: ModelConfig, w: ModelWeights): { matrices: Map<string, GpuMatrix>; vectors: Map<string, GPUBuffer> } {
  const matrices = new Map<string, GpuMatrix>([['embed', w.embed]]);
  const vectors = new Map<string, GPUBuffer>([['final_norm', w.finalNorm]]);
  if (!c.tieWordEmbeddings) matrices.set('lm_head', w.lmHead);
  w.layers.forEach((L, l) => {
    const k = `layers.${l}.`;
    matrices.set(`${k}qkv`, L.qkv).set(`${k}o`, L.o).set(`${k}gate_up`, L.gateUp).set(`${k}down`, L.down);
    vectors.set(`${k}input_norm`, L.inputNorm).set(`${k}post_norm`, L.postNorm);
    if (L.qkvBias) vectors.set(`${k}qkv_bias`, L.qkvBias);
    if (L.qNorm) vectors.set(`${k}q_norm`, L.qNorm);
    if (L.kNorm) vectors.set(`${k}k_norm`, L.kNorm);
    if (L.dmsAlpha) {
      vectors.set(`${k}dms_alpha_norm`, L.dmsAlpha.norm);
      matrices.set(`${k}dms_alpha`, L.dmsAlpha.proj);
    }
  });
  return { matrices, vectors };
}

/** Frees GPU weights (each matrix once: a tied lm_head is the embedding). */
export function destroyWeights(gpu: Gpu, matrices: Iterable<GpuMatrix>, vectors: Iterable<GPUBuffer>): void {
  for (const m of new Set(matrices)) {
    for (const p of m.parts) {
      gpu.destroy(p.data);
      if (p.scales) gpu.destroy(p.scales);
    }
  }
  for (const v of vectors) gpu.destroy(v);
}

function missing(key: string): never {
  throw new WeightError(`internal: weight ${key} was not loaded`);
}

/** An all-zero GpuMatrix with the parts matrixParts gives (filled by streamRows / writePackedRows). */
export function allocMatrix(gpu: Gpu, label: string, rows: number, cols: number, format: WeightFormat, maxPartBytes = gpu.caps.maxStorageBufferBindingSize): GpuMatrix {
  const sc = rowScaleWords(cols, format);
  const parts: MatrixPart[] = matrixParts(gpu, label, rows, cols, format, maxPartBytes).map(({ rowStart, rows: n }, i) => ({
    rowStart,
    rows: n,
    data: gpu.buffer(`${label} part ${i}`, n * rowWords(cols, format) * 4),
    scales: sc ? gpu.buffer(`${label} scales ${i}`, n * sc * 4) : null,
  }));
  return { label, format, rows, cols, parts };
}

export interface StreamOptions {
  /** Largest raw read and staging upload (default 8 MiB). */
  sliceBytes?: number;
  /** Largest weight part (default the adapter's maxStorageBufferBindingSize). */
  maxPartBytes?: number;
}

export const DEFAULT_SLICE_BYTES = 8 * 1024 * 1024;
/** Uploads in flight before waiting for the GPU (bounds Dawn's own staging memory). */
const IN_FLIGHT_BYTES = 64 * 1024 * 1024;

/**
 * Streams checkpoint rows to the GPU through one staging buffer. Slices are read one ahead of the
 * conversion, so at most two raw slices are in JS memory at a time.
 */
export class RowStreamer {
  private staging: GPUBuffer | null = null;
  private inFlight = 0;
  readonly sliceBytes: number;

  constructor(
    private readonly gpu: Gpu,
    private readonly source: ModelSource,
    private readonly onBytes: (bytes: number, file: string) => void,
    opts: StreamOptions = {},
  ) {
    this.sliceBytes = Math.max(16, Math.min(opts.sliceBytes ?? DEFAULT_SLICE_BYTES, gpu.caps.maxStorageBufferBindingSize));
  }

  private stagingBuffer(): GPUBuffer {
    this.staging ??= this.gpu.buffer('load:staging', this.sliceBytes);
    return this.staging;
  }

  /** Waits for the GPU when too much has been queued. */
  private async throttle(bytes: number): Promise<void> {
    this.inFlight += bytes;
    if (this.inFlight >= IN_FLIGHT_BYTES) {
      await this.gpu.device.queue.onSubmittedWorkDone();
      this.inFlight = 0;
    }
  }

  /**
   * Rows of a [rows, cols] checkpoint tensor into rows dstRow.. of `dst`, converted to dst.format on the GPU.
   */
  async tensor(info: TensorInfo, dst: GpuMatrix, dstRow: number): Promise<void> {
    const [rows, cols] = info.shape;
    const rowBytes = cols * DTYPE_SIZE[info.dtype];
    if (rowBytes > this.sliceBytes) {
      throw new WeightError(`${info.name}: one row (${rowBytes} bytes) is larger than the ${this.sliceBytes}-byte staging buffer`);
    }
    const per = Math.floor(this.sliceBytes / rowBytes);
    const read = (r0: number) => this.source.read(info.file, info.offset + r0 * rowBytes, Math.min(per, rows - r0) * rowBytes);
    let next = rows > 0 ? read(0) : null;
    try {
      for (let r0 = 0; r0 < rows; r0 += per) {
        const n = Math.min(per, rows - r0);
        const bytes = await next!;
        next = r0 + per < rows ? read(r0 + per) : null;
        const staging = this.stagingBuffer();
        this.gpu.write(staging, bytes);
        const enc = new Encoder(this.gpu, `load ${info.name}`);
        this.convert(enc, staging, info.dtype, 0, n, cols, dst, dstRow + r0);
        enc.submit();
        this.onBytes(bytes.byteLength, info.file);
        await this.throttle(bytes.byteLength);
      }
    } finally {
      next?.catch(() => {}); // a read started ahead of an error is not awaited
    }
  }

  /** Converts `rows` rows starting at element srcBase of `src` into rows dstRow.. of `dst`, part by part. */
  convert(enc: Encoder, src: GPUBuffer, dtype: TensorInfo['dtype'], srcBase: number, rows: number, cols: number, dst: GpuMatrix, dstRow: number): void {
    for (const part of dst.parts) {
      const a = Math.max(dstRow, part.rowStart), b = Math.min(dstRow + rows, part.rowStart + part.rows);
      if (a >= b) continue;
      quantizeRows(enc, src, dtype, srcBase + (a - dstRow) * cols, b - a, cols, dst.format, part.data, part.scales, a - part.rowStart);
    }
  }

  /**
   * Already packed rows (data words, then scales, of rows dstRow..dstRow+rows, as the converted form
   * stores them) written into the parts of `dst`.
   */
  async packed(dst: GpuMatrix, dstRow: number, rows: number, readData: (r0: number, n: number) => Promise<Uint8Array>, readScales: ((r0: number, n: number) => Promise<Uint8Array>) | null): Promise<void> {
    const dataRow = rowWords(dst.cols, dst.format) * 4;
    const scaleRow = rowScaleWords(dst.cols, dst.format) * 4;
    const per = Math.max(1, Math.floor(this.sliceBytes / Math.max(dataRow, scaleRow)));
    for (let r0 = 0; r0 < rows; r0 += per) {
      const n = Math.min(per, rows - r0);
      const data = await readData(r0, n);
      const scales = readScales ? await readScales(r0, n) : null;
      for (const part of dst.parts) {
        const a = Math.max(dstRow + r0, part.rowStart), b = Math.min(dstRow + r0 + n, part.rowStart + part.rows);
        if (a >= b) continue;
        const from = a - (dstRow + r0);
        this.gpu.write(part.data, data.subarray(from * dataRow, (b - (dstRow + r0)) * dataRow), (a - part.rowStart) * dataRow);
        if (scales && part.scales) this.gpu.write(part.scales, scales.subarray(from * scaleRow, (b - (dstRow + r0)) * scaleRow), (a - part.rowStart) * scaleRow);
      }
      await this.throttle(data.byteLength + (scales?.byteLength ?? 0));
    }
  }

  /** Waits for the queued uploads and frees the staging buffer. */
  async finish(): Promise<void> {
    await this.gpu.device.queue.onSubmittedWorkDone();
    if (this.staging) this.gpu.destroy(this.staging);
    this.staging = null;
  }
}

/**
 * Loads a safetensors checkpoint (the tensors from listTensors) onto the GPU in `format`, streaming the
 * matrices through the GPU quantizer.
 */
export async function loadWeights(
  gpu: Gpu,
  source: ModelSource,
  tensors: Map<string, TensorInfo>,
  c: ModelConfig,
  format: WeightFormat,
  onBytes: (bytes: number, file: string) => void,
  opts: StreamOptions = {},
): Promise<ModelWeights> {
  const info = (name: string, shape: number[]): TensorInfo => {
    const t = tensors.get(name);
    if (!t) throw new WeightError(`${source.name}: tensor "${name}" is missing from the checkpoint`);
    if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i])) {
      throw new WeightError(`${source.name}: tensor "${name}" has shape [${t.shape}], config.json implies [${shape}]`);
    }
    return t;
  };
  const plan = weightPlan(c, format);
  // Shapes first: a wrong checkpoint fails before anything is read.
  for (const m of plan.matrices) for (const s of m.sources) info(s.tensor, [s.rows, m.cols]);
  for (const v of plan.vectors) for (const s of v.sources) info(s.tensor, [s.length]);

  return streamWeights(gpu, c, source, onBytes, opts, async (streamer, matrices, vectors) => {
    for (const v of plan.vectors) {
      const out = new Float32Array(v.length);
      let o = 0;
      for (const s of v.sources) {
        const t = info(s.tensor, [s.length]);
        out.set(await readTensorF32(source, t), o);
        onBytes(t.byteLength, t.file);
        o += s.length;
      }
      vectors.set(v.key, gpu.upload(v.label, out));
    }
    for (const m of plan.matrices) {
      if (m.format === 'f32' && m.rows * m.cols * 4 <= streamer.sliceBytes) {
        // Small f32 matrices (the DMS alpha projection): read whole, packed on the CPU.
        const data = new Float32Array(m.rows * m.cols);
        let r = 0;
        for (const s of m.sources) {
          const t = info(s.tensor, [s.rows, m.cols]);
          data.set(await readTensorF32(source, t), r * m.cols);
          onBytes(t.byteLength, t.file);
          r += s.rows;
        }
        matrices.set(m.key, uploadMatrix(gpu, m.label, data, m.rows, m.cols, 'f32', opts.maxPartBytes));
        continue;
      }
      const dst = allocMatrix(gpu, m.label, m.rows, m.cols, m.format, opts.maxPartBytes);
      matrices.set(m.key, dst);
      let row = 0;
      for (const s of m.sources) {
        await streamer.tensor(info(s.tensor, [s.rows, m.cols]), dst, row);
        row += s.rows;
      }
    }
  });
}

/**
 * The frame both loaders (this file's and the converted one) fill: the maps of GPU matrices and
 * vectors by weightPlan key, a RowStreamer, and on failure or cancel every buffer allocated so far
 * destroyed, so a load that did not finish gives its GPU memory back.
 */
export async function streamWeights(
  gpu: Gpu, c: ModelConfig, source: ModelSource, onBytes: (bytes: number, file: string) => void, opts: StreamOptions,
  fill: (streamer: RowStreamer, matrices: Map<string, GpuMatrix>, vectors: Map<string, GPUBuffer>) => Promise<void>,
): Promise<ModelWeights> {
  const before = gpu.bytes('w:');
  const matrices = new Map<string, GpuMatrix>();
  const vectors = new Map<string, GPUBuffer>();
  const streamer = new RowStreamer(gpu, source, onBytes, opts);
  try {
    await fill(streamer, matrices, vectors);
  } catch (e) {
    destroyWeights(gpu, matrices.values(), vectors.values());
    throw e;
  } finally {
    await streamer.finish();
  }
  return assembleWeights(gpu, c, matrices, vectors, before);
}
