/**
 * CPU packing and quantization of weight matrices into the GPU layouts described on `MatrixPart`
 * (../model/types.ts), and their upload as row-split `GpuMatrix`es.
 */
import type { Gpu } from '../gpu/context';
import { GpuError } from '../gpu/context';
import { f16BitsToF32, f32ToF16Bits } from '../model/dtype';
import type { GpuMatrix, MatrixPart, WeightFormat } from '../model/types';

// The scalar conversions live in ../model/dtype (shared with the loader); re-exported for the packing API.
export { f16BitsToF32, f32ToF16Bits } from '../model/dtype';

/** Quantization group along cols for q8 and q4. */
export const QUANT_GROUP = 32;

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** bfloat16 bits (low 16 bits of `b`) to a number. */
export function bf16BitsToF32(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16;
  return f32Scratch[0];
}

/** Logical cols rounded up to the quantization group (q8/q4), or cols itself. */
export function paddedCols(cols: number, format: WeightFormat): number {
  return format === 'q8' || format === 'q4' ? Math.ceil(cols / QUANT_GROUP) * QUANT_GROUP : cols;
}

/** 32-bit words (f32 elements for f32) of one packed row. */
export function rowWords(cols: number, format: WeightFormat): number {
  switch (format) {
    case 'f32': return cols;
    case 'f16': return Math.ceil(cols / 2);
    case 'q8': return paddedCols(cols, format) / 4;
    case 'q4': return paddedCols(cols, format) / 8;
  }
}

/** Quantization groups (one scale each) of one row (q8/q4), else 0. */
export function rowGroups(cols: number, format: WeightFormat): number {
  return format === 'q8' || format === 'q4' ? paddedCols(cols, format) / QUANT_GROUP : 0;
}

/**
 * 32-bit words of one row's scales (q8/q4), else 0: two f16 scales a word, group g in the low half of
 * word g/2 when g is even; a row with an odd number of groups ends in a zero half, so that every row
 * starts on a word (rows are written and read back by whole words).
 */
export function rowScaleWords(cols: number, format: WeightFormat): number {
  return Math.ceil(rowGroups(cols, format) / 2);
}

/** Exact packed bytes (data + scales) of a rows x cols matrix, before the 16-byte rounding of each GPU buffer. */
export function matrixBytes(rows: number, cols: number, format: WeightFormat): number {
  return rows * (rowWords(cols, format) + rowScaleWords(cols, format)) * 4;
}

/** The largest finite f16, the scale of a group whose maxabs / qmax would overflow f16. */
const F16_MAX_BITS = 0x7bff;

/** A scale's f16 bits: the nearest f16, a finite scale past f16's range saturating at 65504, inf and NaN kept. */
export function f16ScaleBits(scale: number): number {
  const h = f32ToF16Bits(scale);
  return Number.isFinite(scale) && (h & 0x7c00) === 0x7c00 ? F16_MAX_BITS : h;
}

/**
 * The f16 bits of a group's scale: maxabs / qmax rounded to f32 (Math.fround, as the GPU's quantizer
 * divides), then to f16 (f16ScaleBits). A scale past f16's range saturates (its codes then saturate at ±qmax).
 */
export function groupScaleBits(maxabs: number, qmax: number): number {
  return f16ScaleBits(Math.fround(maxabs / qmax));
}

/** Scale of group g of row r (f16 bits unpacked) from packed scale words of `groups` groups a row (weight_scales.wgsl's twin). */
export function scaleAt(scales: Uint32Array, r: number, g: number, groups: number): number {
  const word = scales[r * Math.ceil(groups / 2) + (g >> 1)];
  return f16BitsToF32(g & 1 ? word >>> 16 : word & 0xffff);
}

/** Stores the f16 `bits` of group g of row r into packed scale words of `groups` groups a row (zeroed before). */
export function putScaleBits(scales: Uint32Array, r: number, g: number, groups: number, bits: number): void {
  scales[r * Math.ceil(groups / 2) + (g >> 1)] |= bits << (g & 1 ? 16 : 0);
}

/**
 * Packs `rows` rows of `cols` f32 values (row-major) into `format`. For f32 the data is a view of `src`
 * (no copy). q8: scale = f16(maxabs/127), q = round(w/scale) in -127..127; q4: scale = f16(maxabs/7),
 * q = clamp(round(w/scale) + 8, 0, 15); groups of 32 along cols, zero-padded; an all-zero group has scale 0.
 * The codes are rounded against the f16 scale, the one the kernels multiply by (groupScaleBits).
 */
