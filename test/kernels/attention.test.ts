/**
 * The attention kernels (shaders/attention.wgsl, attention_decode.wgsl) on a KV stream built by hand, against
 * the CPU reference (worker/reference/attention.ts, with the DMS rule dmsVisible of worker/reference/kv-cache.ts):
 * resident tokens in shuffled slots and per-head lengths, DMS marks on resident and step keys (the previous
 * step's last token marked by the step's first decision), K/V in f16 and f32; the general kernel with its
 * output written directly and in key splits, the decode kernel's splits; partials merged on the CPU
 * (worker/reference/kv-commit.ts). The decode kernel with the q/k transform fused in (ROPE) against
 * worker/reference/qk-norm-rope.ts then the same reference. The kernels also run in every cache test (test/kv/*).
 */
import { describe, expect, it } from 'vitest';
import { qkTableData, ropeInvFreq } from '../../worker/engine/rope';
import { attention, attentionDecode, decodeLanes, NO_WINDOW } from '../../worker/kernels/attention';
import { NO_CARRY } from '../../worker/kernels/kv-commit';
import { partialFloats } from '../../worker/kv/layout';
import { attentionRef } from '../../worker/reference/attention';
import { dmsVisible } from '../../worker/reference/kv-cache';
import { mergePartials, storeKv } from '../../worker/reference/kv-commit';
import { qkNormRopeRef, type QkNormRopeRefArgs } from '../../worker/reference/qk-norm-rope';
import { kvDtypeProblem } from '../../worker/model/dtype';
import type { KvDtype } from '../../worker/model/types';
import { maxRelErr, randn, testGpu } from '../gpu';
import { DTYPES } from '../kv/harness';
import { buildStream, somePositions, type Stream } from './kv-stream';
import { withBuffers, type OpBuffers } from './ops';

interface Case { hq: number; hkv: number; d: number; T: number; dms: boolean; cap: number; pos0: number }

const W = 6;

/** A stream whose heads hold different numbers of tokens in shuffled slots; with DMS, the window's tokens all resident, random marks. */
function stream(t: OpBuffers, c: Case, dtype: KvDtype, seed: number): Stream {
  const slots: number[][] = [], marked: boolean[][] = [];
  for (let h = 0; h < c.hkv; h++) {
    const len = Math.min(c.cap, c.pos0) - 3 * h;
    const window = c.dms ? Array.from({ length: W + 1 }, (_, i) => c.pos0 - 1 - i) : [c.pos0 - 1];
    slots.push(somePositions(len, c.pos0, seed + h, window));
    const m = randn(len, seed + 10 + h);
    marked.push(slots[h].map((p, s) => c.dms && p !== c.pos0 - 1 && m[s] > 0));
  }
  return buildStream(t, { hkv: c.hkv, d: c.d, cap: c.cap, policy: c.dms ? 'dms' : 'full', window: c.dms ? W : 0, dtype, pos0: c.pos0, slots, marked, seed });
}

/** out [T][hq][d] over the stream's resident slots and the step's keys, with the kernels' visibility. */
function reference(s: Stream, c: Case, qkv: Float32Array, alpha: Float32Array): Float32Array {
  const { hq, hkv, d, T, cap, pos0 } = c;
  const stride = (hq + 2 * hkv) * d;
  const nk = cap + T;
  const keys = new Float32Array(nk * hkv * d), values = new Float32Array(nk * hkv * d);
  for (let h = 0; h < hkv; h++) {
    for (let slot = 0; slot < cap; slot++) {
      keys.set(s.keys.subarray((h * cap + slot) * d, (h * cap + slot + 1) * d), (slot * hkv + h) * d);
      values.set(s.values.subarray((h * cap + slot) * d, (h * cap + slot + 1) * d), (slot * hkv + h) * d);
    }
    for (let r = 0; r < T; r++) {
      const o = r * stride + (hq + h) * d;
      keys.set(storeKv(qkv.slice(o, o + d), s.spec.dtype, d), ((cap + r) * hkv + h) * d);
      values.set(storeKv(qkv.slice(o + hkv * d, o + hkv * d + d), s.spec.dtype, d), ((cap + r) * hkv + h) * d);
    }
  }
  const q = new Float32Array(T * hq * d);
  for (let r = 0; r < T; r++) q.set(qkv.subarray(r * stride, r * stride + hq * d), r * hq * d);
  return attentionRef(q, keys, values, { rows: T, nk, hq, hkv, d }, (r, j, h) => {
    let pos: number, marked: boolean;
    if (j < cap) {
      if (j >= s.spec.slots[h].length) return false;
      pos = s.spec.slots[h][j];
      // The previous step's last token takes its mark from this step's first decision.
      marked = !!s.spec.marked?.[h][j] || (pos === pos0 - 1 && alpha[h] > 0);
    } else {
      pos = pos0 + j - cap;
      marked = j - cap + 1 < T && alpha[(j - cap + 1) * hkv + h] > 0;
    }
    return c.dms ? dmsVisible(pos0 + r, pos, W, marked ? 1 : -1) : pos <= pos0 + r;
  });
}

