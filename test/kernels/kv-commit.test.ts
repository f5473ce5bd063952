/**
 * kv_commit.wgsl on streams built by hand, against its CPU reference (worker/reference/kv-commit.ts): the
 * merge of key-split partials made on the CPU (empty splits included, with and without the softmax stats
 * kept); the commit of a step's tokens under every policy (DMS marks and delayed eviction, the budget
 * fallback, StreamingLLM sinks, tova/h2o scores), K/V in f16 and f32: which positions stay, their marks,
 * scores and stored K/V, the ring, seen, the counters; and the reset and fork bookkeeping. The kernel also
 * runs in every cache test (test/kv/*).
 */
import { describe, expect, it } from 'vitest';
import { COMMIT, FORKED, kvCommit, NO_CARRY, POLICY_CODE, RESET, type CommitArgs } from '../../worker/kernels/kv-commit';
import { partialStatsOffset } from '../../worker/kernels/attention';
import { COUNTERS, scratchLayout, scoredPolicy } from '../../worker/kv/layout';
import type { KvDtype, KvPolicyName } from '../../worker/model/types';
import { insertToken, mergePartials, storeKv, type CommitRule } from '../../worker/reference/kv-commit';
import { maxRelErr, randn, testGpu } from '../gpu';
import { DTYPES } from '../kv/harness';
import { buildStream, readStream, somePositions, type Stream, type StreamSpec } from './kv-stream';
import { withBuffers, type OpBuffers } from './ops';

const hq = 4, hkv = 2, d = 32, maxStep = 8;
const stride = (hq + 2 * hkv) * d;

/** The buffers kv_commit binds that a case does not use (writable ones may not alias). */
function spare(t: OpBuffers) {
  return { qkv: t.input(new Float32Array(4)), alpha: t.input(new Float32Array(4)), k: t.output(4), v: t.output(4), out: t.output(4) };
}

