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

/** The segment: its rows in qkv/out, the model's heads and how the cache stores K and V. */
export interface SegmentShape {
  T: number;
  rowBase: number;
  hq: number;
  hkv: number;
  d: number;
  /** f16: rounded, two halves per u32. */
  dtype: KvDtype;
}

/** The commit role: where a stream keeps its words (worker/kv/layout.ts) and the policy's rules. */
export interface CommitArgs {
  mode: number;
  cap: number;
  /** DMS window w (ring of w+1); any value for other policies. */
  w: number;
  seenOff: number;
  posOff: number;
  ringOff: number;
  scoreOff: number;
  /** Word offset of dest in the scratch buffer. */
  destOff: number;
  policy: number;
  /** Stride (u32) per KV head of dest. */
  maxStep: number;
  /** window: sink tokens kept; h2o: recent tokens protected. */
  sink: number;
  recent: number;
}

/** The merge role: the segment's attention split into `nsplit` partials; (M, L) kept at statOff (-1: not kept). */
export interface MergeArgs {
  nsplit: number;
  /** Float offset of the (m, l) pairs in the partials. */
  mlOff: number;
  statOff: number;
}

/**
 * Records one kv_commit.wgsl dispatch: the merge of a segment's attention partials (`merge`, or null when
 * attention wrote its output directly) and the commit of its tokens (`commit`, or null), in one dispatch.
 */
export function kvCommit(
  enc: Encoder,
  a: SegmentShape,
  commit: CommitArgs | null,
  merge: MergeArgs | null,
  bufs: { scratch: GPUBuffer; out: Binding; qkv: Binding; alpha: Binding; k: Binding; v: Binding; state: GPUBuffer; counters: GPUBuffer },
): void {
  const c = commit;
  const w1 = c && c.policy === POLICY_CODE.dms ? c.w + 1 : 1;
  const pr = params(
    a.T, a.rowBase, c?.seenOff ?? 0, a.hq,
    a.hkv, a.d, c?.cap ?? 0, c?.w ?? 0,
    w1, (a.hq + 2 * a.hkv) * a.d, c?.posOff ?? 0, c?.ringOff ?? 0,
    c?.policy ?? 0, c?.mode ?? 0, c?.maxStep ?? 0, c?.sink ?? 0,
    c?.recent ?? 0, c?.scoreOff ?? 0, c?.destOff ?? 0, merge ? a.T * a.hq : 0,
    c ? a.hkv : 0, merge?.nsplit ?? 1, merge?.mlOff ?? 0, merge && merge.statOff >= 0 ? 1 : 0,
    Math.max(0, merge?.statOff ?? 0), 0, 0, 0,
  );
  const count = (merge ? a.T * a.hq : 0) + (c ? a.hkv : 0);
  const pipe = enc.gpu.pipeline('kv_commit', source, { F16: a.dtype === 'f16' ? 1 : 0 });
  enc.dispatch(pipe, pr, [bufs.scratch, bufs.out, bufs.qkv, bufs.alpha, bufs.k, bufs.v, bufs.state, bufs.counters], enc.grid(count));
}
