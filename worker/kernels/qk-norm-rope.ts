import source from '../../shaders/qk_norm_rope.wgsl';
import type { Gpu } from '../gpu/context';
import { params, type Encoder } from '../gpu/encoder';
import { include, specialize } from '../gpu/wgsl';

/** Tests set `allowSubgroups = false` to exercise the workgroup-memory reduction on adapters with subgroups. */
export const qkNormRopeTuning = { allowSubgroups: true };

export interface QkNormRopeArgs {
  rows: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  eps: number;
  /** Per-head RMSNorm weights f32[headDim] of q and of k (Qwen3), or null for none. */
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  /**
   * DMS decision read from the borrowed channel (default d-1) of the first q head of each group:
   * alpha = scale * q[channel] - offset. `zeroAfter` (default true, NVIDIA's convention) zeroes the channel
   * again after RoPE; false (FastDMS) zeroes it before RoPE only.
   */
  dms: { scale: number; offset: number; channel?: number; zeroAfter?: boolean } | null;
}

const MAX_HEAD_DIM = 512;
const FLAG_Q_NORM = 1, FLAG_K_NORM = 2, FLAG_DMS = 4, FLAG_DMS_ZERO_AFTER = 8;

/** A 16-byte buffer bound in place of an absent alpha (every declared binding must be bound). */
const dummies = new WeakMap<Gpu, GPUBuffer>();
function dummy(gpu: Gpu): GPUBuffer {
  let b = dummies.get(gpu);
  if (!b) dummies.set(gpu, (b = gpu.buffer('qk-norm-rope:unused-alpha', 16)));
  return b;
}

/**
 * In place on qkv f32[rows][(numHeads + 2 numKvHeads) * headDim] (q heads, k heads, v heads; v untouched):
 * for every q and k head, optional RMSNorm (qNorm/kNorm), then rotate-half RoPE at positions[row] (u32[rows])
 * with invFreq f32[headDim/2]. With `a.dms` (then `alpha` f32[rows][numKvHeads] is required), the first q head
 * h of each GQA group gives alpha[row * numKvHeads + h / g] = scale * x[c] - offset (c = a.dms.channel, default d-1)
 * after the norm and before RoPE, and its channel c is zeroed before the rotation and (unless zeroAfter is false)
 * after it. Without `a.dms`, `alpha` is not touched.
 */
export function qkNormRope(enc: Encoder, qkv: GPUBuffer, positions: GPUBuffer, invFreq: GPUBuffer, alpha: GPUBuffer | null, a: QkNormRopeArgs): void {
  const { rows, numHeads, numKvHeads, headDim } = a;
  if (numKvHeads <= 0 || numHeads % numKvHeads) throw new Error(`qkNormRope: ${numHeads} q heads are not a multiple of ${numKvHeads} KV heads`);
  if (headDim % 2 || headDim <= 0 || headDim > MAX_HEAD_DIM) throw new Error(`qkNormRope: head dim ${headDim} must be even and at most ${MAX_HEAD_DIM}`);
  if (a.dms && !alpha) throw new Error('qkNormRope: DMS needs an alpha buffer');
  const channel = a.dms?.channel ?? headDim - 1;
  if (!Number.isInteger(channel) || channel < 0 || channel >= headDim) throw new Error(`qkNormRope: DMS channel ${channel} is outside the head of ${headDim}`);
  if (rows <= 0) return;
  const subgroups = enc.gpu.caps.subgroups && qkNormRopeTuning.allowSubgroups;
  const pipeline = enc.gpu.pipeline(subgroups ? 'qk_norm_rope sg' : 'qk_norm_rope', specialize(include(source), { SUBGROUPS: subgroups }));
  const flags = (a.qNorm ? FLAG_Q_NORM : 0) | (a.kNorm ? FLAG_K_NORM : 0) | (a.dms ? FLAG_DMS : 0) | (a.dms && a.dms.zeroAfter !== false ? FLAG_DMS_ZERO_AFTER : 0);
  const p = params(rows, numHeads, numKvHeads, headDim, { f32: a.eps }, flags, { f32: a.dms?.scale ?? 0 }, { f32: a.dms?.offset ?? 0 }, channel);
  // Absent norm weights: invFreq stands in (read-only, never read since the flag is off).
  const buffers = [qkv, positions, invFreq, a.qNorm ?? invFreq, a.kNorm ?? invFreq, alpha ?? dummy(enc.gpu)];
  enc.dispatch(pipeline, p, buffers, enc.grid(rows * (numHeads + numKvHeads)));
}
