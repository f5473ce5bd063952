/**
 * CPU reference of kernels/kv-commit (shaders/kv_commit.wgsl), slot-free: a stream is the set of positions
 * it holds. Its two roles:
 * - commit: `storeKv` is a key or value as the cache stores it (f16: rounded to the nearest half, ties to
 *   even, clamped to ±65504; q8 / q4: quantized per head vector and back, worker/kv/quant.ts; f32: as is), and `insertToken` the insertion of token t into a stream of
 *   `capacity` slots: DMS first gives t the slot of t-w-1 when that token is resident and marked (delayed
 *   eviction); otherwise t is appended while there is room, else a victim is evicted: the smallest
 *   (score, position) among the policy's eligible tokens:
 *     dms     kept tokens outside the window of t (pos < t - w)   [counted in budgetEvictions]
 *     window  every token but the `sink` first ones (StreamingLLM)
 *     tova    every token, by its score
 *     h2o     tokens outside the `recent` newest positions, by their score
 * - merge: `mergePartials` combines attention's key-split partials (flash-decoding) into the output.
 */
import { storeKvRows } from '../kv/quant';
import type { KvDtype, KvPolicyName } from '../model/types';

/**
 * K or V values (whole vectors of one or more KV heads of head dim d) as the cache stores them, rounded
 * in place: f16 to the nearest half, q8 / q4 quantized and back (worker/kv/quant.ts); f32 as is.
 */
export function storeKv(x: Float32Array, dtype: KvDtype, d: number): Float32Array {
  return storeKvRows(x, d, dtype);
}

/** What a stream's commit depends on: the policy and its sizes. */
export interface CommitRule {
  policy: KvPolicyName;
  /** Slots per stream. */
  capacity: number;
  /** DMS window w. */
  window?: number;
  /** 'window': sink tokens. */
  sink?: number;
  /** 'h2o': recent tokens protected. */
  recent?: number;
}

/**
 * Inserts token t into `resident` (in place). `marked(pos)`: the DMS mark of a resident token; `score(pos)`:
 * its tova/h2o score. Returns how: 'reused' (DMS delayed eviction of t-w-1), 'appended', or 'evicted' (a
 * victim by the policy's rule).
 */
export function insertToken(resident: Set<number>, t: number, rule: CommitRule, marked: (pos: number) => boolean, score: (pos: number) => number): 'reused' | 'appended' | 'evicted' {
  const { policy, capacity } = rule;
  if (policy === 'dms') {
    const c = t - rule.window! - 1;
    if (c >= 0 && resident.has(c) && marked(c)) {
      resident.delete(c);
      resident.add(t);
      return 'reused';
    }
  }
  if (resident.size < capacity) {
    resident.add(t);
    return 'appended';
  }
  let victim = -1;
  let best = Infinity;
  for (const j of [...resident].sort((a, b) => a - b)) {
    if (policy === 'dms' && !(j + rule.window! < t)) continue;
    if (policy === 'window' && j < (rule.sink ?? 0)) continue;
    if (policy === 'h2o' && !(j + rule.recent! <= t)) continue;
    const key = policy === 'tova' || policy === 'h2o' ? score(j) : 0;
    if (key < best) { best = key; victim = j; }
  }
  if (victim < 0) throw new Error(`reference: no victim for token ${t}`);
  resident.delete(victim);
  resident.add(t);
  return 'evicted';
}

/**
 * The merge of `nsplit` partials per (row, query head): acc [rows][hq][nsplit][d] (unnormalised sums of
 * e^(s - m_s) v), ml [rows][hq][nsplit][2] (m_s, l_s; an empty split has l_s = 0) into
 * out [rows][hq][d] = Σ_s acc_s e^(m_s - M) / Σ_s l_s e^(m_s - M), M = max_s m_s; also (M, L) per (row, head).
 */
export function mergePartials(acc: Float32Array, ml: Float32Array, rows: number, hq: number, d: number, nsplit: number): { out: Float32Array; stats: Float32Array } {
  const out = new Float32Array(rows * hq * d);
  const stats = new Float32Array(rows * hq * 2);
  for (let i = 0; i < rows * hq; i++) {
    let m = -Infinity;
    for (let s = 0; s < nsplit; s++) m = Math.max(m, ml[(i * nsplit + s) * 2]);
    let l = 0;
    const o = new Float64Array(d);
    for (let s = 0; s < nsplit; s++) {
      const e = Math.exp(ml[(i * nsplit + s) * 2] - m);
      l += ml[(i * nsplit + s) * 2 + 1] * e;
      for (let c = 0; c < d; c++) o[c] += acc[(i * nsplit + s) * d + c] * e;
    }
    for (let c = 0; c < d; c++) out[i * d + c] = o[c] / l;
    stats[i * 2] = m;
    stats[i * 2 + 1] = l;
  }
  return { out, stats };
}
