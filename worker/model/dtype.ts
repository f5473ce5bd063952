/** Conversions between bf16 / f16 bit patterns and f32, exact (subnormals, infinities, NaN). */
import type { KvDtype } from './types';

let f16Table: Float32Array | null = null;

/** All 65536 f16 values as f32: a lookup is faster than bit twiddling in JS and exact by construction. */
function table(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32(h);
  return (f16Table = t);
}

/** One f16 bit pattern → its value. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24; // zero and subnormals
  if (exp === 31) return man ? NaN : sign * Infinity;
  return sign * (1024 + man) * 2 ** (exp - 25);
}

/** bf16 bit patterns → f32 (exact: bf16 is the high half of an f32). */
export function bf16ToF32(src: Uint16Array, out?: Float32Array): Float32Array {
  const dst = out ?? new Float32Array(src.length);
  if (dst.length < src.length) throw new RangeError(`bf16ToF32: output holds ${dst.length} values, need ${src.length}`);
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return dst;
}

/** f16 bit patterns → f32 (exact). */
export function f16ToF32(src: Uint16Array, out?: Float32Array): Float32Array {
  const dst = out ?? new Float32Array(src.length);
  if (dst.length < src.length) throw new RangeError(`f16ToF32: output holds ${dst.length} values, need ${src.length}`);
  const t = table();
  for (let i = 0; i < src.length; i++) dst[i] = t[src[i]];
  return dst;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/**
 * f32 (the number is first rounded to f32) → nearest f16 bit pattern, round-to-nearest-even;
 * overflow → ±inf, NaN → a quiet NaN keeping the sign, tiny values → f16 subnormals or ±0.
 */
export function f32ToF16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | (man ? 0x7e00 : 0x7c00);
  const e = exp - 127 + 15; // f16 biased exponent
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal f16 (or zero): value = m * 2^-24 with m = round(full mantissa >> shift).
    if (e < -10) return sign; // below half the smallest subnormal: rounds to zero
    const full = man | 0x800000; // 24-bit significand
    const shift = 14 - e; // 14..24
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && m & 1)) m++;
    return sign | m; // m may carry into the smallest normal (0x400), which is the right encoding
  }
  let h = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // may carry into the exponent, up to inf: correct
  return sign | h;
}

/** Largest finite f16. */
export const F16_MAX = 65504;

/**
 * x rounded to the nearest f16 value (ties to even), as the KV cache stores K and V in f16: finite
 * values beyond ±65504 are clamped to ±65504 (the GPU clamps before pack2x16float, whose result is
 * undefined out of range); NaN stays NaN.
 */
export function roundF16(x: number): number {
  const c = x > F16_MAX ? F16_MAX : x < -F16_MAX ? -F16_MAX : x;
  return table()[f32ToF16Bits(c)];
}

/** Every value of `src` rounded to f16 (roundF16), in place when `out` is `src`. */
export function roundF16Array(src: ArrayLike<number>, out: Float32Array = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) out[i] = roundF16(src[i]);
  return out;
}

/** The KV storage types, the default first. */
export const KV_DTYPES: readonly KvDtype[] = ['f16', 'f32', 'q8', 'q4'];
export const DEFAULT_KV_DTYPE: KvDtype = 'f16';

/**
 * u32 words of one stored K (or V) vector of one KV head of head dim d: its values (`data`) and its
 * scales (`scale`: q8 one f32, q4 one f16 per 32 values, two per word). A stream's buffer holds the
 * values of every (head, slot) first, then their scales (worker/kv/quant.ts).
 */
export function kvRowWords(d: number, dtype: KvDtype): { data: number; scale: number } {
  switch (dtype) {
    case 'f32': return { data: d, scale: 0 };
    case 'f16': return { data: d / 2, scale: 0 };
    case 'q8': return { data: d / 4, scale: 1 };
    case 'q4': return { data: d / 8, scale: Math.ceil(d / 64) };
  }
}

/** Bytes of one stored K (or V) vector of one KV head, scales included. */
export function kvRowBytes(d: number, dtype: KvDtype): number {
  const w = kvRowWords(d, dtype);
  return 4 * (w.data + w.scale);
}

/** Why head dim d cannot be stored as dtype, or null (q8: a multiple of 8; q4: of 32, one scale per 32 values). */
export function kvDtypeProblem(d: number, dtype: KvDtype): string | null {
  if (!KV_DTYPES.includes(dtype)) return `unknown K/V dtype ${dtype} (${KV_DTYPES.join(', ')})`;
  if (dtype === 'q4' && d % 32 !== 0) return `K/V q4 needs a head dim that is a multiple of 32 (one scale per 32 values), not ${d}`;
  if (dtype === 'q8' && d % 8 !== 0) return `K/V q8 needs a head dim that is a multiple of 8, not ${d}`;
  return null;
}