/** The partials of `nsplit` splits in `part`, merged on the CPU. */
function merged(part: Float32Array, c: Case, nsplit: number): Float32Array {
  const n = c.T * c.hq * nsplit;
  return mergePartials(part.subarray(0, n * c.d), part.subarray(n * c.d, n * (c.d + 2)), c.T, c.hq, c.d, nsplit).out;
}

async function run(t: OpBuffers, c: Case, dtype: KvDtype, seed: number, kernel: 'general' | 'decode', nsplit: number) {
  const s = stream(t, c, dtype, seed);
  const stride = (c.hq + 2 * c.hkv) * c.d;
  const qkvData = randn(c.T * stride, seed + 100, 1.5);
  const alphaData = randn(c.T * c.hkv, seed + 200);
  const qkv = t.input(qkvData), alpha = t.input(alphaData);
  const out = t.output(c.T * c.hq * c.d);
  const part = t.output(partialFloats(c.T, c.hq, c.d, nsplit));
  const where = { rowBase: 0, hq: c.hq, hkv: c.hkv, d: c.d, cap: c.cap, w: c.dms ? W : NO_WINDOW, seenOff: s.st.seenOff, posOff: s.st.posOff, carryOff: NO_CARRY, nsplit, dtype };
  t.run((enc) => {
    if (kernel === 'decode') attentionDecode(enc, where, { qkv, alpha, k: s.k, v: s.v, state: s.state, part });
    else attention(enc, { ...where, T: c.T, statOff: -1 }, { qkv, alpha, k: s.k, v: s.v, state: s.state, out, part });
  });
  const want = reference(s, c, qkvData, alphaData);
  const o = await t.read(out, 'out'), p = await t.read(part, 'partials');
  const got = kernel === 'general' && nsplit === 1 ? o : merged(p, c, nsplit);
  return { got, want, untouched: kernel === 'general' && nsplit === 1 ? p : o };
}

const CASES: Case[] = [
  { hq: 4, hkv: 4, d: 16, T: 1, dms: false, cap: 40, pos0: 50 },
  { hq: 8, hkv: 2, d: 32, T: 5, dms: true, cap: 40, pos0: 60 },
  { hq: 6, hkv: 3, d: 40, T: 3, dms: false, cap: 24, pos0: 24 },
  { hq: 8, hkv: 2, d: 64, T: 1, dms: true, cap: 300, pos0: 290 },
  { hq: 8, hkv: 2, d: 128, T: 37, dms: true, cap: 200, pos0: 250 },
  { hq: 16, hkv: 2, d: 64, T: 1, dms: false, cap: 260, pos0: 260 },
];

describe.each(DTYPES)('attention kernels on a stream built by hand, K/V in %s', (dtype) => {
  for (const [i, c] of CASES.entries()) {
    if (kvDtypeProblem(c.d, dtype)) continue; // q4: head dims that are multiples of 32
    const name = `Hq ${c.hq} Hkv ${c.hkv} d ${c.d}, ${c.T} row(s), ${c.dms ? 'DMS' : 'no DMS'}, ${c.pos0} tokens seen in ${c.cap} slots`;
    it(`general kernel, output written directly and in 4 key splits: ${name}`, async () => {
      const gpu = await testGpu();
      for (const nsplit of [1, 4]) {
        const r = await withBuffers(gpu, (t) => run(t, c, dtype, 10 * i + 1, 'general', nsplit));
        expect(maxRelErr(r.got, r.want, 2e-5, 2e-4), `${nsplit} split(s)`).toBeLessThanOrEqual(1);
        expect(Array.from(r.untouched).every(Number.isNaN), 'the other output stays untouched').toBe(true);
      }
    });
    if (c.T === 1) {
      it(`decode kernel, 1 and 3 key splits: ${name}`, async () => {
        const gpu = await testGpu();
        expect(decodeLanes(gpu, c.d, c.hq / c.hkv)).toBeGreaterThan(0);
        for (const nsplit of [1, 3]) {
          const r = await withBuffers(gpu, (t) => run(t, c, dtype, 10 * i + 2, 'decode', nsplit));
          expect(maxRelErr(r.got, r.want, 2e-5, 2e-4), `${nsplit} split(s)`).toBeLessThanOrEqual(1);
          expect(Array.from(r.untouched).every(Number.isNaN), 'out stays untouched (the merge writes it)').toBe(true);
        }
      });
    }
  }
});

/** The q/k transform of a fused case: q/k norms or none; the DMS decision from a borrowed channel, zeroed after RoPE or not. */
interface Rope { norm: boolean; dms: { channel?: number; zeroAfter: boolean } | null }

/**
 * The decode kernel on raw q/k heads with the transform fused in: its output against the reference on the
 * CPU-transformed q (the step's own key as the kernel wrote it back, so that a rounding of the stored key at a
 * quantization boundary cannot differ), the rotated k and the decision it writes against the CPU's.
 */
