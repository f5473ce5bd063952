import kernelSource from '../../shaders/kv_commit.wgsl';
import f16Source from '../../shaders/f16_round.wgsl';
import { params, type Binding, type Encoder } from '../gpu/encoder';
import type { KvDtype } from '../model/types';

/** The kernel with the shared f16 helpers (f16_round.wgsl) appended. */
const source = `${kernelSource}\n${f16Source}`;

export const POLICY_CODE = { full: 0, dms: 1, window: 2, tova: 3, h2o: 4 } as const;
export const COMMIT = 0;
export const RESET = 2;
export const FORKED = 3;

export interface CommitArgs {
  mode: number;
  T: number;
  rowBase: number;
  p0: number;
  hq: number;
  hkv: number;
  d: number;
  cap: number;
  /** DMS window w (ring of w+1); any value for other policies. */
  w: number;
  posOff: number;
  ringOff: number;
  scoreOff: number;
  policy: number;
  /** Stride (u32) per KV head of the dest scratch. */
  maxStep: number;
  /** window: sink tokens kept; h2o: recent tokens protected. */
  sink: number;
  recent: number;
  /** How the cache stores K and V (f16: rounded, two halves per u32). */
  dtype: KvDtype;
}

/** Records one kv_commit.wgsl dispatch (one workgroup per KV head). See the shader for the modes. */
export function kvCommit(
  enc: Encoder,
  a: CommitArgs,
  bufs: { qkv: Binding; alpha: Binding; k: Binding; v: Binding; state: GPUBuffer; dest: Binding; counters: GPUBuffer },
): void {
  const w1 = a.policy === POLICY_CODE.dms ? a.w + 1 : 1;
  const pr = params(
    a.T, a.rowBase, a.p0, a.hq,
    a.hkv, a.d, a.cap, a.w,
    w1, (a.hq + 2 * a.hkv) * a.d, a.posOff, a.ringOff,
    a.policy, a.mode, a.maxStep, a.sink,
    a.recent, a.scoreOff, 0, 0,
  );
  enc.dispatch(enc.gpu.pipeline('kv_commit', source, { F16: a.dtype === 'f16' ? 1 : 0 }), pr, [bufs.qkv, bufs.alpha, bufs.k, bufs.v, bufs.state, bufs.dest, bufs.counters], [a.hkv]);
}
