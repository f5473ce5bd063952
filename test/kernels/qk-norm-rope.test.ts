/** q/k norm + RoPE (+ the DMS decision) beyond the op table (./ops.test.ts): the rotation itself, what DMS changes, refusals. */
import { describe, expect, it } from 'vitest';
import type { Gpu } from '../../worker/gpu/context';
import { Encoder } from '../../worker/gpu/encoder';
import { ropeInvFreq } from '../../worker/engine/rope';
import { qkNormRope } from '../../worker/kernels/qk-norm-rope';
import { maxRelErr, testGpu } from '../gpu';
import { positionsFor, runQkNormRope, withBuffers, type QkCase } from './ops';

const run = (gpu: Gpu, c: QkCase, seed: number) => withBuffers(gpu, (t) => runQkNormRope(t, c, seed));

describe('qkNormRope', () => {
  it('is the identity at position 0 without norm, rotates pairs by pos * invFreq, and stays accurate at large positions', async () => {
    const gpu = await testGpu();
    const c: QkCase = { rows: 5, numHeads: 2, numKvHeads: 1, headDim: 32, norm: false, dms: false, positions: new Uint32Array([0, 1, 40_961, 131_071, 399_999]) };
    const { qkv, got, ref } = await run(gpu, c, 3);
    expect(maxRelErr(got, ref.qkv, 3e-6, 1e-5)).toBeLessThanOrEqual(1);
    const stride = 4 * 32, inv = ropeInvFreq(32, 1_000_000, null);
    expect(maxRelErr(got.subarray(0, stride), qkv.subarray(0, stride))).toBeLessThanOrEqual(1);
    // Position 1: pair (i, i+16) of every head turns by angle inv[i], so its length is kept.
    for (let h = 0; h < 3; h++) {
      for (let i = 0; i < 16; i++) {
        const o = stride + h * 32;
        const [x, y, gx, gy] = [qkv[o + i], qkv[o + i + 16], got[o + i], got[o + i + 16]];
        expect(gx).toBeCloseTo(x * Math.cos(inv[i]) - y * Math.sin(inv[i]), 5);
        expect(gy).toBeCloseTo(y * Math.cos(inv[i]) + x * Math.sin(inv[i]), 5);
      }
    }
  });

  it('dms changes only the first q head of each group, and only through channel d-1', async () => {
    const gpu = await testGpu();
    const base: QkCase = { rows: 5, numHeads: 8, numKvHeads: 2, headDim: 64, norm: true, dms: false };
    const off = await run(gpu, base, 21);
    const on = await run(gpu, { ...base, dms: true }, 21);
    const d = 64, half = 32, stride = 12 * d;
    for (let r = 0; r < 5; r++) {
      for (let h = 0; h < 12; h++) {
        const o = r * stride + h * d;
        const dmsHead = h === 0 || h === 4;
        for (let i = 0; i < d; i++) {
          if (!dmsHead || (i !== d - 1 && i !== half - 1)) expect(on.got[o + i]).toBe(off.got[o + i]);
        }
        if (dmsHead) {
          expect(on.got[o + d - 1]).toBe(0);
          // With x[d-1] zeroed, out[d/2-1] = x[d/2-1] * cos: no sin term from channel d-1.
          const pos = on.args.rows && positionsFor(5, 21)[r];
          const angle = Math.fround(pos * ropeInvFreq(d, 1_000_000, null)[half - 1]);
          const xNorm = on.ref.qkv[o + half - 1] / Math.cos(angle);
          expect(on.got[o + half - 1]).toBeCloseTo(xNorm * Math.cos(angle), 4);
          expect(on.got[o + half - 1]).not.toBeCloseTo(off.got[o + half - 1], 4);
        }
      }
    }
  });

  it('FastDMS variants: another borrowed channel (either half), and no zeroing after RoPE, match the reference', async () => {
    const gpu = await testGpu();
    const d = 64, stride = 12 * d;
    for (const [channel, zeroAfter] of [[63, false], [5, true], [40, false], [0, true]] as const) {
      const c: QkCase = { rows: 5, numHeads: 8, numKvHeads: 2, headDim: d, norm: channel % 2 === 0, dms: true, dmsChannel: channel, dmsZeroAfter: zeroAfter };
      const { got, alpha, ref } = await run(gpu, c, 31 + channel);
      expect(maxRelErr(got, ref.qkv, 3e-6, 1e-5)).toBeLessThanOrEqual(1);
      expect(maxRelErr(alpha, ref.alpha!, 3e-6, 1e-4)).toBeLessThanOrEqual(1);
      for (let r = 0; r < 5; r++) {
        for (const h of [0, 4]) {
          // Zeroed after RoPE, or holding what the rotation moved into it from its partner channel.
          const v = got[r * stride + h * d + channel];
          if (zeroAfter) expect(v).toBe(0);
          else if (r > 0) expect(v).not.toBe(0);
        }
      }
    }
    const b = gpu.buffer('b', 64);
    const a = { rows: 1, numHeads: 4, numKvHeads: 2, headDim: 32, eps: 1e-6, qNorm: null, kNorm: null, dms: { scale: 100, offset: 5, channel: 32 } };
    expect(() => qkNormRope(new Encoder(gpu), b, b, b, b, a)).toThrow(/channel 32 is outside/);
    gpu.destroy(b);
  });

  it('rejects DMS without an alpha buffer and groups that do not divide', async () => {
    const gpu = await testGpu();
    const b = gpu.buffer('b', 64);
    const enc = new Encoder(gpu);
    const a = { rows: 1, numHeads: 4, numKvHeads: 2, headDim: 32, eps: 1e-6, qNorm: null, kNorm: null, dms: { scale: 100, offset: 5 } };
    expect(() => qkNormRope(enc, b, b, b, null, a)).toThrow(/alpha/);
    expect(() => qkNormRope(enc, b, b, b, b, { ...a, numHeads: 5 })).toThrow(/multiple/);
    gpu.destroy(b);
  });
});
