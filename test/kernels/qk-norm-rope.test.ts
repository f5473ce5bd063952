import { afterEach, describe, expect, it } from 'vitest';
import type { Gpu } from '../../worker/gpu/context';
import { Encoder } from '../../worker/gpu/encoder';
import { ropeInvFreq } from '../../worker/engine/rope';
import { qkNormRope, qkNormRopeTuning } from '../../worker/kernels/qk-norm-rope';
import { qkNormRopeRef, type QkNormRopeRefArgs } from '../../worker/reference/qk-norm-rope';
import { maxRelErr, randn, testGpu } from '../gpu';

afterEach(() => { qkNormRopeTuning.allowSubgroups = true; });

interface Case { rows: number; numHeads: number; numKvHeads: number; headDim: number; norm: boolean; dms: boolean; positions?: Uint32Array }

/** Non-contiguous positions, some large. */
function positionsFor(rows: number, seed: number): Uint32Array {
  const pos = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) pos[r] = ((r * 7919 + seed * 104729) % 50_000) + (r % 3 === 0 ? 0 : 3 * r);
  return pos;
}

async function run(gpu: Gpu, c: Case, seed: number) {
  const { rows, numHeads, numKvHeads, headDim: d } = c;
  const n = rows * (numHeads + 2 * numKvHeads) * d;
  const qkv = randn(n, seed, 3);
  const positions = c.positions ?? positionsFor(rows, seed);
  const invFreq = ropeInvFreq(d, 1_000_000, null);
  const qNorm = c.norm ? randn(d, seed + 1, 2) : null;
  const kNorm = c.norm ? randn(d, seed + 2, 2) : null;
  const args: QkNormRopeRefArgs = { rows, numHeads, numKvHeads, headDim: d, eps: 1e-6, qNorm, kNorm, dms: c.dms ? { scale: 100, offset: 5 } : null };
  const bq = gpu.upload('qkv', qkv), bp = gpu.upload('pos', positions), bf = gpu.upload('inv', invFreq);
  const bqn = qNorm && gpu.upload('qn', qNorm), bkn = kNorm && gpu.upload('kn', kNorm);
  const ba = gpu.upload('alpha', new Float32Array(rows * numKvHeads).fill(NaN));
  const enc = new Encoder(gpu);
  qkNormRope(enc, bq, bp, bf, ba, { ...args, qNorm: bqn, kNorm: bkn });
  enc.submit();
  const got = await gpu.readF32(bq, n), alpha = await gpu.readF32(ba, rows * numKvHeads);
  for (const b of [bq, bp, bf, bqn, bkn, ba]) if (b) gpu.destroy(b);
  return { qkv, got, alpha, ref: qkNormRopeRef(qkv, positions, invFreq, args), args };
}

describe('qkNormRope', () => {
  const cases: Case[] = [];
  // Every (group size, head dim) with every (norm, dms), rows 1 and 37 alternating.
  for (const [numHeads, numKvHeads] of [[3, 3], [4, 2], [8, 2]]) {
    for (const headDim of [32, 64, 128]) {
      let k = 0;
      for (const norm of [false, true]) for (const dms of [false, true]) cases.push({ rows: (k++ + headDim / 32) % 2 ? 37 : 1, numHeads, numKvHeads, headDim, norm, dms });
    }
  }
  for (const [j, c] of cases.entries()) {
    const name = `rows=${c.rows} heads=${c.numHeads}/${c.numKvHeads} d=${c.headDim} norm=${c.norm} dms=${c.dms}`;
    it(`matches the CPU reference ${name}`, async () => {
      const gpu = await testGpu();
      const { qkv, got, alpha, ref } = await run(gpu, c, 100 + j);
      expect(maxRelErr(got, ref.qkv, 2e-5, 2e-4)).toBeLessThanOrEqual(1);
      const stride = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
      for (let r = 0; r < c.rows; r++) {
        // v heads are bit-for-bit unchanged.
        const v0 = r * stride + (c.numHeads + c.numKvHeads) * c.headDim;
        expect(got.subarray(v0, (r + 1) * stride)).toEqual(qkv.subarray(v0, (r + 1) * stride));
      }
      if (c.dms) {
        // alpha = 100 * x - 5 amplifies the error of x a hundredfold.
        expect(maxRelErr(alpha, ref.alpha!, 2e-3, 1e-4)).toBeLessThanOrEqual(1);
        const g = c.numHeads / c.numKvHeads;
        for (let r = 0; r < c.rows; r++) for (let h = 0; h < c.numHeads; h += g) expect(got[r * stride + h * c.headDim + c.headDim - 1]).toBe(0);
      } else {
        expect(Array.from(alpha).every(Number.isNaN)).toBe(true);
      }
    });
  }

  for (const c of cases.filter((x) => x.rows === 37)) {
    it(`workgroup-memory reduction matches too: heads=${c.numHeads}/${c.numKvHeads} d=${c.headDim} norm=${c.norm} dms=${c.dms}`, async () => {
      const gpu = await testGpu();
      qkNormRopeTuning.allowSubgroups = false;
      const { got, alpha, ref } = await run(gpu, c, 7);
      expect(maxRelErr(got, ref.qkv, 2e-5, 2e-4)).toBeLessThanOrEqual(1);
      if (c.dms) expect(maxRelErr(alpha, ref.alpha!, 2e-3, 1e-4)).toBeLessThanOrEqual(1);
    });
  }

  it('is the identity at position 0 without norm, rotates pairs by pos * invFreq, and stays accurate at large positions', async () => {
    const gpu = await testGpu();
    const c: Case = { rows: 5, numHeads: 2, numKvHeads: 1, headDim: 32, norm: false, dms: false, positions: new Uint32Array([0, 1, 40_961, 131_071, 399_999]) };
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
    const base: Case = { rows: 5, numHeads: 8, numKvHeads: 2, headDim: 64, norm: true, dms: false };
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
