import kernelSource from '../../shaders/kv_commit.wgsl';
import type { Binding, Encoder } from '../gpu/encoder';
import { include, paramLayout } from '../gpu/wgsl';
import type { KvDtype } from '../model/types';

/** kv_commit.wgsl's parameters (see the kernel's header; its struct Params is made from this list). */
const PARAMS = paramLayout({
  T: 'u32', rowBase: 'u32', seenOff: 'u32', hq: 'u32', hkv: 'u32', d: 'u32', cap: 'u32', w: 'u32', w1: 'u32', stride: 'u32',
  posOff: 'u32', ringOff: 'u32', policy: 'u32', mode: 'u32', maxStep: 'u32', sink: 'u32', recent: 'u32', scoreOff: 'u32', destOff: 'u32',
  nMerge: 'u32', nCommit: 'u32', nsplit: 'u32', mlOff: 'u32', stats: 'u32', statOff: 'u32', carryOff: 'u32',
});

const source = PARAMS.struct + include(kernelSource);

/** carryOff of a cache whose DMS decisions are not the tokens' own (the kernels' NONE; shaders/dms_decision.wgsl). */
export const NO_CARRY = 0xffffffff;

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
  /** f16: rounded, two halves per u32; q8 / q4: quantized (worker/kv/quant.ts). */
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
  /** Own DMS decisions (FastDMS): word offset of carry[h] in the state buffer, which the commit updates; else NO_CARRY. */
  carryOff: number;
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
  // The merge takes one workgroup per (row, query head, block of 32 columns).
  const nMerge = merge ? a.T * a.hq * Math.ceil(a.d / 32) : 0;
  const pr = PARAMS.pack({
    T: a.T, rowBase: a.rowBase, seenOff: c?.seenOff ?? 0, hq: a.hq, hkv: a.hkv, d: a.d, cap: c?.cap ?? 0, w: c?.w ?? 0, w1,
    stride: (a.hq + 2 * a.hkv) * a.d, posOff: c?.posOff ?? 0, ringOff: c?.ringOff ?? 0, policy: c?.policy ?? 0, mode: c?.mode ?? 0,
    maxStep: c?.maxStep ?? 0, sink: c?.sink ?? 0, recent: c?.recent ?? 0, scoreOff: c?.scoreOff ?? 0, destOff: c?.destOff ?? 0,
    nMerge, nCommit: c ? a.hkv : 0, nsplit: merge?.nsplit ?? 1, mlOff: merge?.mlOff ?? 0,
    stats: merge && merge.statOff >= 0 ? 1 : 0, statOff: Math.max(0, merge?.statOff ?? 0), carryOff: c?.carryOff ?? NO_CARRY,
  });
  const count = nMerge + (c ? a.hkv : 0);
  const pipe = enc.gpu.pipeline('kv_commit', source, { F16: a.dtype === 'f16' ? 1 : 0, Q8: a.dtype === 'q8' ? 1 : 0, Q4: a.dtype === 'q4' ? 1 : 0 });
  enc.dispatch(pipe, pr, [bufs.scratch, bufs.out, bufs.qkv, bufs.alpha, bufs.k, bufs.v, bufs.state, bufs.counters], enc.grid(count));
}
