/**
 * The converted (pre-quantized) form of a model: the GPU packing of every weight as raw little-endian
 * buffers in shard files of at most 64 MB, described by a manifest, beside config.json and the tokenizer
 * files. A publisher converts once (`dms convert`), users download the small form and the engine
 * uploads it without converting anything. Browser-safe (no Node imports): the CLI gives the file sink.
 *
 * `webdms-manifest.json`:
 * ```
 * { "format": "webdms-converted", "version": 2, "weights": "q4", "architecture": "qwen3",
 *   "source": { "name": "...", "bytes": 1503238144 }, "totalBytes": 441827328,
 *   "shards": [{ "file": "webdms-00000.bin", "bytes": 67108864, "sha256": "<hex>" }, ...],
 *   "matrices": { "embed": { "rows": 151936, "cols": 1024, "format": "q4",
 *       "pieces": [{ "rowStart": 0, "rows": 104857, "shard": 0, "data": 0, "scales": 53686784 }, ...] }, ... },
 *   "vectors": { "layers.0.input_norm": { "length": 1024, "shard": 3, "offset": 1234 }, ... } }
 * ```
 * A matrix's rows are split into pieces, each in one shard: the piece's packed data rows (rowWords x 4
 * bytes each, see MatrixPart in ../model/types.ts) at `data`, then its scale rows (q8/q4) at `scales`. Pieces are
 * independent of the GPU parts: the loader splits rows into parts for the adapter it runs on. Vectors are
 * f32. Keys are those of weightPlan() (worker/load/weights.ts).
 */
import type { Gpu } from '../gpu/context';
import { allocMatrix, DEFAULT_SLICE_BYTES, destroyWeights, keyedWeights, RowStreamer, streamWeights, weightPlan, type MatrixSpec, type ModelWeights, type StreamOptions } from './weights';
import { DMS_METADATA_FILE, readModelConfig } from '../model/config';
import { checkModelFileName } from './file-name';
import { preflight, type PreflightLimits, type PreflightOptions, type PreflightReport } from './preflight';
import { listTensors, readTensorF32, type TensorInfo } from './safetensors';
import { ModelLoadError, type ModelSource } from './source';
import { f16ScaleBits, putScaleBits, rowGroups, rowScaleWords, rowWords } from './pack';
import type { GpuMatrix, ModelConfig, WeightFormat } from '../model/types';

export const MANIFEST_FILE = 'webdms-manifest.json';
export const CONVERTED_FORMAT = 'webdms-converted';
/**
 * The version `dms convert` writes. Version 1 stored q8/q4 scales as f32 (one a word); version 2 as f16, two a
 * word (worker/load/pack.ts, rowScaleWords). Both are read: a version-1 scale row becomes f16 words on the way
 * to the GPU (each scale rounded to f16, as version 2 would store it; the codes stay those of the f32 scale).
 */
export const CONVERTED_VERSION = 2;
const READABLE_VERSIONS = [1, 2];
/** Largest shard file (64 MB: small enough for any static host and the store's chunking). */
export const MAX_SHARD_BYTES = 64 * 1000 * 1000;
/** Files copied beside the weights when they exist. */
export const COPIED_FILES = ['config.json', 'generation_config.json', DMS_METADATA_FILE, 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'chat_template.json'];

export interface ConvertedPiece {
  rowStart: number;
  rows: number;
  shard: number;
  data: number;
  scales: number | null;
}

export interface ConvertedManifest {
  format: typeof CONVERTED_FORMAT;
  version: number;
  weights: WeightFormat;
  architecture: string;
  source: { name: string; bytes: number };
  totalBytes: number;
  shards: { file: string; bytes: number; sha256: string }[];
  matrices: Record<string, { rows: number; cols: number; format: WeightFormat; pieces: ConvertedPiece[] }>;
  vectors: Record<string, { length: number; shard: number; offset: number }>;
}

export class ConvertedError extends ModelLoadError {
  constructor(message: string) {
    super(message);
    this.name = 'ConvertedError';
  }
}

