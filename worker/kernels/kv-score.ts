import kernelSource from '../../shaders/kv_score.wgsl';
import type { Encoder } from '../gpu/encoder';
import { include, paramLayout } from '../gpu/wgsl';
import type { KvDtype } from '../model/types';

/** kv_score.wgsl's parameters (see the kernel's header; its struct Params is made from this list). */
const PARAMS = paramLayout({
  T: 'u32', rowBase: 'u32', hq: 'u32', hkv: 'u32', d: 'u32', g: 'u32', cap: 'u32', stride: 'u32',
  scoreOff: 'u32', statOff: 'u32', rowStart: 'u32', accumulate: 'u32', maxStep: 'u32', scale: 'f32', tiles: 'u32', destOff: 'u32',
});

const source = PARAMS.struct + include(kernelSource);

export interface ScoreArgs {
  T: number;
  rowBase: number;
  hq: number;
  hkv: number;
  d: number;
  cap: number;
  scoreOff: number;
  /** Word offsets in the scratch buffer of the (M, L) softmax stats (kept by the merge) and of dest. */
  statOff: number;
  destOff: number;
  /** First row whose attention weights count (T-1: only the last query, for tova). */
  rowStart: number;
  /** h2o: add to the resident scores; tova: overwrite them. */
  accumulate: boolean;
  maxStep: number;
  /** Upper bound of resident + step keys (the dispatch covers this many; threads past len + T return). */
  keysUpper: number;
  /** How the cache stores K (as attention). */
  dtype: KvDtype;
}

/** Records kv_score.wgsl: attention weights of the step's queries as per-key eviction scores. */
export function kvScore(enc: Encoder, a: ScoreArgs, bufs: { qkv: GPUBuffer; k: GPUBuffer; state: GPUBuffer; scratch: GPUBuffer }): void {
  const tiles = Math.ceil(a.keysUpper / 64);
  const pr = PARAMS.pack({
    T: a.T, rowBase: a.rowBase, hq: a.hq, hkv: a.hkv, d: a.d, g: a.hq / a.hkv, cap: a.cap, stride: (a.hq + 2 * a.hkv) * a.d,
    scoreOff: a.scoreOff, statOff: a.statOff, rowStart: a.rowStart, accumulate: a.accumulate ? 1 : 0, maxStep: a.maxStep,
    scale: 1 / Math.sqrt(a.d), tiles, destOff: a.destOff,
  });
  enc.dispatch(enc.gpu.pipeline('kv_score', source, { F16: a.dtype === 'f16' ? 1 : 0, Q8: a.dtype === 'q8' ? 1 : 0, Q4: a.dtype === 'q4' ? 1 : 0 }), pr, [bufs.qkv, bufs.k, bufs.state, bufs.scratch], enc.grid(a.hkv * tiles));
}
