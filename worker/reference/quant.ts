/** CPU inverse of worker/load/pack.ts `packRows`: the exact values the GPU kernels see. */
import { f16BitsToF32, rowGroups, rowWords, scaleAt } from '../load/pack';
import type { WeightFormat } from '../model/types';

export function dequantizeRows(packed: { data: Uint32Array | Float32Array; scales: Uint32Array | null }, rows: number, cols: number, format: WeightFormat): Float32Array {
  const out = new Float32Array(rows * cols);
  const { data, scales } = packed;
  if (format === 'f32') {
    out.set(data.subarray(0, rows * cols));
    return out;
  }
  const words = rowWords(cols, format);
  const groups = rowGroups(cols, format);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let v: number;
      if (format === 'f16') {
        const w = data[r * words + (c >> 1)];
        v = f16BitsToF32(c & 1 ? w >>> 16 : w & 0xffff);
      } else {
        const scale = scaleAt(scales!, r, c >> 5, groups);
        if (format === 'q8') {
          const q = ((data[r * words + (c >> 2)] >>> ((c & 3) * 8)) << 24) >> 24; // sign-extend int8
          v = q * scale;
        } else {
          const q = (data[r * words + (c >> 3)] >>> ((c & 7) * 4)) & 15;
          v = (q - 8) * scale;
        }
      }
      out[r * cols + c] = v; // Float32Array store rounds q * scale once, like the GPU's f32 multiply
    }
  }
  return out;
}