describe('kv_commit: merge', () => {
  for (const [T, nsplit, stats] of [[1, 1, false], [3, 5, true], [2, 256, true], [5, 3, false]] as const) {
    it(`${T} row(s), ${nsplit} split(s), ${stats ? 'keeping' : 'without'} the softmax stats`, async () => {
      const gpu = await testGpu();
      await withBuffers(gpu, async (t) => {
        const n = T * hq * nsplit;
        const acc = randn(n * d, T * 10 + nsplit, 3);
        const ml = new Float32Array(n * 2);
        const m = randn(n, nsplit + 1, 5), l = randn(n, nsplit + 2);
        for (let i = 0; i < n; i++) {
          // Every third split is empty (m = -3e38, l = 0), as attention leaves a split past the keys.
          const empty = nsplit > 1 && (i % nsplit) % 3 === 2;
          ml[2 * i] = empty ? -3e38 : m[i];
          ml[2 * i + 1] = empty ? 0 : 1 + Math.abs(l[i]) * 3;
        }
        const mlOff = partialStatsOffset(T, hq, d, nsplit);
        const statOff = mlOff + 2 * n;
        const scratch = new Float32Array(statOff + 2 * T * hq).fill(NaN);
        scratch.set(acc);
        scratch.set(ml, mlOff);
        const bs = t.output(scratch.length, scratch);
        const out = t.output(T * hq * d);
        const state = t.output(8, new Uint32Array(8)), counters = t.output(COUNTERS, new Uint32Array(COUNTERS));
        t.run((enc) => kvCommit(enc, { T, rowBase: 0, hq, hkv, d, dtype: 'f32' }, null, { nsplit, mlOff, statOff: stats ? statOff : -1 }, { ...spare(t), out, scratch: bs, state, counters }));
        const want = mergePartials(acc, ml, T, hq, d, nsplit);
        expect(maxRelErr(await t.read(out), want.out, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
        const after = await t.read(bs, 'scratch');
        const kept = after.subarray(statOff);
        if (stats) expect(maxRelErr(kept, want.stats, 1e-6, 1e-5)).toBeLessThanOrEqual(1);
        else expect(Array.from(kept).every(Number.isNaN)).toBe(true);
        // Merge only: the stream and the counters are not touched.
        expect(Array.from(await t.words(state))).toEqual(Array(8).fill(0));
        expect(Array.from(await t.words(counters))).toEqual(Array(COUNTERS).fill(0));
      });
    });
  }
});

interface CommitCase {
  policy: KvPolicyName;
  T: number;
  cap: number;
  pos0: number;
  /** Tokens resident per head before the step (one fewer in head 1). */
  len: number;
  /** DMS: random marks on the window's tokens (default); false: none. */
  marks?: boolean;
  note: string;
}

const W = 4;

const CASES: CommitCase[] = [
  { policy: 'full', T: 6, cap: 48, pos0: 40, len: 40, note: 'appends' },
  { policy: 'full', T: 1, cap: 48, pos0: 40, len: 40, note: 'appends one (a decode step counts its reads)' },
  { policy: 'dms', T: 6, cap: 16, pos0: 40, len: 12, note: 'marks and delayed eviction' },
  { policy: 'dms', T: 6, cap: 16, pos0: 40, len: 16, marks: false, note: 'the budget fallback evicts the oldest kept token' },
  { policy: 'dms', T: 1, cap: 16, pos0: 40, len: 16, note: 'a full stream, one token' },
  { policy: 'window', T: 6, cap: 12, pos0: 40, len: 12, note: 'sinks kept' },
  { policy: 'tova', T: 6, cap: 12, pos0: 40, len: 12, note: 'lowest score evicted' },
  { policy: 'h2o', T: 6, cap: 12, pos0: 40, len: 12, note: 'lowest score outside the recent half evicted' },
  { policy: 'h2o', T: 1, cap: 12, pos0: 40, len: 10, note: 'room for one' },
];

/** A realistic stream for the policy: DMS holds its whole window (marks at random, none on pos0 - 1), window its sinks and the newest tokens. */
function specFor(c: CommitCase, dtype: KvDtype, seed: number): StreamSpec {
  const slots: number[][] = [], marked: boolean[][] = [], scores: number[][] = [];
  for (let h = 0; h < hkv; h++) {
    const len = c.len - h;
    let must: number[] = [];
    if (c.policy === 'dms') must = Array.from({ length: W + 1 }, (_, i) => c.pos0 - 1 - i);
    if (c.policy === 'window') must = [0, 1, 2, 3, ...Array.from({ length: len - 4 }, (_, i) => c.pos0 - 1 - i)];
    slots.push(somePositions(len, c.pos0, seed + h, must));
    const m = randn(len, seed + 20 + h), sc = randn(len, seed + 30 + h);
    marked.push(slots[h].map((p, s) => c.policy === 'dms' && c.marks !== false && p >= c.pos0 - W - 1 && p !== c.pos0 - 1 && m[s] > 0));
    scores.push(slots[h].map((_, s) => Math.abs(sc[s])));
  }
  return { hkv, d, cap: c.cap, policy: c.policy, window: c.policy === 'dms' ? W : 0, dtype, pos0: c.pos0, slots, marked, scores: scoredPolicy(c.policy) ? scores : undefined, seed };
}

describe.each(DTYPES)('kv_commit: commit, K/V in %s', (dtype) => {
  for (const [i, c] of CASES.entries()) {
    it(`${c.policy}, ${c.T} token(s) into ${c.len} of ${c.cap} slots: ${c.note}`, async () => {
      const gpu = await testGpu();
      await withBuffers(gpu, async (t) => {
        const spec = specFor(c, dtype, 100 + i);
        const s: Stream = buildStream(t, spec);
        const sc = scratchLayout(hq, hkv, d, maxStep, scoredPolicy(c.policy));
        const qkvData = randn(c.T * stride, 300 + i, 2);
        const alphaData = randn(c.T * hkv, 400 + i);
        const stepScores = randn(hkv * maxStep, 500 + i).map(Math.abs);
        const scratch = new Float32Array(sc.words).fill(NaN);
        // tova/h2o: the step tokens' scores, which kv_score.wgsl leaves after dest.
        if (scoredPolicy(c.policy)) scratch.set(stepScores, sc.destOff + hkv * maxStep);
        const bs = t.output(sc.words, scratch);
        const before = spec.slots.reduce((n, x) => n + x.length, 0);
        const counters = t.output(COUNTERS, new Uint32Array([before, before, 0, 0, 0, 0, 0, 0]));
        const rule: CommitRule = { policy: c.policy, capacity: c.cap, window: W, sink: c.policy === 'window' ? Math.min(4, c.cap - 1) : 0, recent: c.policy === 'h2o' ? Math.max(1, Math.floor(c.cap / 2)) : 0 };
        const args: CommitArgs = {
          mode: COMMIT, cap: c.cap, w: spec.window, seenOff: s.st.seenOff, posOff: s.st.posOff, ringOff: s.st.ringOff, carryOff: NO_CARRY, scoreOff: s.st.scoreOff,
          destOff: sc.destOff, policy: POLICY_CODE[c.policy], maxStep, sink: rule.sink!, recent: rule.recent!,
        };
        t.run((enc) => kvCommit(enc, { T: c.T, rowBase: 0, hq, hkv, d, dtype }, args, null, {
          scratch: bs, out: t.output(4), qkv: t.input(qkvData), alpha: t.input(alphaData), k: s.k, v: s.v, state: s.state, counters,
        }));

        // The reference: the same insertions on the sets of positions.
        let budget = 0, policy = 0, reads = 0, after = 0;
        const got = await readStream(t, s);
        for (let h = 0; h < hkv; h++) {
          const resident = new Set(spec.slots[h]);
          const marked = new Set(spec.slots[h].filter((_, k) => spec.marked![h][k]));
          const score = new Map(spec.slots[h].map((p, k) => [p, spec.scores?.[h][k] ?? 0]));
          for (let r = 0; r < c.T; r++) {
            const tok = c.pos0 + r;
            // DMS: this token's decision marks the token before it (shift by one).
            if (c.policy === 'dms' && resident.has(tok - 1) && alphaData[r * hkv + h] > 0) marked.add(tok - 1);
            const how = insertToken(resident, tok, rule, (p) => marked.has(p), (p) => score.get(p)!);
            if (how === 'evicted') c.policy === 'dms' ? budget++ : policy++;
            score.set(tok, stepScores[h * maxStep + r]);
          }
          if (c.T === 1) reads += spec.slots[h].length + 1;
          after += resident.size;
          const where = `head ${h}`;
          expect(got.len[h], where).toBe(resident.size);
          expect(got.seen[h], where).toBe(c.pos0 + c.T);
          expect([...got.heads[h].keys()].sort((a, b) => a - b), where).toEqual([...resident].sort((a, b) => a - b));
          for (const [pos, e] of got.heads[h]) {
            const at = `${where} position ${pos}`;
            expect(e.marked, at).toBe(marked.has(pos));
            if (scoredPolicy(c.policy)) expect(e.score, at).toBe(Math.fround(score.get(pos)!));
            if (pos >= c.pos0) {
              const o = (pos - c.pos0) * stride + (hq + h) * d;
              expect(Array.from(e.k), at).toEqual(Array.from(storeKv(qkvData.slice(o, o + d), dtype, d)));
              expect(Array.from(e.v), at).toEqual(Array.from(storeKv(qkvData.slice(o + hkv * d, o + hkv * d + d), dtype, d)));
              // The ring holds the slots of the last w+1 tokens.
              if (c.policy === 'dms' && pos >= c.pos0 + c.T - W - 1) expect(got.words[s.st.ringOff + h * (W + 1) + (pos % (W + 1))], `${at}: ring`).toBe(e.slot);
            } else {
              // An older token keeps its slot and what the slot held.
              const slot = spec.slots[h].indexOf(pos);
              expect(e.slot, at).toBe(slot);
              expect(Array.from(e.k), at).toEqual(Array.from(s.keys.subarray((h * c.cap + slot) * d, (h * c.cap + slot + 1) * d)));
              expect(Array.from(e.v), at).toEqual(Array.from(s.values.subarray((h * c.cap + slot) * d, (h * c.cap + slot + 1) * d)));
            }
          }
        }
        const n = await t.words(counters, 'counters');
        expect(Array.from(n.subarray(0, 6))).toEqual([after, after, reads, 0, budget, policy]);
      });
    });
  }
});

describe.each(DTYPES)('kv_commit: reset and fork bookkeeping, K/V in %s', (dtype) => {
  it('reset empties the stream and takes its tokens off the resident count; forked adds them (and the peak)', async () => {
    const gpu = await testGpu();
    await withBuffers(gpu, async (t) => {
      const c: CommitCase = { policy: 'full', T: 1, cap: 16, pos0: 12, len: 12, note: '' };
      const spec = specFor(c, dtype, 7);
      const sc = scratchLayout(hq, hkv, d, maxStep, false);
      const run = async (mode: number, counts: number[]) => {
        const s = buildStream(t, spec);
        const counters = t.output(COUNTERS, new Uint32Array([...counts, 0, 0, 0, 0, 0, 0]));
        const args: CommitArgs = { mode, cap: c.cap, w: 0, seenOff: s.st.seenOff, posOff: s.st.posOff, ringOff: s.st.ringOff, carryOff: NO_CARRY, scoreOff: s.st.scoreOff, destOff: sc.destOff, policy: POLICY_CODE.full, maxStep, sink: 0, recent: 0 };
        t.run((enc) => kvCommit(enc, { T: 1, rowBase: 0, hq, hkv, d, dtype }, args, null, { ...spare(t), scratch: t.output(sc.words), state: s.state, counters }));
        return { stream: await readStream(t, s), counters: Array.from((await t.words(counters)).subarray(0, 2)) };
      };
      const total = 12 + 11;
      const reset = await run(RESET, [total + 5, total + 9]);
      expect(reset.stream.len).toEqual([0, 0]);
      expect(reset.stream.seen).toEqual([0, 0]);
      expect(reset.counters).toEqual([5, total + 9]);
      const forked = await run(FORKED, [total, total]);
      expect(forked.stream.len).toEqual([12, 11]);
      expect(forked.stream.seen).toEqual([12, 12]);
      expect(forked.counters).toEqual([2 * total, 2 * total]);
    });
  });
});