/** The manifest of a converted model, or null when `source` holds a plain checkpoint. */
export async function readConvertedManifest(source: ModelSource): Promise<ConvertedManifest | null> {
  if (!(await source.exists(MANIFEST_FILE))) return null;
  const text = await source.text(MANIFEST_FILE);
  // A single-page app's fallback page (e.g. Vite's dev server answers any path with index.html): no manifest.
  if (/^\s*</.test(text)) return null;
  let m: ConvertedManifest;
  try {
    m = JSON.parse(text) as ConvertedManifest;
  } catch (e) {
    throw new ConvertedError(`${MANIFEST_FILE} (${source.name}) is not valid JSON: ${(e as Error).message}`);
  }
  if (m?.format !== CONVERTED_FORMAT) throw new ConvertedError(`${MANIFEST_FILE} (${source.name}): "format" is ${JSON.stringify(m?.format)}, not "${CONVERTED_FORMAT}"`);
  if (!READABLE_VERSIONS.includes(m.version)) {
    throw new ConvertedError(`${MANIFEST_FILE} (${source.name}) is version ${m.version}; this engine reads versions ${READABLE_VERSIONS.join(' and ')}: convert the model again`);
  }
  if (!['f32', 'f16', 'q8', 'q4'].includes(m.weights)) throw new ConvertedError(`${MANIFEST_FILE}: unknown weight format ${JSON.stringify(m.weights)}`);
  if (!Array.isArray(m.shards) || typeof m.matrices !== 'object' || typeof m.vectors !== 'object') {
    throw new ConvertedError(`${MANIFEST_FILE} (${source.name}): "shards", "matrices" or "vectors" missing`);
  }
  return m;
}

/** Loads a converted model: packed rows go straight into the GPU parts, nothing is converted. */
export async function loadConverted(
  gpu: Gpu,
  source: ModelSource,
  m: ConvertedManifest,
  c: ModelConfig,
  onBytes: (bytes: number, file: string) => void,
  opts: StreamOptions = {},
): Promise<ModelWeights> {
  const where = `${MANIFEST_FILE} (${source.name})`;
  for (const s of m.shards) checkModelFileName(s?.file, `${MANIFEST_FILE} (${source.name})`);
  const sizes = await Promise.all(m.shards.map((s) => source.size(s.file)));
  m.shards.forEach((s, i) => {
    if (sizes[i] !== s.bytes) throw new ConvertedError(`${s.file} (${source.name}) is ${sizes[i]} bytes, the manifest says ${s.bytes}: the upload is incomplete or stale`);
  });
  const shard = (i: number) => {
    const s = m.shards[i];
    if (!s) throw new ConvertedError(`${where}: shard ${i} does not exist`);
    return s;
  };
  const plan = weightPlan(c, m.weights);
  return streamWeights(gpu, c, source, onBytes, opts, async (streamer, matrices, vectors) => {
    for (const v of plan.vectors) {
      const e = m.vectors[v.key];
      if (!e || e.length !== v.length) throw new ConvertedError(`${where}: vector ${v.key} ${e ? `has ${e.length} values, config.json implies ${v.length}` : 'is missing'}`);
      const file = shard(e.shard).file;
      const bytes = await source.read(file, e.offset, 4 * v.length);
      onBytes(bytes.byteLength, file);
      vectors.set(v.key, gpu.upload(v.label, bytes));
    }
    for (const spec of plan.matrices) {
      const e = m.matrices[spec.key];
      if (!e || e.rows !== spec.rows || e.cols !== spec.cols || e.format !== spec.format) {
        throw new ConvertedError(`${where}: matrix ${spec.key} ${e ? `is ${e.rows}x${e.cols} ${e.format}, config.json implies ${spec.rows}x${spec.cols} ${spec.format}` : 'is missing'}`);
      }
      const dst = allocMatrix(gpu, spec.label, spec.rows, spec.cols, spec.format, opts.maxPartBytes);
      matrices.set(spec.key, dst);
      const dataRow = rowWords(spec.cols, spec.format) * 4;
      // Bytes of a stored scale row: f16 pairs (version 2) or f32 (version 1, made f16 pairs as read).
      const groups = rowGroups(spec.cols, spec.format);
      const scaleRow = m.version === 1 ? groups * 4 : rowScaleWords(spec.cols, spec.format) * 4;
      let next = 0;
      for (const p of e.pieces) {
        if (p.rowStart !== next) throw new ConvertedError(`${where}: matrix ${spec.key}: piece at row ${p.rowStart}, expected ${next}`);
        next += p.rows;
        const file = shard(p.shard).file;
        const read = (off: number, rowBytes: number) => async (r0: number, n: number) => {
          const b = await source.read(file, off + r0 * rowBytes, n * rowBytes);
          onBytes(b.byteLength, file);
          return b;
        };
        if (scaleRow && p.scales === null) throw new ConvertedError(`${where}: matrix ${spec.key}: a ${spec.format} piece without scales`);
        const readScales = !scaleRow ? null : m.version === 1
          ? async (r0: number, n: number) => f32ScaleRowsToF16(await read(p.scales!, scaleRow)(r0, n), n, groups)
          : read(p.scales!, scaleRow);
        await streamer.packed(dst, p.rowStart, p.rows, read(p.data, dataRow), readScales);
      }
      if (next !== spec.rows) throw new ConvertedError(`${where}: matrix ${spec.key}: pieces cover ${next} of ${spec.rows} rows`);
    }
  });
}

