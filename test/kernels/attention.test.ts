/**
 * The attention kernels (shaders/attention.wgsl, attention_decode.wgsl) on a KV stream built by hand, against
 * the CPU reference (worker/reference/attention.ts, with the DMS rule dmsVisible of worker/reference/kv-cache.ts):
 * resident tokens in shuffled slots and per-head lengths, DMS marks on resident and step keys (the previous
 * step's last token marked by the step's first decision), K/V in f16 and f32; the general kernel with its
 * output written directly and in key splits, the decode kernel's splits; partials merged on the CPU
 * (worker/reference/kv-commit.ts). The kernels also run in every cache test (test/kv/*).
 */
import { describe, expect, it } from 'vitest';
import { attention, attentionDecode, decodeLanes, NO_WINDOW } from '../../worker/kernels/attention';
import { NO_CARRY } from '../../worker/kernels/kv-commit';
import { partialFloats } from '../../worker/kv/layout';
import { attentionRef } from '../../worker/reference/attention';
import { dmsVisible } from '../../worker/reference/kv-cache';
import { mergePartials, storeKv } from '../../worker/reference/kv-commit';
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
