import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16BitsToF32, f16ToF32, f32ToF16Bits, kvRowBytes, roundF16, roundF16Array } from '../../worker/model/dtype';

/** The f32 with these bits. */
const fromBits = (b: number) => new Float32Array(new Uint32Array([b]).buffer)[0];

/** Positive finite f16 values in increasing order, by bit pattern 0..0x7bff. */
const positives = Array.from({ length: 0x7c00 }, (_, h) => f16BitsToF32(h));

/** Reference: nearest f16 by search over all finite values, ties to even, overflow per IEEE. */
function refF16(x: number): number {
  if (Number.isNaN(x)) return -1;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const max = positives[0x7bff];
  // IEEE: values at or above max + half an ulp (2^15 * (2 - 2^-11)) round to infinity.
  if (a >= 65520) return sign | 0x7c00;
  if (a >= max) return sign | 0x7bff;
  let lo = 0, hi = 0x7bff; // positives[lo] <= a < positives[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (positives[mid] <= a) lo = mid; else hi = mid;
  }
  const dl = a - positives[lo], dh = positives[hi] - a;
  const h = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
  return sign | h;
}

describe('f16', () => {
  it('decodes special values exactly', () => {
    const src = new Uint16Array([0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff, 0x8001, 0x7c00, 0xfc00, 0x7e00, 0x7c01, 0x3555]);
    const out = f16ToF32(src);
    expect(Object.is(out[0], 0)).toBe(true);
    expect(Object.is(out[1], -0)).toBe(true);
    expect([...out.slice(2, 9)]).toEqual([1, -2, 65504, 2 ** -14, 2 ** -24, 1023 * 2 ** -24, -(2 ** -24)]);
    expect(out[9]).toBe(Infinity);
    expect(out[10]).toBe(-Infinity);
    expect(Number.isNaN(out[11]) && Number.isNaN(out[12])).toBe(true);
    expect(out[13]).toBeCloseTo(1 / 3, 3);
  });

  it('round-trips every f16 bit pattern through f32', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = f16ToF32(all);
    let bad = 0;
    for (let h = 0; h < 65536; h++) {
      const exp = (h >> 10) & 0x1f, man = h & 0x3ff;
      const back = f32ToF16Bits(f[h]);
      if (exp === 31 && man !== 0) {
        // NaN stays NaN (JS numbers do not keep a NaN's sign or payload).
        if ((back & 0x7c00) !== 0x7c00 || (back & 0x3ff) === 0) bad++;
      } else if (back !== h) bad++;
    }
    expect(bad).toBe(0);
  });

  it('rounds f32 to the nearest f16, ties to even, including subnormals and overflow', () => {
    const cases = [
      1 + 2 ** -11, // exact tie between 1 and 1+2^-10: to even (1)
      1 + 3 * 2 ** -11, // tie: to even (1 + 2^-9)
      2 ** -25, // half the smallest subnormal: tie to 0
      2 ** -25 * 1.0000001, // just above: smallest subnormal
      3 * 2 ** -25, // tie between 1 and 2 subnormal units: to 2
      2 ** -14 - 2 ** -25, // tie between the largest subnormal and the smallest normal: to even (normal)
      65504, 65519.99, 65520, 1e6, -1e-10, 1e-30, -0,
    ];
    for (const x of cases) expect(f32ToF16Bits(x), `x=${x}`).toBe(refF16(Math.fround(x)));
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
    expect(f32ToF16Bits(Infinity)).toBe(0x7c00);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f32ToF16Bits(2 ** -25)).toBe(0);
    expect(f32ToF16Bits(-(2 ** -25))).toBe(0x8000);
    const nan = f32ToF16Bits(NaN);
    expect((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0).toBe(true);
  });

  it('matches the reference on random f32 bit patterns', () => {
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0));
    for (let i = 0; i < 200_000; i++) {
      // Bias exponents into the f16 range and around it.
      const b = (rnd() & 0x807fffff) | ((96 + (rnd() % 64)) << 23);
      const x = fromBits(b);
      const got = f32ToF16Bits(x), want = refF16(x);
      if (got !== want) throw new Error(`x=${x} (bits ${b.toString(16)}): got ${got.toString(16)}, want ${want.toString(16)}`);
    }
  });

  it('roundF16 (the f16 KV cache): nearest f16 value, finite values clamped to ±65504, NaN kept', () => {
    let seed = 777;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0));
    for (let i = 0; i < 50_000; i++) {
      const x = fromBits((rnd() & 0x807fffff) | ((100 + (rnd() % 50)) << 23));
      const want = Math.abs(x) > 65504 ? Math.sign(x) * 65504 : f16BitsToF32(refF16(x));
      if (!Object.is(roundF16(x), want)) throw new Error(`roundF16(${x}) = ${roundF16(x)}, want ${want}`);
    }
    expect(roundF16(65519.9)).toBe(65504);
    expect(roundF16(-1e30)).toBe(-65504);
    expect(roundF16(1 + 2 ** -11)).toBe(1); // tie to even
    expect(roundF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(roundF16(2 ** -25)).toBe(0); // half the smallest subnormal: tie to even (zero)
    expect(roundF16(3 * 2 ** -26)).toBe(2 ** -24);
    expect(Number.isNaN(roundF16(NaN))).toBe(true);
    const a = Float32Array.from([0.1, -0.2, 70000]);
    expect(roundF16Array(a, a)).toBe(a);
    expect([...a]).toEqual([f16BitsToF32(0x2e66), -f16BitsToF32(0x3266), 65504]);
    expect(kvRowBytes(128, 'f16')).toBe(256);
    expect(kvRowBytes(128, 'f32')).toBe(512);
    expect(kvRowBytes(128, 'q8')).toBe(132); // 128 codes + an f32 scale: 0.52x of f16
    expect(kvRowBytes(128, 'q4')).toBe(72); // 64 bytes of codes + four f16 scales: 0.28x of f16
    expect(kvRowBytes(64, 'q4')).toBe(36);
  });

  it('writes into a given output and checks its size', () => {
    const out = new Float32Array(4).fill(7);
    expect(f16ToF32(new Uint16Array([0x3c00, 0x4000]), out)).toBe(out);
    expect([...out]).toEqual([1, 2, 7, 7]);
    expect(() => f16ToF32(new Uint16Array(3), new Float32Array(2))).toThrow(RangeError);
  });
});

