/**
 * The KV storage formats on the CPU side (docs/kv-cache.md, "K/V storage formats"): how a stored K or V
 * vector of one KV head (d values) is rounded, packed into u32 words and read back. The GPU twins are
 * shaders/kv_quant.wgsl (rounding, shared by kv_commit.wgsl and the readers of the step's own keys) and
 * the loads of attention.wgsl, attention_decode.wgsl and kv_score.wgsl.
 *
 * A stream's K (or V) buffer is [Hkv][cap] rows of `data` words, then [Hkv][cap] rows of `scale` words
 * (kvRowWords in worker/model/dtype.ts):
 *   f32  d words, the values' bits
 *   f16  d/2 words, two halves each (element 2i in the low half)
 *   q8   d/4 words, four int8 codes each (element 4i in the low byte); one scale word (f32 bits).
 *        scale s = max|x| / 127 (f32), code = round(x / s) (ties to even) clamped to ±127, value = code * s.
 *   q4   d/8 words, eight 4-bit codes each (element 8i in the low nibble, code + 8 stored); per 32 values
 *        one f16 scale, two per word (block 2i in the low half). llama.cpp's q4_0 grid: m = the value of
 *        largest magnitude (the first of equals), s = f16(m / -8), code = round(x / s) clamped to [-8, 7],
 *        value = code * s.
 * A zero scale stores zeros.
 */
import { f16BitsToF32, f32ToF16Bits, kvRowWords, roundF16 } from '../model/dtype';
import type { KvDtype } from '../model/types';

const f32 = Math.fround;

/** Round to nearest, ties to even (WGSL's round()). */
function roundEven(y: number): number {
  let r = Math.round(y);
  if (r - y === 0.5 && r % 2 !== 0) r -= 1;
  return r;
}

/** The q8 scale of a vector (as kv_quant.wgsl's q8Scale). */
export function q8Scale(x: ArrayLike<number>, o: number, n: number): number {
  let amax = 0;
  for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(x[o + i]));
  return f32(amax / 127);
}

/** The q4 scale of a block of 32 values (as kv_quant.wgsl's q4Scale). */
export function q4Scale(x: ArrayLike<number>, o: number): number {
  let amax = 0;
  let m = 0;
  for (let i = 0; i < 32; i++) {
    const a = Math.abs(x[o + i]);
    if (a > amax) { amax = a; m = x[o + i]; }
  }
  return roundF16(f32(m / -8));
}

/** The code of x with scale s (0 when s is 0). */
export function quantCode(x: number, s: number, lo: number, hi: number): number {
  if (s === 0) return 0;
  return Math.min(hi, Math.max(lo, roundEven(f32(x / s)))) + 0; // + 0: an integer code, never -0
}

/**
 * Rows of d values (x.length = rows * d) stored as `dtype`: the words of the buffer layout above (all
 * the rows' data, then all their scales) and the values as stored.
 */
export function packKvRows(x: Float32Array, d: number, dtype: KvDtype): { words: Uint32Array; values: Float32Array } {
  const rows = x.length / d;
  const w = kvRowWords(d, dtype);
  const words = new Uint32Array(rows * (w.data + w.scale));
  const values = new Float32Array(x.length);
  const f = new Float32Array(words.buffer);
  const so = rows * w.data;
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    if (dtype === 'f32') {
      for (let i = 0; i < d; i++) { values[o + i] = x[o + i]; f[o + i] = x[o + i]; }
    } else if (dtype === 'f16') {
      for (let i = 0; i < d; i++) values[o + i] = roundF16(x[o + i]);
      for (let i = 0; i < d / 2; i++) words[r * w.data + i] = (f32ToF16Bits(values[o + 2 * i]) | (f32ToF16Bits(values[o + 2 * i + 1]) << 16)) >>> 0;
    } else if (dtype === 'q8') {
      const s = q8Scale(x, o, d);
      f[so + r] = s;
      for (let i = 0; i < d; i++) {
        const q = quantCode(x[o + i], s, -127, 127);
        values[o + i] = f32(q * s);
        words[r * w.data + (i >> 2)] |= (q & 0xff) << (8 * (i & 3));
      }
    } else {
      for (let b = 0; b < d / 32; b++) {
        const s = q4Scale(x, o + 32 * b);
        words[so + r * w.scale + (b >> 1)] |= f32ToF16Bits(s) << (16 * (b & 1));
        for (let i = 32 * b; i < 32 * b + 32; i++) {
          const q = quantCode(x[o + i], s, -8, 7);
          values[o + i] = f32(q * s);
          words[r * w.data + (i >> 3)] |= (q + 8) << (4 * (i & 7));
        }
      }
    }
  }
  return { words, values };
}

/** Rows of d values as stored (x rounded in place to what the cache keeps). */
export function storeKvRows(x: Float32Array, d: number, dtype: KvDtype): Float32Array {
  if (dtype === 'f32') return x;
  x.set(packKvRows(x, d, dtype).values);
  return x;
}

/**
 * The values of `rows` rows from words of the buffer layout: `data` holds their data rows, `scales` their
 * scale rows (the same rows, from the scale region).
 */
export function unpackKvRows(data: Uint32Array, scales: Uint32Array, rows: number, d: number, dtype: KvDtype): Float32Array {
  const w = kvRowWords(d, dtype);
  const out = new Float32Array(rows * d);
  const f = new Float32Array(data.buffer, data.byteOffset, data.length);
  const sf = new Float32Array(scales.buffer, scales.byteOffset, scales.length);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < d; i++) {
      const word = data[r * w.data + (dtype === 'f32' ? i : dtype === 'f16' ? i >> 1 : dtype === 'q8' ? i >> 2 : i >> 3)];
      let v: number;
      if (dtype === 'f32') v = f[r * w.data + i];
      else if (dtype === 'f16') v = f16BitsToF32((word >>> (16 * (i & 1))) & 0xffff);
      else if (dtype === 'q8') v = f32((((word >>> (8 * (i & 3))) & 0xff) << 24 >> 24) * sf[r]);
      else {
        const b = i >> 5;
        const s = f16BitsToF32((scales[r * w.scale + (b >> 1)] >>> (16 * (b & 1))) & 0xffff);
        v = f32((((word >>> (4 * (i & 7))) & 0xf) - 8) * s);
      }
      out[r * d + i] = v;
    }
  }
  return out;
}
