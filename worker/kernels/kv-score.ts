import kernelSource from '../../shaders/kv_score.wgsl';
import f16Source from '../../shaders/f16_round.wgsl';
import { params, type Encoder } from '../gpu/encoder';
import type { KvDtype } from '../model/types';

/** The kernel with the shared f16 helpers (f16_round.wgsl) appended. */
const source = `${kernelSource}\n${f16Source}`;

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
  const pr = params(
    a.T, a.rowBase, a.hq, a.hkv,
    a.d, a.hq / a.hkv, a.cap, (a.hq + 2 * a.hkv) * a.d,
    a.scoreOff, a.statOff, a.rowStart, a.accumulate ? 1 : 0,
    a.maxStep, { f32: 1 / Math.sqrt(a.d) }, tiles, a.destOff,
  );
  enc.dispatch(enc.gpu.pipeline('kv_score', source, { F16: a.dtype === 'f16' ? 1 : 0 }), pr, [bufs.qkv, bufs.k, bufs.state, bufs.scratch], enc.grid(a.hkv * tiles));
}
