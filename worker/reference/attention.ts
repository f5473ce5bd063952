/**
 * CPU reference of kernels/attention: dense attention with an arbitrary visibility mask, in f64.
 * q: [rows][hq][d]; keys, values: [nk][hkv][d]; visible(row, key, kvHead) says whether the query of
 * `row` may see key `key` (for KV head kvHead; query head qh uses KV head floor(qh / g)).
 * Returns out [rows][hq][d] = softmax(q k^T / sqrt(d)) v over the visible keys (zeros if none).
 */
export function attentionRef(
  q: ArrayLike<number>,
  keys: ArrayLike<number>,
  values: ArrayLike<number>,
  shape: { rows: number; nk: number; hq: number; hkv: number; d: number },
  visible: (row: number, key: number, kvHead: number) => boolean,
): Float32Array {
  const { rows, nk, hq, hkv, d } = shape;
  const g = hq / hkv;
  const scale = 1 / Math.sqrt(d);
  const out = new Float32Array(rows * hq * d);
  const s = new Float64Array(nk);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < hq; h++) {
      const kh = Math.floor(h / g);
      const qo = (r * hq + h) * d;
      let mx = -Infinity;
      for (let j = 0; j < nk; j++) {
        if (!visible(r, j, kh)) { s[j] = -Infinity; continue; }
        const ko = (j * hkv + kh) * d;
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[qo + c] * keys[ko + c];
        s[j] = dot * scale;
        mx = Math.max(mx, s[j]);
      }
      if (mx === -Infinity) continue;
      let l = 0;
      const acc = new Float64Array(d);
      for (let j = 0; j < nk; j++) {
        if (s[j] === -Infinity) continue;
        const p = Math.exp(s[j] - mx);
        l += p;
        const vo = (j * hkv + kh) * d;
        for (let c = 0; c < d; c++) acc[c] += p * values[vo + c];
      }
      for (let c = 0; c < d; c++) out[qo + c] = acc[c] / l;
    }
  }
  return out;
}

/** Causal visibility for keys at positions keyPos and queries at positions queryPos. */
export function causal(queryPos: (row: number) => number, keyPos: (key: number) => number) {
  return (row: number, key: number): boolean => keyPos(key) <= queryPos(row);
}

/**
 * Softmax weights of the same attention: [rows][hq][nk], zero for invisible keys (f64). Used by the
 * references of the score-based eviction policies (tova, h2o).
 */
export function attentionWeights(
  q: ArrayLike<number>,
  keys: ArrayLike<number>,
  shape: { rows: number; nk: number; hq: number; hkv: number; d: number },
  visible: (row: number, key: number, kvHead: number) => boolean,
): Float64Array {
  const { rows, nk, hq, hkv, d } = shape;
  const g = hq / hkv;
  const scale = 1 / Math.sqrt(d);
  const out = new Float64Array(rows * hq * nk);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < hq; h++) {
      const kh = Math.floor(h / g);
      const qo = (r * hq + h) * d;
      const o = (r * hq + h) * nk;
      let mx = -Infinity;
      for (let j = 0; j < nk; j++) {
        if (!visible(r, j, kh)) { out[o + j] = -Infinity; continue; }
        const ko = (j * hkv + kh) * d;
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[qo + c] * keys[ko + c];
        out[o + j] = dot * scale;
        mx = Math.max(mx, out[o + j]);
      }
      let l = 0;
      for (let j = 0; j < nk; j++) {
        out[o + j] = out[o + j] === -Infinity ? 0 : Math.exp(out[o + j] - mx);
        l += out[o + j];
      }
      for (let j = 0; j < nk; j++) out[o + j] /= l;
    }
  }
  return out;
}
