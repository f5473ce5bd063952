import { describe, expect, it } from 'vitest';
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits, matrixBytes, packRows, scaleAt, uploadMatrix } from '../../worker/load/pack';
import type { WeightFormat } from '../../worker/model/types';
import { dequantizeRows } from '../../worker/reference/quant';
import { randn, testGpu } from '../gpu';

describe('f16 / bf16 conversions', () => {
  it('converts known values', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(0.5)).toBe(0x3800);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up to Inf
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f32ToF16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16Bits(NaN) & 0x3ff).not.toBe(0);
    expect(f32ToF16Bits(2 ** -24)).toBe(1);
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // tie to even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(2); // tie to even (2)
    expect(f32ToF16Bits(2 ** -14)).toBe(0x0400);
    expect(f32ToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // subnormal rounding carries into the smallest normal
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie to even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f16BitsToF32(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0xc049)).toBeCloseTo(-3.140625, 10);
  });

  it('round-trips every half and rounds f32 values to the nearest half', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      if (Number.isNaN(v)) continue;
      expect(f32ToF16Bits(v)).toBe(h);
    }
    const xs = randn(20000, 5, 70000);
    for (const x of xs) {
      const h = f32ToF16Bits(x);
      const v = f16BitsToF32(h);
      if (Math.abs(x) >= 65520) { expect(Math.abs(v)).toBe(Infinity); continue; }
      // No other half is closer (neighbours by bit pattern, same sign).
      for (const n of [h - 1, h + 1]) {
        if ((n & 0x7fff) === 0x7fff || (n & 0x8000) !== (h & 0x8000)) continue;
        const u = f16BitsToF32(n & 0xffff);
        if (Number.isFinite(u)) expect(Math.abs(x - v)).toBeLessThanOrEqual(Math.abs(x - u));
      }
    }
  });
});

describe('packRows layout', () => {
  it('f32 keeps the values, f16 puts element 2k in the low half of word k', () => {
    const src = new Float32Array([1, -2, 0.5, 3, 5, 6]); // 2 x 3
    expect(Array.from(packRows(src, 2, 3, 'f32').data)).toEqual([1, -2, 0.5, 3, 5, 6]);
    const f16 = packRows(src, 2, 3, 'f16');
    expect(f16.scales).toBeNull();
    expect(Array.from(f16.data)).toEqual([0x3c00 | (0xc000 << 16), 0x3800, 0x4200 | (0x4500 << 16), 0x4600].map((v) => v >>> 0));
  });

  /** The f16 scales of packed rows as numbers, row by row. */
  const scaleValues = (scales: Uint32Array, rows: number, groups: number) =>
    Array.from({ length: rows * groups }, (_, i) => scaleAt(scales, Math.floor(i / groups), i % groups, groups));

  it('q8: int8 in byte c%4 of word c/4, f16 scale maxabs/127 per group of 32, two a word, zero padding', () => {
    const cols = 40;
    const src = new Float32Array(cols);
    src[0] = 127 / 64; src[1] = -63.5 / 64; src[5] = 1 / 64; src[33] = -127 / 32; src[39] = 63.5 / 32;
    const { data, scales } = packRows(src, 1, cols, 'q8');
    expect(data.length).toBe(16);
    expect(Array.from(scales!)).toEqual([(f32ToF16Bits(1 / 32) << 16 | f32ToF16Bits(1 / 64)) >>> 0]);
    expect(data[0] & 0xff).toBe(127);
    expect((data[0] >> 8) & 0xff).toBe(256 - 64); // -63.5 rounds away from zero
    expect((data[1] >> 8) & 0xff).toBe(1);
    expect((data[8] >> 8) & 0xff).toBe(256 - 127);
    expect((data[9] >>> 24) & 0xff).toBe(64); // 63.5 -> 64
    expect(Array.from(data.subarray(10))).toEqual([0, 0, 0, 0, 0, 0]); // cols 40..63 are padding
  });

  it('q4: code q+8 in bits 4*(c%8) of word c/8, f16 scale maxabs/7, padding and zero groups decode to 0', () => {
    const cols = 36;
    const src = new Float32Array(2 * cols);
    src[0] = 3.5; src[1] = -3.5; src[2] = 1.25; src[9] = 0.25;
    src[cols + 33] = -7;
    const { data, scales } = packRows(src, 2, cols, 'q4');
    expect(data.length).toBe(16);
    expect(scales!.length).toBe(2);
    expect(scaleValues(scales!, 2, 2)).toEqual([0.5, 0, 0, 1]);
    expect(data[0] & 0xf).toBe(15);
    expect((data[0] >> 4) & 0xf).toBe(1);
    expect((data[0] >> 8) & 0xf).toBe(8 + 3); // 2.5 rounds away from zero
    expect((data[0] >> 12) & 0xf).toBe(8);
    expect((data[1] >> 4) & 0xf).toBe(9); // 0.5 -> 1
    expect(data[4]).toBe(0x88888888); // zero-scale group
    expect((data[12] >> 4) & 0xf).toBe(8 - 7);
    expect(data[13]).toBe(0x88888888); // padding
    const back = dequantizeRows({ data, scales }, 2, cols, 'q4');
    expect(back[0]).toBe(3.5);
    expect(back[2]).toBe(1.5);
    expect(back[cols + 33]).toBe(-7);
    expect(back[3]).toBe(0);
  });

  it('q8/q4: a row of an odd number of groups ends its scales in a zero half; codes round against the f16 scale', () => {
    const cols = 70; // 3 groups: 2 scale words a row
    const src = new Float32Array(2 * cols);
    src[0] = 1; src[1] = 0.5; src[40] = -2; src[69] = 3; src[cols + 64] = 1;
    for (const format of ['q8', 'q4'] as WeightFormat[]) {
      const qmax = format === 'q8' ? 127 : 7;
      const { data, scales } = packRows(src, 2, cols, format);
      expect(scales!.length).toBe(4);
      expect(scales![1] >>> 16).toBe(0);
      expect(scales![3] >>> 16).toBe(0);
      const s = f16BitsToF32(f32ToF16Bits(1 / qmax)); // 1/7 and 1/127 are not f16 values
      expect(s).not.toBe(Math.fround(1 / qmax));
      expect(scaleValues(scales!, 2, 3)).toEqual([s, 2 * s, 3 * s, 0, 0, s]);
      const back = dequantizeRows({ data, scales }, 2, cols, format);
      expect(back[0]).toBe(Math.fround(qmax * s)); // the largest code, not qmax + 1 when s rounded down
      expect(back[1]).toBe(Math.fround(Math.round(0.5 / s) * s));
      expect(back[cols + 64]).toBe(Math.fround(qmax * s));
    }
  });

  it('q8/q4: a scale past f16 saturates at 65504, an infinite group keeps an infinite scale', () => {
    const src = new Float32Array(64);
    src[0] = 1e9; src[1] = -1e9; src[32] = Infinity;
    for (const format of ['q8', 'q4'] as WeightFormat[]) {
      const qmax = format === 'q8' ? 127 : 7;
      const { scales } = packRows(src, 1, 64, format);
      expect(scaleValues(scales!, 1, 2)).toEqual([65504, Infinity]);
      const back = dequantizeRows(packRows(src, 1, 64, format), 1, 64, format);
      expect([back[0], back[1]]).toEqual([qmax * 65504, -qmax * 65504]);
    }
  });

  for (const format of ['f32', 'f16', 'q8', 'q4'] as WeightFormat[]) {
    it(`${format}: dequantizeRows is within half a step of the source`, () => {
      const rows = 7, cols = 75;
      const src = randn(rows * cols, 3, 4);
      const back = dequantizeRows(packRows(src, rows, cols, format), rows, cols, format);
      const qmax = format === 'q8' ? 127 : 7;
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const i = r * cols + c;
          if (format === 'f32') expect(back[i]).toBe(src[i]);
          else if (format === 'f16') expect(Math.abs(back[i] - src[i])).toBeLessThanOrEqual(Math.abs(src[i]) * 2 ** -11 + 2 ** -25);
          else {
            const g0 = Math.floor(c / 32) * 32;
            let maxabs = 0;
            for (let k = g0; k < Math.min(cols, g0 + 32); k++) maxabs = Math.max(maxabs, Math.abs(src[r * cols + k]));
            // Half a step of the f16 scale, plus what rounding the scale to f16 (2^-11) moves the largest code.
            expect(Math.abs(back[i] - src[i])).toBeLessThanOrEqual((maxabs / qmax) * (0.5 + (qmax + 1) * 2 ** -11));
          }
        }
      }
    });
  }
});

