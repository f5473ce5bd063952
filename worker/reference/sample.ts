/**
 * CPU reference of kernels/sample, the same rule in f64:
 * - greedy (temperature <= 0 or topK == 1): the argmax, lowest index on ties;
 * - p_i = exp((l_i - max) / temperature);
 * - top-k (0 < topK < vocab): keep l_i >= the topK-th largest logit (all ties with it kept);
 * - top-p (topP < 1): among those, keep l_i >= v for the largest logit value v whose tokens >= v hold at least
 *   max(topP, 0) of the kept mass (and some mass): the fewest highest logits reaching topP, ties kept;
 * - the first kept token (in index order) whose cumulative mass exceeds u * (kept mass); if rounding leaves
 *   none, the last kept token with mass.
 */
export interface SampleRefOptions {
  temperature: number;
  topK: number;
  topP: number;
  u: number;
}

export function argmaxRef(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** The kept threshold: tokens with l_i >= threshold take part (-Infinity when all do). */
export function sampleThreshold(logits: ArrayLike<number>, o: SampleRefOptions): number {
  const V = logits.length;
  const m = logits[argmaxRef(logits)];
  const desc = Float64Array.from(logits).sort().reverse();
  let t = -Infinity;
  if (o.topK > 0 && o.topK < V) t = desc[Math.floor(o.topK) - 1];
  if (o.topP < 1) {
    let massK = 0;
    for (let i = 0; i < V; i++) if (logits[i] >= t) massK += Math.exp((logits[i] - m) / o.temperature);
    const target = Math.max(o.topP, 0) * massK;
    let cum = 0;
    for (let j = 0; j < V && desc[j] >= t; ) {
      const v = desc[j];
      for (; j < V && desc[j] === v; j++) cum += Math.exp((v - m) / o.temperature);
      if (cum >= target && cum > 0) {
        t = v;
        break;
      }
    }
  }
  return t;
}

export function sampleRef(logits: ArrayLike<number>, o: SampleRefOptions): number {
  if (!(o.temperature > 0) || o.topK === 1) return argmaxRef(logits);
  const V = logits.length;
  const m = logits[argmaxRef(logits)];
  const t = sampleThreshold(logits, o);
  const p = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) if (logits[i] >= t) total += p[i] = Math.exp((logits[i] - m) / o.temperature);
  const target = Math.min(Math.max(o.u, 0), 1) * total;
  let cum = 0, last = -1;
  for (let i = 0; i < V; i++) {
    if (p[i] > 0) {
      cum += p[i];
      if (cum > target) return i;
      last = i;
    }
  }
  return last;
}
