/**
 * CPU reference of the KV cache (docs/kv-cache.md, ../shared/DMS.md sections 2-3), composed of the
 * references of its kernels as the cache composes the kernels: attention (./attention.ts), the eviction
 * scores (./kv-score.ts) and the commit (./kv-commit.ts).
 *
 * dmsVisible is the visibility rule, as a dense mask: query i sees key j <= i iff i - j <= w or the
 * decision that applies to key j (the one computed at token j+1, shift by one) is "keep".
 *
 * KvCacheRef simulates the cache token by token with plain sets of positions and dense attention
 * (no slots): per step, each row attends over the tokens resident before the step plus the step's
 * tokens up to itself, filtered by the visibility rule; then the step's tokens are inserted one by one
 * with the policy's eviction (insertToken). For DMS without budget pressure its attention equals the
 * dense mask. Scores (keyScore): tova, the attention weight from the query of the segment's last row in
 * this step, averaged over the g query heads of the group (every resident score is refreshed each step);
 * h2o, the attention weight accumulated over every query row so far.
 *
 * Storage: with dtype 'f16' (the GPU cache's default) every key and value is rounded to f16 as it enters
 * (roundF16), with 'q8' / 'q4' quantized and back (worker/kv/quant.ts), so attention and the eviction
 * scores see the stored numbers from the step they arrive in on, as the GPU does; 'f32' keeps them exact.
 */
import { DEFAULT_KV_DTYPE } from '../model/dtype';
import type { KvDtype } from '../model/types';
import { attentionRef, attentionWeights } from './attention';
import { insertToken, storeKv, type CommitRule } from './kv-commit';
import { keyScore } from './kv-score';

/** DMS visibility of key j to query i (j <= i); alphaNext = decision logit computed at token j+1. */
export function dmsVisible(i: number, j: number, w: number, alphaNext: number | undefined): boolean {
  if (j > i) return false;
  if (i - j <= w) return true;
  return !(alphaNext !== undefined && alphaNext > 0);
}

export interface RefShape {
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/** The commit's rule (slots per (layer, seq, KV head), DMS window, sinks, recent tokens) and the storage. */
export interface RefOptions extends CommitRule {
  /** How K and V are stored (default 'f16', as the GPU cache). */
  dtype?: KvDtype;
}

interface SeqState {
  /** Per position: k, v [hkv][d] and alpha [hkv] (null without DMS). */
  k: Float32Array[];
  v: Float32Array[];
  alpha: (Float32Array | null)[];
  /** Resident positions per KV head. */
  resident: Set<number>[];
  /** Policy score per KV head and position (tova: last attention weight; h2o: accumulated). */
  score: Map<number, number>[];
}

export class KvCacheRef {
  budgetEvictions = 0;
  policyEvictions = 0;
  tokenReads = 0;
  peakResident = 0;
  private readonly layers: Map<number, SeqState>[];

  constructor(
    readonly shape: RefShape,
    readonly opts: RefOptions,
  ) {
    this.layers = Array.from({ length: shape.numLayers }, () => new Map());
  }

  private seqState(layer: number, seq: number): SeqState {
    let s = this.layers[layer].get(seq);
    if (!s) {
      const hkv = this.shape.numKvHeads;
      s = { k: [], v: [], alpha: [], resident: Array.from({ length: hkv }, () => new Set()), score: Array.from({ length: hkv }, () => new Map()) };
      this.layers[layer].set(seq, s);
    }
    return s;
  }

  /** Resident tokens summed over layers, sequences and KV heads. */
  resident(): number {
    let n = 0;
    for (const m of this.layers) for (const s of m.values()) for (const r of s.resident) n += r.size;
    return n;
  }

  residentPositions(layer: number, seq: number, kvHead: number): number[] {
    return [...this.seqState(layer, seq).resident[kvHead]].sort((a, b) => a - b);
  }

  /** Eviction score of a resident token (tova/h2o). */
  score(layer: number, seq: number, kvHead: number, pos: number): number | undefined {
    return this.seqState(layer, seq).score[kvHead].get(pos);
  }

  reset(seq: number): void {
    for (const m of this.layers) m.delete(seq);
  }

