/** CPU reference of kernels/qk-norm-rope, step by step in f64 (the RoPE angle is the f32 product, as on the GPU). */
export interface QkNormRopeRefArgs {
  rows: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  eps: number;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  /** channel: the borrowed q channel (default d-1); zeroAfter: zero it again after RoPE (default true, NVIDIA). */
  dms: { scale: number; offset: number; channel?: number; zeroAfter?: boolean } | null;
}

/** Returns the new qkv and, with `a.dms`, alpha f32[rows][numKvHeads] (else null). */
export function qkNormRopeRef(qkv: Float32Array, positions: Uint32Array, invFreq: Float32Array, a: QkNormRopeRefArgs): { qkv: Float32Array; alpha: Float32Array | null } {
  const { rows, numHeads: hq, numKvHeads: hkv, headDim: d, eps } = a;
  const g = hq / hkv, half = d / 2, stride = (hq + 2 * hkv) * d;
  const out = Float32Array.from(qkv);
  const alpha = a.dms ? new Float32Array(rows * hkv) : null;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < hq + hkv; h++) {
      const isQ = h < hq;
      const base = r * stride + h * d;
      const x = Array.from(qkv.subarray(base, base + d));
      const w = isQ ? a.qNorm : a.kNorm;
      if (w) {
        const ms = x.reduce((s, v) => s + v * v, 0) / d;
        const inv = 1 / Math.sqrt(ms + eps);
        for (let i = 0; i < d; i++) x[i] = x[i] * inv * w[i];
      }
      const dmsHead = !!a.dms && isQ && h % g === 0;
      const ch = a.dms?.channel ?? d - 1;
      if (dmsHead) {
        alpha![r * hkv + h / g] = a.dms!.scale * x[ch] - a.dms!.offset;
        x[ch] = 0;
      }
      const y = new Array<number>(d);
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(positions[r] * invFreq[i]);
        const c = Math.cos(angle), s = Math.sin(angle);
        y[i] = x[i] * c - x[i + half] * s;
        y[i + half] = x[i + half] * c + x[i] * s;
      }
      if (dmsHead && a.dms!.zeroAfter !== false) y[ch] = 0;
      for (let i = 0; i < d; i++) out[base + i] = y[i];
    }
  }
  return { qkv: out, alpha };
}