/** `rows` rows of `groups` f32 scales (version 1) as rows of f16 pairs (rowScaleWords words each), little-endian bytes. */
function f32ScaleRowsToF16(bytes: Uint8Array, rows: number, groups: number): Uint8Array {
  const f32 = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + rows * groups * 4));
  const out = new Uint32Array(rows * Math.ceil(groups / 2));
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) putScaleBits(out, r, g, groups, f16ScaleBits(f32[r * groups + g]));
  }
  return new Uint8Array(out.buffer);
}

/** Where the converter writes: shard files (appended in order) and small files. */
export interface ConvertSink {
  /** Starts shard `file`; bytes are appended with write(). */
  openShard(file: string): Promise<void>;
  write(bytes: Uint8Array): Promise<void>;
  /** Ends the open shard; returns its SHA-256 (hex). */
  closeShard(): Promise<string>;
  writeFile(file: string, bytes: Uint8Array): Promise<void>;
}

export interface ConvertOptions extends StreamOptions {
  shardBytes?: number;
  onProgress?: (done: number, total: number, what: string) => void;
}

/** Writes the converted form into a sink: shards filled in order, pieces and vectors recorded in the manifest. */
class ShardWriter {
  readonly manifest: ConvertedManifest;
  private used = 0;
  private open = false;

  constructor(private readonly sink: ConvertSink, private readonly shardMax: number, format: WeightFormat, architecture: string, source: { name: string; bytes: number }) {
    this.manifest = { format: CONVERTED_FORMAT, version: CONVERTED_VERSION, weights: format, architecture, source, totalBytes: 0, shards: [], matrices: {}, vectors: {} };
  }

  private room(): number {
    return this.shardMax - this.used;
  }

  private async newShard(): Promise<void> {
    if (this.open) await this.closeShard();
    const file = `webdms-${String(this.manifest.shards.length).padStart(5, '0')}.bin`;
    await this.sink.openShard(file);
    this.manifest.shards.push({ file, bytes: 0, sha256: '' });
    this.used = 0;
    this.open = true;
  }

  private async closeShard(): Promise<void> {
    const s = this.manifest.shards[this.manifest.shards.length - 1];
    s.bytes = this.used;
    s.sha256 = await this.sink.closeShard();
    this.manifest.totalBytes += this.used;
    this.open = false;
  }

  private readonly write = async (bytes: Uint8Array): Promise<void> => {
    await this.sink.write(bytes);
    this.used += bytes.byteLength;
  };

  /** An f32 vector (length values). */
  async vector(key: string, values: Uint8Array): Promise<void> {
    if (!this.open || values.byteLength > this.room()) await this.newShard();
    this.manifest.vectors[key] = { length: values.byteLength / 4, shard: this.manifest.shards.length - 1, offset: this.used };
    await this.write(values);
  }

