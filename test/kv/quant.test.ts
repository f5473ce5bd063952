/** The CPU side of the K/V storage formats (worker/kv/quant.ts): packing, reading back, the q8 and q4_0 grids. */
import { describe, expect, it } from 'vitest';
import { packKvRows, q4Scale, q8Scale, storeKvRows, unpackKvRows } from '../../worker/kv/quant';
import { kvDtypeProblem, kvRowBytes, kvRowWords, roundF16 } from '../../worker/model/dtype';
import { randn } from '../gpu';

describe('K/V storage formats on the CPU', () => {
  for (const dtype of ['f32', 'f16', 'q8', 'q4'] as const) {
    it(`${dtype}: the packed words read back as the stored values, rows then scales`, () => {
      const d = 64, rows = 5;
      const x = randn(rows * d, 3, 4);
      const { words, values } = packKvRows(x, d, dtype);
      const w = kvRowWords(d, dtype);
      expect(words.length).toBe(rows * (w.data + w.scale));
      expect(4 * (w.data + w.scale)).toBe(kvRowBytes(d, dtype));
      const back = unpackKvRows(words.subarray(0, rows * w.data), words.subarray(rows * w.data), rows, d, dtype);
      expect(Array.from(back)).toEqual(Array.from(values));
      expect(Array.from(storeKvRows(x.slice(), d, dtype))).toEqual(Array.from(values));
    });
  }

  it('q8: scale max|x| / 127 per row, codes rounded to nearest (ties to even), the largest value exact', () => {
    const x = Float32Array.from([127, -63.5, 0.5, 1.5, -2.5, 3, 0, -127]);
    const { words, values } = packKvRows(x, 8, 'q8');
    expect(q8Scale(x, 0, 8)).toBe(1);
    expect(Array.from(values)).toEqual([127, -64, 0, 2, -2, 3, 0, -127]);
    expect(new Float32Array(words.buffer)[2]).toBe(1); // the scale word after the two code words
    expect(words[0] & 0xff).toBe(127);
    expect((words[0] >>> 8) & 0xff).toBe(0xc0); // -64
  });

  it('q4: llama.cpp q4_0 grid, one f16 scale per 32 values (m / -8, m the value of largest magnitude)', () => {
    const x = new Float32Array(64);
    for (let i = 0; i < 32; i++) x[i] = (i - 16) / 4; // block 0: m = -4, s = 0.5
    x[32] = 3; x[33] = -1; x[40] = 2.9; // block 1: m = 3, s = -0.375
    expect(q4Scale(x, 0)).toBe(0.5);
    expect(q4Scale(x, 32)).toBe(roundF16(-0.375));
    const { values } = packKvRows(x, 64, 'q4');
    expect(values[0]).toBe(-4); // code -8
    expect(values[31]).toBe(3.5); // 3.75 clamps to code 7
    expect(values[32]).toBe(3); // m itself: code -8 times a negative scale
    expect(values[40]).toBe(3); // 2.9 / -0.375 = -7.73 -> -8
    expect(values[33]).toBe(-1.125); // -1 / -0.375 = 2.67 -> 3
    expect(Object.is(values[34], -0)).toBe(true); // zero times a negative scale
  });

  it('an all-zero row stores zeros; q4 needs head dims in 32s', () => {
    for (const dtype of ['q8', 'q4'] as const) expect(Array.from(packKvRows(new Float32Array(32), 32, dtype).values).every((v) => v === 0)).toBe(true);
    expect(kvDtypeProblem(48, 'q4')).toMatch(/multiple of 32/);
    expect(kvDtypeProblem(48, 'q8')).toBeNull();
    expect(kvDtypeProblem(64, 'bf16' as never)).toMatch(/unknown/);
  });
});