describe('uploadMatrix', () => {
  for (const format of ['f32', 'f16', 'q8', 'q4'] as WeightFormat[]) {
    it(`${format}: splits along rows under maxPartBytes, labels parts, uploads packRows' bytes`, async () => {
      const gpu = await testGpu();
      const rows = 1000, cols = 50;
      const src = randn(rows * cols, 11);
      const max = 7000;
      const m = uploadMatrix(gpu, 'tbl', src, rows, cols, format, max);
      expect(m.parts.length).toBeGreaterThanOrEqual(3);
      let next = 0, bytes = 0;
      const whole = packRows(src, rows, cols, format);
      const words = whole.data.length / rows, nsc = whole.scales ? whole.scales.length / rows : 0;
      for (const [i, p] of m.parts.entries()) {
        expect(p.rowStart).toBe(next);
        next += p.rows;
        expect(p.data.label).toBe(`tbl part ${i}`);
        expect(p.data.size).toBeLessThanOrEqual(max);
        const got = new Uint32Array(await gpu.read(p.data, 0, p.rows * words * 4));
        expect(got).toEqual(new Uint32Array(whole.data.buffer, whole.data.byteOffset + p.rowStart * words * 4, p.rows * words));
        bytes += p.rows * words * 4;
        if (nsc) {
          expect(p.scales!.label).toBe(`tbl scales ${i}`);
          expect(p.scales!.size).toBeLessThanOrEqual(max);
          expect(await gpu.readU32(p.scales!, p.rows * nsc)).toEqual(whole.scales!.subarray(p.rowStart * nsc, (p.rowStart + p.rows) * nsc));
          bytes += p.rows * nsc * 4;
        } else expect(p.scales).toBeNull();
      }
      expect(next).toBe(rows);
      expect(bytes).toBe(matrixBytes(rows, cols, format));
      expect(matrixBytes(rows, cols, format)).toBe(rows * { f32: 200, f16: 100, q8: 64 + 4, q4: 32 + 4 }[format]);
      for (const p of m.parts) { gpu.destroy(p.data); if (p.scales) gpu.destroy(p.scales); }
    });
  }

  it('refuses a row larger than the part limit', async () => {
    const gpu = await testGpu();
    expect(() => uploadMatrix(gpu, 'big', new Float32Array(64), 1, 64, 'f32', 100)).toThrow(/exceeds/);
  });
});