  /** A matrix on the GPU, read back in slices of at most sliceBytes, as pieces that each fit one shard. */
  async matrix(gpu: Gpu, key: string, m: GpuMatrix, sliceBytes: number): Promise<void> {
    const dataRow = rowWords(m.cols, m.format) * 4, scaleRow = rowScaleWords(m.cols, m.format) * 4;
    const pieces: ConvertedPiece[] = [];
    for (let r = 0; r < m.rows; ) {
      let fit = this.open ? Math.floor(this.room() / (dataRow + scaleRow)) : 0;
      if (fit < 1) {
        await this.newShard();
        fit = Math.floor(this.room() / (dataRow + scaleRow));
        if (fit < 1) throw new ConvertedError(`one row of ${key} (${dataRow + scaleRow} bytes) is larger than a shard (${this.shardMax} bytes)`);
      }
      const n = Math.min(fit, m.rows - r);
      const piece: ConvertedPiece = { rowStart: r, rows: n, shard: this.manifest.shards.length - 1, data: this.used, scales: null };
      await readBack(gpu, m, r, n, 'data', dataRow, sliceBytes, this.write);
      if (scaleRow) {
        piece.scales = this.used;
        await readBack(gpu, m, r, n, 'scales', scaleRow, sliceBytes, this.write);
      }
      pieces.push(piece);
      r += n;
    }
    this.manifest.matrices[key] = { rows: m.rows, cols: m.cols, format: m.format, pieces };
  }

  /** Closes the last shard, copies config and tokenizer files from `source`, writes the manifest (last). */
  async finish(source: ModelSource): Promise<ConvertedManifest> {
    if (this.open) await this.closeShard();
    for (const f of COPIED_FILES) {
      if (await source.exists(f)) await this.sink.writeFile(f, new TextEncoder().encode(await source.text(f)));
    }
    await this.sink.writeFile(MANIFEST_FILE, new TextEncoder().encode(JSON.stringify(this.manifest, null, 1) + '\n'));
    return this.manifest;
  }
}

/**
 * Converts the checkpoint in `source` (safetensors) into `format` on the GPU, one matrix at a time
 * (streamed in, packed by shaders/quantize.wgsl, read back in slices), and writes the converted form to
 * `sink`. Returns the manifest (also written).
 */
export async function convertModel(gpu: Gpu, source: ModelSource, c: ModelConfig, format: WeightFormat, sink: ConvertSink, opts: ConvertOptions = {}): Promise<ConvertedManifest> {
  const tensors = await listTensors(source);
  const sourceBytes = [...tensors.values()].reduce((n, t) => n + t.byteLength, 0);
  const info = (name: string): TensorInfo => {
    const t = tensors.get(name);
    if (!t) throw new ConvertedError(`${source.name}: tensor "${name}" is missing from the checkpoint`);
    return t;
  };
  const plan = weightPlan(c, format);
  const out = new ShardWriter(sink, opts.shardBytes ?? MAX_SHARD_BYTES, format, c.architecture, { name: source.name, bytes: sourceBytes });
  let done = 0;
  const total = plan.matrices.length + plan.vectors.length;

  for (const v of plan.vectors) {
    const values = new Float32Array(v.length);
    let o = 0;
    for (const s of v.sources) {
      values.set(await readTensorF32(source, info(s.tensor)), o);
      o += s.length;
    }
    await out.vector(v.key, new Uint8Array(values.buffer));
    opts.onProgress?.(++done, total, v.key);
  }

  const streamer = new RowStreamer(gpu, source, () => {}, opts);
  try {
    for (const spec of plan.matrices) {
      const dst = await streamMatrix(gpu, streamer, spec, info, opts);
      try {
        await out.matrix(gpu, spec.key, dst, streamer.sliceBytes);
      } finally {
        destroyWeights(gpu, [dst], []);
      }
      opts.onProgress?.(++done, total, spec.key);
    }
  } finally {
    await streamer.finish();
  }
  return out.finish(source);
}

/**
 * Writes the converted form of weights already on the GPU (a model loaded from a checkpoint and
 * quantized as it streamed in) to `sink`: the same bytes convertModel would write for that checkpoint.
 * `source` gives the config and tokenizer files to copy; `sourceBytes` is the checkpoint's size.
 */
