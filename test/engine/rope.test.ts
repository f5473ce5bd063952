import { describe, expect, it } from 'vitest';
import { ropeInvFreq } from '../../worker/engine/rope';

describe('ropeInvFreq', () => {
  it('is theta^(-2i/d) without scaling', () => {
    const f = ropeInvFreq(128, 1_000_000, null);
    expect(f.length).toBe(64);
    expect(f[0]).toBe(1);
    expect(f[1]).toBeCloseTo(Math.fround(1e6 ** (-2 / 128)), 7);
    expect(f[63] / Math.fround(1e6 ** (-126 / 128))).toBeCloseTo(1, 6);
    const g = ropeInvFreq(32, 10_000, null);
    expect(g.length).toBe(16);
    expect(g[8]).toBeCloseTo(0.01, 8); // 10000^(-16/32)
    for (let i = 1; i < 16; i++) expect(g[i]).toBeLessThan(g[i - 1]);
  });

  it("applies Llama 3's rope_scaling (Llama 3.1 8B values)", () => {
    const scaling = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    const base = ropeInvFreq(128, 500_000, null);
    const f = ropeInvFreq(128, 500_000, scaling);
    // Values from an independent evaluation of the published formula (Python, float64).
    const want: Record<number, number> = {
      0: 1.0, 1: 0.8146172338565447, 20: 0.016560440080994446, 30: 0.0013718935677611381,
      40: 3.428102195952591e-05, 45: 1.2297638677963614e-05, 50: 4.411534674558404e-06, 63: 3.068925988914511e-07,
    };
    for (const [i, v] of Object.entries(want)) expect(f[+i] / v).toBeCloseTo(1, 6);
    let high = 0, low = 0, mid = 0;
    for (let i = 0; i < 64; i++) {
      const wavelen = (2 * Math.PI) / base[i];
      if (wavelen < 2048) { expect(f[i]).toBe(base[i]); high++; }
      else if (wavelen > 8192) { expect(f[i] / (base[i] / 8)).toBeCloseTo(1, 6); low++; }
      else { expect(f[i]).toBeLessThan(base[i]); expect(f[i]).toBeGreaterThan(base[i] / 8); mid++; }
      if (i > 0) expect(f[i]).toBeLessThan(f[i - 1]);
    }
    expect(high).toBeGreaterThan(0); expect(low).toBeGreaterThan(0); expect(mid).toBeGreaterThan(0);
  });

  it('rejects an odd head dim', () => {
    expect(() => ropeInvFreq(63, 10_000, null)).toThrow(/even/);
  });
});