describe('bf16', () => {
  it('is the high half of the f32 bits', () => {
    const src = new Uint16Array([0x3f80, 0xc000, 0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x4049, 0x7f7f]);
    const out = bf16ToF32(src);
    expect([...out.slice(0, 2)]).toEqual([1, -2]);
    expect(Object.is(out[2], 0) && Object.is(out[3], -0)).toBe(true);
    expect(out[4]).toBe(Infinity);
    expect(out[5]).toBe(-Infinity);
    expect(Number.isNaN(out[6])).toBe(true);
    expect(out[7]).toBe(fromBits(0x00010000)); // f32 subnormal
    expect(out[8]).toBe(fromBits(0x40490000)); // 3.140625
    expect(out[9]).toBe(fromBits(0x7f7f0000));
  });

  it('converts every bf16 pattern exactly, into a subarray output too', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const backing = new Float32Array(65536 + 3);
    const out = bf16ToF32(all, backing.subarray(3));
    const bits = new Uint32Array(out.buffer, out.byteOffset, 65536);
    let bad = 0;
    for (let i = 0; i < 65536; i++) if (bits[i] !== i << 16 >>> 0) bad++;
    expect(bad).toBe(0);
    expect(backing[0]).toBe(0);
    expect(() => bf16ToF32(new Uint16Array(3), new Float32Array(2))).toThrow(RangeError);
  });
});