async function runFused(t: OpBuffers, c: Case, dtype: KvDtype, seed: number, nsplit: number, rope: Rope) {
  const s = stream(t, c, dtype, seed);
  const { hq, hkv, d } = c;
  const stride = (hq + 2 * hkv) * d;
  const raw = randn(stride, seed + 100, 1.5);
  // theta 100: every pair turns by a large angle at these positions (with 1e6 the slowest pairs barely move,
  // and channel d-1 zeroed or not after RoPE would change the output less than the tolerance).
  const invFreq = ropeInvFreq(d, 100, null);
  const qNorm = rope.norm ? randn(d, seed + 300, 2) : null, kNorm = rope.norm ? randn(d, seed + 301, 2) : null;
  const dms = rope.dms && c.dms ? { scale: 100, offset: 5, ...rope.dms } : null;
  const args: QkNormRopeRefArgs = { rows: 1, numHeads: hq, numKvHeads: hkv, headDim: d, eps: 1e-6, qNorm, kNorm, dms };
  const qkv = t.output(stride, raw), alpha = t.output(hkv, new Float32Array(hkv));
  const part = t.output(partialFloats(1, hq, d, nsplit));
  const where = { rowBase: 0, hq, hkv, d, cap: c.cap, w: c.dms ? W : NO_WINDOW, seenOff: s.st.seenOff, posOff: s.st.posOff, carryOff: NO_CARRY, nsplit, dtype };
  const marker = qNorm ? t.input(qNorm) : null; // stands for "has q norm" only: the kernel reads the table
  t.run((enc) => attentionDecode(enc, where, { qkv, alpha, k: s.k, v: s.v, state: s.state, part }, {
    table: t.input(qkTableData(invFreq, qNorm, kNorm)),
    args: { numHeads: hq, numKvHeads: hkv, headDim: d, eps: args.eps, qNorm: marker, kNorm: kNorm ? marker : null, dms },
  }));
  const ref = qkNormRopeRef(raw, new Uint32Array([c.pos0]), invFreq, args);
  const written = await t.read(qkv, 'qkv'), alphaGot = await t.read(alpha, 'alpha');
  const kOff = hq * d;
  const forRef = Float32Array.from(ref.qkv);
  forRef.set(written.subarray(kOff, kOff + hkv * d), kOff);
  return {
    got: merged(await t.read(part, 'partials'), c, nsplit),
    want: reference(s, c, forRef, alphaGot),
    k: { got: written.subarray(kOff, kOff + hkv * d), want: ref.qkv.subarray(kOff, kOff + hkv * d) },
    untouched: { got: Array.from(written.subarray(0, kOff)).concat(Array.from(written.subarray(kOff + hkv * d))), want: Array.from(raw.subarray(0, kOff)).concat(Array.from(raw.subarray(kOff + hkv * d))) },
    alpha: { got: alphaGot, want: ref.alpha ?? new Float32Array(hkv) },
  };
}

const ROPES: Rope[] = [
  { norm: true, dms: { zeroAfter: true } },
  { norm: false, dms: null },
  { norm: true, dms: { channel: 5, zeroAfter: false } },
];

/** The decode cases, and two more: the 8B's head (d 128, NCH > 1 on small subgroups), and a half head (20) that is no whole chunk. */
const FUSED_CASES: Case[] = [
  ...CASES.filter((c) => c.T === 1),
  { hq: 8, hkv: 2, d: 128, T: 1, dms: true, cap: 70, pos0: 90 },
  { hq: 6, hkv: 3, d: 40, T: 1, dms: true, cap: 24, pos0: 30 },
];

describe.each(DTYPES)('decode kernel with q/k norm + RoPE + the DMS decision fused in, K/V in %s', (dtype) => {
  for (const [i, c] of FUSED_CASES.entries()) {
    if (kvDtypeProblem(c.d, dtype)) continue;
    const name = `Hq ${c.hq} Hkv ${c.hkv} d ${c.d}, ${c.dms ? 'DMS' : 'no DMS'}, ${c.pos0} tokens seen in ${c.cap} slots`;
    // Without DMS the first and third transforms are the same.
    const ropes = c.dms ? ROPES : ROPES.slice(0, 2);
    it(`1 and 3 key splits, each transform: ${name}`, async () => {
      const gpu = await testGpu();
      for (const [j, rope] of ropes.entries()) {
        for (const nsplit of [1, 3]) {
          const what = `${JSON.stringify(rope)}, ${nsplit} split(s)`;
          const r = await withBuffers(gpu, (t) => runFused(t, c, dtype, 10 * i + j + 5, nsplit, rope));
          expect(maxRelErr(r.got, r.want, 2e-5, 2e-4), what).toBeLessThanOrEqual(1);
          expect(maxRelErr(r.k.got, r.k.want, 1e-5, 1e-5), `${what}: rotated k written back`).toBeLessThanOrEqual(1);
          expect(r.untouched.got, `${what}: q and v heads untouched`).toEqual(r.untouched.want);
          expect(maxRelErr(r.alpha.got, r.alpha.want, 1e-3, 1e-5), `${what}: decisions`).toBeLessThanOrEqual(1);
        }
      }
    });
  }
});