export async function exportConverted(
  gpu: Gpu, weights: ModelWeights, c: ModelConfig, format: WeightFormat, sink: ConvertSink,
  source: ModelSource, sourceBytes: number, opts: Pick<ConvertOptions, 'shardBytes' | 'sliceBytes' | 'onProgress'> = {},
): Promise<ConvertedManifest> {
  const plan = weightPlan(c, format);
  const { matrices, vectors } = keyedWeights(c, weights);
  const out = new ShardWriter(sink, opts.shardBytes ?? MAX_SHARD_BYTES, format, c.architecture, { name: source.name, bytes: sourceBytes });
  const sliceBytes = opts.sliceBytes ?? DEFAULT_SLICE_BYTES;
  let done = 0;
  const total = plan.matrices.length + plan.vectors.length;
  const get = <T>(map: Map<string, T>, key: string): T => {
    const x = map.get(key);
    if (x === undefined) throw new ConvertedError(`internal: weight ${key} is not on the GPU`);
    return x;
  };
  for (const v of plan.vectors) {
    await out.vector(v.key, new Uint8Array(await gpu.read(get(vectors, v.key), 0, 4 * v.length)));
    opts.onProgress?.(++done, total, v.key);
  }
  for (const spec of plan.matrices) {
    await out.matrix(gpu, spec.key, get(matrices, spec.key), sliceBytes);
    opts.onProgress?.(++done, total, spec.key);
  }
  return out.finish(source);
}

async function streamMatrix(gpu: Gpu, streamer: RowStreamer, spec: MatrixSpec, info: (n: string) => TensorInfo, opts: StreamOptions): Promise<GpuMatrix> {
  const dst = allocMatrix(gpu, `convert:${spec.key}`, spec.rows, spec.cols, spec.format, opts.maxPartBytes);
  let row = 0;
  for (const s of spec.sources) {
    const t = info(s.tensor);
    if (t.shape.length !== 2 || t.shape[0] !== s.rows || t.shape[1] !== spec.cols) {
      throw new ConvertedError(`tensor "${s.tensor}" has shape [${t.shape}], config.json implies [${s.rows},${spec.cols}]`);
    }
    await streamer.tensor(t, dst, row);
    row += s.rows;
  }
  return dst;
}

/** Rows r0..r0+n of a matrix's data or scales, read back from the GPU in slices, in row order. */
async function readBack(gpu: Gpu, m: GpuMatrix, r0: number, n: number, which: 'data' | 'scales', rowBytes: number, sliceBytes: number, write: (b: Uint8Array) => Promise<void>): Promise<void> {
  const per = Math.max(1, Math.floor(sliceBytes / rowBytes));
  for (const part of m.parts) {
    const a0 = Math.max(r0, part.rowStart), b0 = Math.min(r0 + n, part.rowStart + part.rows);
    for (let a = a0; a < b0; a += per) {
      const b = Math.min(b0, a + per);
      const buf = which === 'data' ? part.data : part.scales!;
      await write(new Uint8Array(await gpu.read(buf, (a - part.rowStart) * rowBytes, (b - a) * rowBytes)));
    }
  }
}

/** A ModelSource that counts the bytes read through it (the load's download size). */
export class CountingSource implements ModelSource {
  bytesRead = 0;
  readonly name: string;
  constructor(private readonly inner: ModelSource) {
    this.name = inner.name;
  }
  size(file: string): Promise<number> {
    return this.inner.size(file);
  }
  async read(file: string, offset: number, length: number): Promise<Uint8Array> {
    const b = await this.inner.read(file, offset, length);
    this.bytesRead += b.byteLength;
    return b;
  }
  async text(file: string): Promise<string> {
    const t = await this.inner.text(file);
    this.bytesRead += t.length;
    return t;
  }
  exists(file: string): Promise<boolean> {
    return this.inner.exists(file);
  }
}

/**
 * The pre-flight of a model at `source` from its config.json (with dms_metadata.json when there is one; and converted manifest, which fixes the
 * format) alone, before any weight is read: what a worker calls with an HttpSource on the model's base URL
 * before the weight store downloads anything. Throws PreflightError with the numbers when it cannot fit.
 */
export async function preflightSource(source: ModelSource, limits: PreflightLimits, opts: PreflightOptions = {}): Promise<PreflightReport & { converted: boolean }> {
  // With dms_metadata.json when there is one: a FastDMS checkpoint's DMS settings decide whether --kv dms can run.
  const { config } = await readModelConfig(source, { generation: false });
  const m = await readConvertedManifest(source);
  if (m && opts.weights && opts.weights !== m.weights) throw new ConvertedError(`${source.name} is converted to ${m.weights}; it cannot be loaded as ${opts.weights}`);
  return { ...preflight(config, limits, { ...opts, weights: m?.weights ?? opts.weights }), converted: !!m };
}