export function packRows(src: Float32Array, rows: number, cols: number, format: WeightFormat): { data: Uint32Array | Float32Array; scales: Uint32Array | null } {
  if (src.length < rows * cols) throw new Error(`packRows: ${src.length} values for ${rows}x${cols}`);
  if (format === 'f32') return { data: src.subarray(0, rows * cols), scales: null };
  const words = rowWords(cols, format);
  const data = new Uint32Array(rows * words);
  if (format === 'f16') {
    for (let r = 0; r < rows; r++) {
      const s = r * cols, d = r * words;
      for (let c = 0; c < cols; c += 2) {
        const lo = f32ToF16Bits(src[s + c]);
        const hi = c + 1 < cols ? f32ToF16Bits(src[s + c + 1]) : 0;
        data[d + (c >> 1)] = (lo | (hi << 16)) >>> 0;
      }
    }
    return { data, scales: null };
  }
  const q8 = format === 'q8';
  const qmax = q8 ? 127 : 7;
  const groups = rowGroups(cols, format);
  const scales = new Uint32Array(rows * rowScaleWords(cols, format));
  const groupScale = new Float32Array(groups);
  for (let r = 0; r < rows; r++) {
    const s = r * cols;
    for (let g = 0; g < groups; g++) {
      const c0 = g * QUANT_GROUP, c1 = Math.min(cols, c0 + QUANT_GROUP);
      let maxabs = 0;
      for (let c = c0; c < c1; c++) maxabs = Math.max(maxabs, Math.abs(src[s + c]));
      const bits = groupScaleBits(maxabs, qmax);
      putScaleBits(scales, r, g, groups, bits);
      const scale = (groupScale[g] = f16BitsToF32(bits));
      if (scale === 0 || !Number.isFinite(scale)) continue; // zero group: all codes 0 (q4: stored as 8 below)
      for (let c = c0; c < c1; c++) {
        const v = src[s + c] / scale;
        const q = Math.max(-qmax, Math.min(qmax, Math.sign(v) * Math.round(Math.abs(v))));
        if (q8) data[r * words + (c >> 2)] |= (q & 0xff) << ((c & 3) * 8);
        else data[r * words + (c >> 3)] |= (q + 8) << ((c & 7) * 4);
      }
    }
    if (!q8) {
      // Codes of zero-scale groups and of the padding: 8, i.e. w = 0 (the value is irrelevant when
      // scale is 0, but 8 keeps every element's dequantized value exactly 0 whatever the scale).
      for (let g = 0; g < groups; g++) {
        const sc = groupScale[g];
        const c0 = g * QUANT_GROUP;
        for (let c = c0; c < c0 + QUANT_GROUP; c++) {
          if (c >= cols || sc === 0 || !Number.isFinite(sc)) data[r * words + (c >> 3)] |= 8 << ((c & 7) * 4);
        }
      }
    }
  }
  return { data, scales };
}

/**
 * How a rows x cols matrix in `format` is split along rows so that each part's data and scales fit
 * `maxPartBytes` (after the 16-byte rounding of buffers).
 */
export function matrixParts(gpu: Gpu, label: string, rows: number, cols: number, format: WeightFormat, maxPartBytes = gpu.caps.maxStorageBufferBindingSize): { rowStart: number; rows: number }[] {
  const limit = Math.floor(Math.min(maxPartBytes, gpu.caps.maxBufferSize) / 16) * 16;
  const rowBytes = Math.max(rowWords(cols, format), rowScaleWords(cols, format)) * 4;
  const perPart = Math.floor(limit / rowBytes);
  if (perPart < 1) throw new GpuError(`${label}: one row of ${cols} ${format} values (${rowBytes} bytes) exceeds the ${maxPartBytes}-byte buffer limit`);
  const parts: { rowStart: number; rows: number }[] = [];
  for (let rowStart = 0; rowStart < rows || parts.length === 0; rowStart += perPart) {
    parts.push({ rowStart, rows: Math.min(perPart, rows - rowStart) });
  }
  return parts;
}

/**
 * Packs and uploads a rows x cols f32 matrix, split along rows by matrixParts. Buffers are labelled
 * `${label} part ${i}` and `${label} scales ${i}`.
 */
export function uploadMatrix(gpu: Gpu, label: string, src: Float32Array, rows: number, cols: number, format: WeightFormat, maxPartBytes = gpu.caps.maxStorageBufferBindingSize): GpuMatrix {
  if (src.length < rows * cols) throw new Error(`uploadMatrix ${label}: ${src.length} values for ${rows}x${cols}`);
  const parts: MatrixPart[] = matrixParts(gpu, label, rows, cols, format, maxPartBytes).map(({ rowStart, rows: n }, i) => {
    const packed = packRows(src.subarray(rowStart * cols, (rowStart + n) * cols), n, cols, format);
    const data = gpu.upload(`${label} part ${i}`, packed.data);
    const scales = packed.scales ? gpu.upload(`${label} scales ${i}`, packed.scales) : null;
    return { rowStart, rows: n, data, scales };
  });
  return { label, format, rows, cols, parts };
}
