/**
 * The safetensors format: 8-byte little-endian header length N, N bytes of JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, then the data, with
 * offsets relative to the byte after the header. Single-file (`model.safetensors`) or sharded
 * (`model.safetensors.index.json` with a `weight_map` from tensor name to shard file).
 */
import { bf16ToF32, f16ToF32 } from '../model/dtype';
import { checkModelFileName } from './file-name';
import { ModelLoadError, type ModelSource } from './source';

export type TensorDtype = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  file: string;
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  byteLength: number;
}

export const DTYPE_SIZE: Record<TensorDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** The format's own limit on the header (100 MB). */
const MAX_HEADER = 100_000_000;

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export class SafetensorsError extends ModelLoadError {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

/** Reads the header of one safetensors file and validates every entry against the file size. */
export async function readHeader(src: ModelSource, file: string): Promise<Map<string, TensorInfo>> {
  const where = `${file} (${src.name})`;
  const fileSize = await src.size(file);
  if (fileSize < 8) throw new SafetensorsError(`${where}: ${fileSize} bytes, too short for a safetensors header`);
  const lenBytes = await src.read(file, 0, 8);
  const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const hi = dv.getUint32(4, true), lo = dv.getUint32(0, true);
  const headerLen = hi * 2 ** 32 + lo;
  if (headerLen < 2 || headerLen > MAX_HEADER || 8 + headerLen > fileSize) {
    throw new SafetensorsError(
      `${where}: header length ${headerLen} is not sane (file size ${fileSize}, limit ${MAX_HEADER}); truncated or not a safetensors file`);
  }
  const headerBytes = await src.read(file, 8, headerLen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(`${where}: header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(`${where}: header is not a JSON object`);
  }
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const out = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw new SafetensorsError(`${where}: tensor "${name}": entry is not an object`);
    if (typeof e.dtype !== 'string') throw new SafetensorsError(`${where}: tensor "${name}": missing dtype`);
    if (!(e.dtype in DTYPE_SIZE)) {
      throw new SafetensorsError(`${where}: tensor "${name}" has unsupported dtype ${e.dtype} (supported: F32, F16, BF16)`);
    }
    const dtype = e.dtype as TensorDtype;
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${where}: tensor "${name}": bad shape ${JSON.stringify(shape)}`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[1] < offs[0]) {
      throw new SafetensorsError(`${where}: tensor "${name}": bad data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end > dataSize) {
      throw new SafetensorsError(
        `${where}: tensor "${name}": data_offsets [${begin}, ${end}] run past the end of the file (data section is ${dataSize} bytes)`);
    }
    const expected = shape.reduce((a: number, d: number) => a * d, 1) * DTYPE_SIZE[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(
        `${where}: tensor "${name}": ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${expected}`);
    }
    out.set(name, { name, dtype, shape: shape as number[], file, offset: dataStart + begin, byteLength: end - begin });
  }
  // Two tensors must not share bytes: writing one would change the other, and a crafted header could make every tensor read the same data.
  const spans = [...out.values()].filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < spans.length; i++) {
    const [a, b] = [spans[i - 1], spans[i]];
    if (b.offset < a.offset + a.byteLength) {
      const range = (t: TensorInfo) => `[${t.offset - dataStart}, ${t.offset - dataStart + t.byteLength}]`;
      throw new SafetensorsError(`${where}: tensors "${a.name}" ${range(a)} and "${b.name}" ${range(b)} overlap; each tensor must have its own bytes`);
    }
  }
  return out;
}

/** Every tensor of the checkpoint, from `model.safetensors` or the shards named by the index. */
export async function listTensors(src: ModelSource): Promise<Map<string, TensorInfo>> {
  if (await src.exists(SINGLE_FILE)) return readHeader(src, SINGLE_FILE);
  if (!(await src.exists(INDEX_FILE))) {
    throw new ModelLoadError(`${src.name}: neither ${SINGLE_FILE} nor ${INDEX_FILE} found`);
  }
  let index: unknown;
  try {
    index = JSON.parse(await src.text(INDEX_FILE));
  } catch (e) {
    if (e instanceof ModelLoadError) throw e;
    throw new SafetensorsError(`${INDEX_FILE} (${src.name}): not valid JSON (${(e as Error).message})`);
  }
  const weightMap = (index as { weight_map?: unknown })?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new SafetensorsError(`${INDEX_FILE} (${src.name}): missing "weight_map" object`);
  }
  const wm = weightMap as Record<string, unknown>;
  for (const [name, file] of Object.entries(wm)) checkModelFileName(file, `${INDEX_FILE} (${src.name}), for tensor "${name}",`);
  const shards = [...new Set(Object.values(wm) as string[])].sort();
  const headers = await Promise.all(shards.map((f) => readHeader(src, f)));
  const out = new Map<string, TensorInfo>();
  for (const h of headers) {
    for (const [name, info] of h) {
      const prev = out.get(name);
      if (prev) throw new SafetensorsError(`tensor "${name}" appears in two shards: ${prev.file} and ${info.file}`);
      out.set(name, info);
    }
  }
  for (const [name, file] of Object.entries(wm) as [string, string][]) {
    const info = out.get(name);
    if (!info) throw new SafetensorsError(`${INDEX_FILE} maps tensor "${name}" to ${file}, whose header does not contain it`);
    if (info.file !== file) {
      throw new SafetensorsError(`${INDEX_FILE} maps tensor "${name}" to ${file}, but it is in ${info.file}`);
    }
  }
  return out;
}

/** Raw bytes → f32 values. */
export function toF32(dtype: TensorDtype, bytes: Uint8Array): Float32Array {
  const size = DTYPE_SIZE[dtype];
  if (bytes.byteLength % size !== 0) throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype}`);
  // Typed-array views need an aligned offset; copy when the source slice is not.
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  const n = aligned.byteLength / size;
  if (dtype === 'F32') return new Float32Array(aligned.buffer, aligned.byteOffset, n);
  const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  return dtype === 'F16' ? f16ToF32(u16) : bf16ToF32(u16);
}

export async function readTensorF32(src: ModelSource, info: TensorInfo): Promise<Float32Array> {
  return toF32(info.dtype, await src.read(info.file, info.offset, info.byteLength));
}

/** Rows [rowStart, rowStart + rowCount) of a 2-D tensor as f32, row-major. */
export async function readTensorRows(src: ModelSource, info: TensorInfo, rowStart: number, rowCount: number): Promise<Float32Array> {
  if (info.shape.length !== 2) {
    throw new RangeError(`readTensorRows: tensor "${info.name}" has shape ${JSON.stringify(info.shape)}, not 2-D`);
  }
  const [rows, cols] = info.shape;
  if (!Number.isSafeInteger(rowStart) || !Number.isSafeInteger(rowCount) || rowStart < 0 || rowCount < 0 || rowStart + rowCount > rows) {
    throw new RangeError(`readTensorRows: rows [${rowStart}, ${rowStart + rowCount}) outside tensor "${info.name}" with ${rows} rows`);
  }
  const rowBytes = cols * DTYPE_SIZE[info.dtype];
  return toF32(info.dtype, await src.read(info.file, info.offset + rowStart * rowBytes, rowCount * rowBytes));
}
