/**
 * CPU reference of the whole transformer (Qwen3 / Qwen2 / Llama), written as plainly as possible:
 * full causal attention, f32 everywhere, weights as Float32Arrays by Hugging Face tensor name.
 * DMS models: the borrowed q channel (c.dms.channel, default d-1) is zeroed before RoPE and, in NVIDIA's
 * convention, after it too (FastDMS's leaves the rotated value), and an optional visibility predicate
 * `visible(layer, kvHead, i, j)` restricts which keys query i sees.
 * `opts.kvDtype` 'f16' / 'q8' / 'q4' rounds every key (after norm and RoPE) and value as the engine's KV
 * cache stores them (worker/kv/quant.ts) before attention; the default 'f32' keeps them exact.
 */
import { storeKvRows } from '../kv/quant';
import type { KvDtype, ModelConfig } from '../model/types';

export type Tensors = (name: string) => Float32Array;
/** alpha: this layer's DMS decision logits f32 [T][Hkv] (null without DMS), computed before attention. */
export type Visibility = (layer: number, kvHead: number, query: number, key: number, alpha: Float32Array | null) => boolean;

/**
 * The DMS rule: query i sees key j iff i − j ≤ w or key j's decision keeps it. The decision is made at
 * token j+1 in NVIDIA's convention (the default), at token j itself in FastDMS's.
 */
export function dmsVisibility(window: number, numKvHeads: number, convention: 'nvidia' | 'fastdms' = 'nvidia'): Visibility {
  const shift = convention === 'fastdms' ? 0 : 1;
  return (_l, h, i, j, alpha) => i - j <= window || !alpha || !(alpha[(j + shift) * numKvHeads + h] > 0);
}

export interface ReferenceOutput {
  /** [T][vocab] */
  logits: Float32Array;
  /** [layer][T][kvHead] DMS decision logits (s·q[channel] − c) of each token's own query, when the model has DMS. */
  alpha: Float32Array[] | null;
}

export function referenceInvFreq(d: number, theta: number, scaling: ModelConfig['ropeScaling']): Float64Array {
  const inv = new Float64Array(d / 2);
  for (let i = 0; i < d / 2; i++) {
    let f = 1 / Math.pow(theta, (2 * i) / d);
    if (scaling) {
      const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: old } = scaling;
      const wavelen = (2 * Math.PI) / f;
      const lowWavelen = old / lowFreqFactor, highWavelen = old / highFreqFactor;
      if (wavelen > lowWavelen) f = f / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (old / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        f = (1 - smooth) * (f / factor) + smooth * f;
      }
    }
    inv[i] = f;
  }
  return inv;
}

function rmsnorm(x: Float32Array, off: number, n: number, w: Float32Array, eps: number, out: Float32Array, outOff: number): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[off + i] * x[off + i];
  const r = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) out[outOff + i] = x[off + i] * r * w[i];
}

/** y[t][r] = sum_c x[t][c] W[r][c] (+ b[r]) */
function matmul(x: Float32Array, T: number, W: Float32Array, rows: number, cols: number, b?: Float32Array): Float32Array {
  const y = new Float32Array(T * rows);
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < rows; r++) {
      let s = b ? b[r] : 0;
      const wo = r * cols, xo = t * cols;
      for (let c = 0; c < cols; c++) s += x[xo + c] * W[wo + c];
      y[t * rows + r] = s;
    }
  }
  return y;
}

function rope(v: Float32Array, off: number, d: number, pos: number, inv: Float64Array): void {
  const h = d / 2;
  for (let i = 0; i < h; i++) {
    const a = pos * inv[i], c = Math.cos(a), s = Math.sin(a);
    const x0 = v[off + i], x1 = v[off + i + h];
    v[off + i] = x0 * c - x1 * s;
    v[off + i + h] = x1 * c + x0 * s;
  }
}

