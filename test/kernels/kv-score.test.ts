/**
 * kv_score.wgsl (tova, h2o) on a stream built by hand, against its CPU reference (worker/reference/kv-score.ts):
 * the attention weights of the step's queries over the resident keys and the step's own keys (with the
 * softmax stats the merge keeps, computed here on the CPU), as the resident tokens' new scores (tova:
 * replaced, from the last row; h2o: added, from every row) and the step tokens' scores left for the
 * commit; K in f16 and f32. The kernel also runs in every tova/h2o cache test (test/kv/policies.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { kvScore } from '../../worker/kernels/kv-score';
import { scratchLayout } from '../../worker/kv/layout';
import { attentionWeights } from '../../worker/reference/attention';
import { storeKv } from '../../worker/reference/kv-commit';
import { kvDtypeProblem } from '../../worker/model/dtype';
import { keyScore } from '../../worker/reference/kv-score';
import { maxRelErr, randn, testGpu } from '../gpu';
import { DTYPES } from '../kv/harness';
import { buildStream, readStream, somePositions } from './kv-stream';
import { withBuffers } from './ops';

const maxStep = 8;

const CASES = [
  { policy: 'tova', hq: 4, hkv: 2, d: 32, T: 1, cap: 20 },
  { policy: 'tova', hq: 8, hkv: 2, d: 64, T: 6, cap: 90 },
  { policy: 'h2o', hq: 4, hkv: 4, d: 16, T: 1, cap: 12 },
  { policy: 'h2o', hq: 6, hkv: 3, d: 40, T: 5, cap: 70 },
] as const;

describe.each(DTYPES)('kv_score, K in %s', (dtype) => {
  for (const [i, c] of CASES.entries()) {
    if (kvDtypeProblem(c.d, dtype)) continue; // q4: head dims that are multiples of 32
    it(`${c.policy}: Hq ${c.hq} Hkv ${c.hkv} d ${c.d}, ${c.T} row(s) over up to ${c.cap} resident keys`, async () => {
      const gpu = await testGpu();
      await withBuffers(gpu, async (t) => {
        const { hq, hkv, d, T, cap } = c;
        const pos0 = cap + 10, stride = (hq + 2 * hkv) * d, g = hq / hkv;
        const slots = Array.from({ length: hkv }, (_, h) => somePositions(cap - 2 * h, pos0, 10 * i + h));
        const scores = slots.map((s, h) => Array.from(randn(s.length, 20 * i + h)).map(Math.abs));
        const s = buildStream(t, { hkv, d, cap, policy: c.policy, window: 0, dtype, pos0, slots, scores, seed: 30 + i });
        const qkvData = randn(T * stride, 40 + i, 2);
        // Keys: the slots, then the step's keys (rounded as the cache stores them); queries as they are.
        const nk = cap + T;
        const keys = new Float32Array(nk * hkv * d);
        for (let h = 0; h < hkv; h++) {
          for (let k = 0; k < cap; k++) keys.set(s.keys.subarray((h * cap + k) * d, (h * cap + k + 1) * d), (k * hkv + h) * d);
          for (let r = 0; r < T; r++) keys.set(storeKv(qkvData.slice(r * stride + (hq + h) * d, r * stride + (hq + h + 1) * d), dtype, d), ((cap + r) * hkv + h) * d);
        }
        const q = new Float32Array(T * hq * d);
        for (let r = 0; r < T; r++) q.set(qkvData.subarray(r * stride, r * stride + hq * d), r * hq * d);
        const visible = (r: number, k: number, h: number) => (k < cap ? k < slots[h].length : k - cap <= r);
        const weights = attentionWeights(q, keys, { rows: T, nk, hq, hkv, d }, visible);
        // The softmax stats (max, sum) of every (row, query head), as the merge keeps them for this kernel.
        const sc = scratchLayout(hq, hkv, d, maxStep, true);
        const scratch = new Float32Array(sc.words).fill(NaN);
        for (let r = 0; r < T; r++) {
          for (let head = 0; head < hq; head++) {
            const h = Math.floor(head / g);
            const logits: number[] = [];
            for (let k = 0; k < nk; k++) {
              if (!visible(r, k, h)) continue;
              let dot = 0;
              for (let e = 0; e < d; e++) dot += q[(r * hq + head) * d + e] * keys[(k * hkv + h) * d + e];
              logits.push(dot / Math.sqrt(d));
            }
            const m = Math.max(...logits);
            scratch[sc.statOff + (r * hq + head) * 2] = m;
            scratch[sc.statOff + (r * hq + head) * 2 + 1] = logits.reduce((a, x) => a + Math.exp(x - m), 0);
          }
        }
        const bs = t.output(sc.words, scratch);
        const rowStart = c.policy === 'tova' ? T - 1 : 0, accumulate = c.policy === 'h2o';
        t.run((enc) => kvScore(enc, {
          T, rowBase: 0, hq, hkv, d, cap, scoreOff: s.st.scoreOff, statOff: sc.statOff, destOff: sc.destOff, rowStart, accumulate, maxStep, keysUpper: cap + T, dtype,
        }, { qkv: t.input(qkvData), k: s.k, state: s.state, scratch: bs }));

        const got = await readStream(t, s), after = await t.read(bs, 'scratch');
        const shape = { rows: T, hq, hkv, nk };
        for (let h = 0; h < hkv; h++) {
          const resident = slots[h].map((p) => got.heads[h].get(p)!.score);
          const want = slots[h].map((_, k) => keyScore(weights, shape, h, k, rowStart) + (accumulate ? Math.fround(scores[h][k]) : 0));
          expect(maxRelErr(resident, want, 1e-6, 1e-4), `head ${h}: resident scores`).toBeLessThanOrEqual(1);
          const step = after.subarray(sc.destOff + hkv * maxStep + h * maxStep, sc.destOff + hkv * maxStep + h * maxStep + T);
          const wantStep = Array.from({ length: T }, (_, r) => keyScore(weights, shape, h, cap + r, rowStart));
          expect(maxRelErr(step, wantStep, 1e-6, 1e-4), `head ${h}: step scores`).toBeLessThanOrEqual(1);
        }
        // Only the scores change: lengths and positions are the commit's.
        expect(got.len).toEqual(slots.map((x) => x.length));
        for (let h = 0; h < hkv; h++) expect([...got.heads[h].keys()]).toEqual(slots[h]);
      });
    });
  }
});