  fork(src: number, dst: number): void {
    for (const m of this.layers) {
      const s = m.get(src);
      if (!s) { m.delete(dst); continue; }
      m.set(dst, {
        k: [...s.k], v: [...s.v], alpha: [...s.alpha],
        resident: s.resident.map((r) => new Set(r)),
        score: s.score.map((r) => new Map(r)),
      });
    }
  }

  /** Is key j visible to query i under this policy (beyond residency)? */
  private ruleVisible(st: SeqState, i: number, j: number, h: number): boolean {
    if (j > i) return false;
    if (this.opts.policy !== 'dms') return true;
    const a = st.alpha[j + 1];
    return dmsVisible(i, j, this.opts.window!, a ? a[h] : undefined);
  }

  /**
   * One step of one segment in one layer. qkv: [T][(hq + 2 hkv) d] rows of this segment; alpha:
   * [T][hkv] or null. Returns out [T][hq * d].
   */
  step(layer: number, seq: number, pos0: number, T: number, qkv: Float32Array, alpha: Float32Array | null): Float32Array {
    const { numHeads: hq, numKvHeads: hkv, headDim: d } = this.shape;
    const stride = (hq + 2 * hkv) * d;
    const st = this.seqState(layer, seq);
    if (st.k.length !== pos0) throw new Error(`reference: sequence ${seq} is at ${st.k.length}, not ${pos0}`);
    const dtype = this.opts.dtype ?? DEFAULT_KV_DTYPE;
    for (let r = 0; r < T; r++) {
      st.k.push(storeKv(qkv.slice(r * stride + hq * d, r * stride + (hq + hkv) * d), dtype, d));
      st.v.push(storeKv(qkv.slice(r * stride + (hq + hkv) * d, (r + 1) * stride), dtype, d));
      st.alpha.push(alpha ? alpha.slice(r * hkv, (r + 1) * hkv) : null);
    }
    // Attention over (resident before the step) + step tokens, dense over all positions.
    const n = pos0 + T;
    const keys = new Float32Array(n * hkv * d);
    const values = new Float32Array(n * hkv * d);
    for (let j = 0; j < n; j++) { keys.set(st.k[j], j * hkv * d); values.set(st.v[j], j * hkv * d); }
    const q = new Float32Array(T * hq * d);
    for (let r = 0; r < T; r++) q.set(qkv.subarray(r * stride, r * stride + hq * d), r * hq * d);
    const before = st.resident.map((s) => new Set(s));
    const out = attentionRef(q, keys, values, { rows: T, nk: n, hq, hkv, d }, (r, j, h) =>
      (j >= pos0 || before[h].has(j)) && this.ruleVisible(st, pos0 + r, j, h));
    if (T === 1) for (let h = 0; h < hkv; h++) this.tokenReads += before[h].size + 1;
    if (this.opts.policy === 'tova' || this.opts.policy === 'h2o') {
      const wts = attentionWeights(q, keys, { rows: T, nk: n, hq, hkv, d }, (r, j, h) => (j >= pos0 || before[h].has(j)) && j <= pos0 + r);
      const r0 = this.opts.policy === 'tova' ? T - 1 : 0;
      for (let h = 0; h < hkv; h++) {
        for (const j of [...before[h], ...Array.from({ length: T }, (_, r) => pos0 + r)]) {
          const s = keyScore(wts, { rows: T, hq, hkv, nk: n }, h, j, r0);
          const old = this.opts.policy === 'h2o' && j < pos0 ? (st.score[h].get(j) ?? 0) : 0;
          st.score[h].set(j, old + s);
        }
      }
    }
    // Insert token by token.
    for (let h = 0; h < hkv; h++) {
      const res = st.resident[h];
      for (let t = pos0; t < pos0 + T; t++) this.insert(st, res, h, t);
    }
    this.peakResident = Math.max(this.peakResident, this.resident());
    return out;
  }

  private insert(st: SeqState, res: Set<number>, h: number, t: number): void {
    const how = insertToken(res, t, this.opts, (j) => (st.alpha[j + 1]?.[h] ?? 0) > 0, (j) => st.score[h].get(j)!);
    if (how !== 'evicted') return;
    if (this.opts.policy === 'dms') this.budgetEvictions++;
    else this.policyEvictions++;
  }
}