export function referenceForward(c: ModelConfig, w: Tensors, ids: number[], visible?: Visibility, opts: { kvDtype?: KvDtype } = {}): ReferenceOutput {
  const T = ids.length, H = c.hiddenSize, d = c.headDim, Hq = c.numHeads, Hkv = c.numKvHeads, g = Hq / Hkv, F = c.intermediateSize;
  const inv = referenceInvFreq(d, c.ropeTheta, c.ropeScaling);
  const emb = w('model.embed_tokens.weight');
  const x = new Float32Array(T * H);
  ids.forEach((id, t) => x.set(emb.subarray(id * H, (id + 1) * H), t * H));
  const h = new Float32Array(T * H);
  const alpha: Float32Array[] | null = c.dms ? [] : null;
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    for (let t = 0; t < T; t++) rmsnorm(x, t * H, H, w(`${p}input_layernorm.weight`), c.rmsNormEps, h, t * H);
    const bias = (n: string) => (c.attentionBias ? w(`${p}self_attn.${n}_proj.bias`) : undefined);
    const q = matmul(h, T, w(`${p}self_attn.q_proj.weight`), Hq * d, H, bias('q'));
    const k = matmul(h, T, w(`${p}self_attn.k_proj.weight`), Hkv * d, H, bias('k'));
    const v = matmul(h, T, w(`${p}self_attn.v_proj.weight`), Hkv * d, H, bias('v'));
    const la = c.dms ? new Float32Array(T * Hkv) : null;
    for (let t = 0; t < T; t++) {
      for (let hh = 0; hh < Hq; hh++) {
        const o = (t * Hq + hh) * d;
        if (c.qkNorm) rmsnorm(q, o, d, w(`${p}self_attn.q_norm.weight`), c.rmsNormEps, q, o);
        const borrowed = c.dms && !c.dms.separateAlpha && hh % g === 0;
        const ch = c.dms?.channel ?? d - 1;
        if (borrowed && la && c.dms) {
          la[t * Hkv + hh / g] = c.dms.alphaScale * q[o + ch] - c.dms.alphaOffset;
          q[o + ch] = 0;
        }
        rope(q, o, d, t, inv);
        if (borrowed && c.dms?.convention !== 'fastdms') q[o + ch] = 0;
      }
      for (let hh = 0; hh < Hkv; hh++) {
        const o = (t * Hkv + hh) * d;
        if (c.qkNorm) rmsnorm(k, o, d, w(`${p}self_attn.k_norm.weight`), c.rmsNormEps, k, o);
        rope(k, o, d, t, inv);
      }
    }
    if (la && c.dms?.separateAlpha) {
      const an = new Float32Array(T * H);
      for (let t = 0; t < T; t++) rmsnorm(x, t * H, H, w(`${p}self_attn.dms_proj_alpha_norm.weight`), c.rmsNormEps, an, t * H);
      la.set(matmul(an, T, w(`${p}self_attn.dms_proj_alpha.weight`), Hkv, H));
    }
    if (alpha && la) alpha.push(la);
    if (opts.kvDtype && opts.kvDtype !== 'f32') {
      storeKvRows(k, d, opts.kvDtype);
      storeKvRows(v, d, opts.kvDtype);
    }
    const att = new Float32Array(T * Hq * d);
    const scale = 1 / Math.sqrt(d);
    for (let t = 0; t < T; t++) {
      for (let hh = 0; hh < Hq; hh++) {
        const kh = Math.floor(hh / g);
        const scores = new Float64Array(t + 1).fill(-Infinity);
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          if (visible && !visible(l, kh, t, j, la)) continue;
          let s = 0;
          for (let e = 0; e < d; e++) s += q[(t * Hq + hh) * d + e] * k[(j * Hkv + kh) * d + e];
          scores[j] = s * scale;
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) sum += scores[j] === -Infinity ? 0 : Math.exp(scores[j] - max);
        for (let j = 0; j <= t; j++) {
          if (scores[j] === -Infinity) continue;
          const pj = Math.exp(scores[j] - max) / sum;
          for (let e = 0; e < d; e++) att[(t * Hq + hh) * d + e] += pj * v[(j * Hkv + kh) * d + e];
        }
      }
    }
    const o = matmul(att, T, w(`${p}self_attn.o_proj.weight`), H, Hq * d);
    for (let i = 0; i < x.length; i++) x[i] += o[i];
    for (let t = 0; t < T; t++) rmsnorm(x, t * H, H, w(`${p}post_attention_layernorm.weight`), c.rmsNormEps, h, t * H);
    const gate = matmul(h, T, w(`${p}mlp.gate_proj.weight`), F, H);
    const up = matmul(h, T, w(`${p}mlp.up_proj.weight`), F, H);
    for (let i = 0; i < gate.length; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
    const down = matmul(gate, T, w(`${p}mlp.down_proj.weight`), H, F);
    for (let i = 0; i < x.length; i++) x[i] += down[i];
  }
  for (let t = 0; t < T; t++) rmsnorm(x, t * H, H, w('model.norm.weight'), c.rmsNormEps, h, t * H);
  const head = c.tieWordEmbeddings ? emb : w('lm_head.weight');
  return { logits: matmul(h, T, head, c.vocabSize, H), alpha };
}
