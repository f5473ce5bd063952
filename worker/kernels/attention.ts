import kernelSource from '../../shaders/attention.wgsl';
import f16Source from '../../shaders/f16_round.wgsl';
import mergeSource from '../../shaders/attention_merge.wgsl';
import { params, type Binding, type Encoder } from '../gpu/encoder';
import type { KvDtype } from '../model/types';

/** The kernel with the shared f16 helpers (f16_round.wgsl) appended. */
const source = `${kernelSource}\n${f16Source}`;

/** No DMS masking (window value in the kernels' parameters). */
export const NO_WINDOW = 0xffffffff;

export interface AttentionArgs {
  /** Rows of the segment, its first row in qkv/out, position of its first token. */
  T: number;
  rowBase: number;
  p0: number;
  hq: number;
  hkv: number;
  d: number;
  /** Slots per stream (stride of the cache buffers). */
  cap: number;
  /** DMS window w, or NO_WINDOW. */
  w: number;
  /** Word offset of pos[h][slot] in the state buffer. */
  posOff: number;
  /** Upper bound of the keys any row of the segment sees (resident + T). */
  keysUpper: number;
  /** Keys per split; nsplit = ceil(keysUpper / splitKeys). 0: no split. */
  splitKeys: number;
  /** Float offset in `part` where (m, l) of every (row, query head) are kept, or -1 for none. */
  statOff: number;
  /** How the cache's K and V are stored (f16: two halves per u32; the step's keys are rounded alike). */
  dtype: KvDtype;
}

/**
 * Query vectors (row, head) per workgroup: QH * d <= 1024 (workgroup memory) and 2 * ceil(QH / floor(128 / d))
 * <= 16 (accumulators of a thread, which owns 2 columns of every floor(128 / d)-th query vector).
 */
export function queryBlock(d: number): number {
  return d <= 64 ? 16 : 8;
}

/** Floats of the partials scratch needed for T rows and nsplit splits. */
export function partialFloats(T: number, hq: number, d: number, nsplit: number): number {
  return T * hq * nsplit * (d + 2);
}

/**
 * Records attention for one segment: out[rowBase + r] for r < T, with per-split partials in `part`
 * (needs partialFloats(T, hq, d, nsplit) floats when nsplit > 1). Returns nsplit. K and V are bound as
 * the cache stores them (a.dtype; see shaders/attention.wgsl).
 */
export function attention(
  enc: Encoder,
  a: AttentionArgs,
  bufs: { qkv: GPUBuffer; alpha: Binding; k: GPUBuffer; v: GPUBuffer; state: GPUBuffer; out: GPUBuffer; part: GPUBuffer },
): number {
  const g = a.hq / a.hkv;
  const qh = queryBlock(a.d);
  const nqb = Math.ceil((a.T * g) / qh);
  let splitKeys = a.splitKeys > 0 ? Math.ceil(a.splitKeys / 64) * 64 : Math.ceil(a.keysUpper / 64) * 64;
  let nsplit = Math.max(1, Math.ceil(a.keysUpper / splitKeys));
  if (nsplit === 1) splitKeys = Math.ceil(a.keysUpper / 64) * 64;
  const stride = (a.hq + 2 * a.hkv) * a.d;
  const mlOff = a.T * a.hq * nsplit * a.d;
  const pr = params(
    a.T, a.rowBase, a.p0, a.hq,
    a.hkv, a.d, g, a.cap,
    a.w, 0, nqb, nsplit,
    splitKeys, { f32: 1 / Math.sqrt(a.d) }, stride, a.posOff,
    mlOff, a.statOff >= 0 ? 1 : 0, Math.max(0, a.statOff), 0,
  );
  const constants = { QH: qh, D: a.d, F16: a.dtype === 'f16' ? 1 : 0 };
  enc.dispatch(enc.gpu.pipeline('attention', source, constants), pr, [bufs.qkv, bufs.alpha, bufs.k, bufs.v, bufs.state, bufs.out, bufs.part], enc.grid(a.hkv * nqb * nsplit));
  if (nsplit > 1) {
    enc.dispatch(enc.gpu.pipeline('attention_merge', mergeSource), params(a.T, a.rowBase, a.hq, a.d, nsplit, mlOff, a.statOff >= 0 ? 1 : 0, Math.max(0, a.statOff)), [bufs.part, bufs.out], enc.grid(a.T * a.hq));
  }
  return nsplit;
}
