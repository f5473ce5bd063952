import kernelSource from '../../shaders/attention.wgsl';
import decodeSource from '../../shaders/attention_decode.wgsl';
import type { Gpu } from '../gpu/context';
import type { Binding, Encoder } from '../gpu/encoder';
import { include, paramLayout, scatterConstants, specialize, u32Constants } from '../gpu/wgsl';
import type { KvDtype } from '../model/types';

/** attention.wgsl's parameters (see the kernel's header; its struct Params is made from this list). */
const PARAMS = paramLayout({
  T: 'u32', rowBase: 'u32', seenOff: 'u32', hq: 'u32', hkv: 'u32', d: 'u32', g: 'u32', cap: 'u32', w: 'u32', nqb: 'u32', nsplit: 'u32',
  scale: 'f32', stride: 'u32', posOff: 'u32', mlOff: 'u32', stats: 'u32', statOff: 'u32', carryOff: 'u32',
});
/** attention_decode.wgsl's parameters. */
const DECODE_PARAMS = paramLayout({
  rowBase: 'u32', seenOff: 'u32', hq: 'u32', hkv: 'u32', cap: 'u32', w: 'u32', nsplit: 'u32', stride: 'u32', posOff: 'u32', mlOff: 'u32', scale: 'f32',
  carryOff: 'u32',
});

const source = PARAMS.struct + include(kernelSource);

/** No DMS masking (window value in the kernels' parameters). */
export const NO_WINDOW = 0xffffffff;

/**
 * The decode kernel (shaders/attention_decode.wgsl): `enabled` false sends decode through the general
 * kernel (tests, the benchmark's comparison); `keysPerStep` is KB; `lanes` forces LG (0 = automatic).
 */
export const decodeTuning = { enabled: true, keysPerStep: 2, lanes: 0 };

export interface AttentionArgs {
  /** Rows of the segment and its first row in qkv/out. Its first position is the stream's seen[h]. */
  T: number;
  rowBase: number;
  hq: number;
  hkv: number;
  d: number;
  /** Slots per stream (stride of the cache buffers). */
  cap: number;
  /** DMS window w, or NO_WINDOW. */
  w: number;
  /** Word offsets of seen[h] and pos[h][slot] in the state buffer. */
  seenOff: number;
  posOff: number;
  /** Own DMS decisions (FastDMS): word offset of carry[h] in the state buffer; else NO_CARRY (kv-commit.ts). */
  carryOff: number;
  /** Key splits (flash-decoding); 1 writes the output directly (general kernel only). */
  nsplit: number;
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

/** Float offset of the (m, l) pairs in the partials of T rows and nsplit splits (acc[d] of each come first). */
export function partialStatsOffset(T: number, hq: number, d: number, nsplit: number): number {
  return T * hq * nsplit * d;
}

/**
 * Records attention.wgsl for one segment: out[rowBase + r] for r < T when nsplit is 1, else per-split
 * partials in `part` for kv_commit.wgsl's merge. K and V are bound as the cache stores them (a.dtype).
 */
export function attention(
  enc: Encoder,
  a: AttentionArgs,
  bufs: { qkv: GPUBuffer; alpha: Binding; k: GPUBuffer; v: GPUBuffer; state: GPUBuffer; out: GPUBuffer; part: GPUBuffer },
): void {
  const g = a.hq / a.hkv;
  const qh = queryBlock(a.d);
  const nqb = Math.ceil((a.T * g) / qh);
  const pr = PARAMS.pack({
    T: a.T, rowBase: a.rowBase, seenOff: a.seenOff, hq: a.hq, hkv: a.hkv, d: a.d, g, cap: a.cap, w: a.w, nqb, nsplit: a.nsplit,
    scale: 1 / Math.sqrt(a.d), stride: (a.hq + 2 * a.hkv) * a.d, posOff: a.posOff,
    mlOff: partialStatsOffset(a.T, a.hq, a.d, a.nsplit), stats: a.statOff >= 0 ? 1 : 0, statOff: Math.max(0, a.statOff), carryOff: a.carryOff,
  });
  const constants = { QH: qh, D: a.d, F16: a.dtype === 'f16' ? 1 : 0, Q8: a.dtype === 'q8' ? 1 : 0, Q4: a.dtype === 'q4' ? 1 : 0 };
  enc.dispatch(enc.gpu.pipeline('attention', source, constants), pr, [bufs.qkv, bufs.alpha, bufs.k, bufs.v, bufs.state, bufs.out, bufs.part], enc.grid(a.hkv * nqb * a.nsplit));
}

/** Invocations of a decode attention workgroup (WG of attention_decode.wgsl, prepended from here). */
const DECODE_WG = 128;

/**
 * Lanes per key group of the decode kernel for head dim d on this device (a power of two, at most 16, d/8
 * and the smallest subgroup), or 0 when the kernel cannot run here: it needs subgroups of a known size, at
 * most 16 query heads per KV head, and its workgroup memory within the device's limit. `decodeTuning.lanes`
 * forces a smaller count (tests).
 */
export function decodeLanes(gpu: Pick<Gpu, 'caps'>, d: number, g: number): number {
  const sub = gpu.caps.subgroupMinSize;
  if (!decodeTuning.enabled || !gpu.caps.subgroups || sub < 1 || g > 16 || d % 8 !== 0) return 0;
  const most = Math.min(16, d / 8, sub, decodeTuning.lanes > 0 ? decodeTuning.lanes : 16);
  let lanes = 1;
  while (lanes * 2 <= most) lanes *= 2;
  // Workgroup memory: the groups' outputs (G x d), the step's own key and value (2d), each group's (m, l)
  // per query head, and four words.
  const bytes = 4 * (g * d + 2 * d + 2 * (DECODE_WG / lanes) * g + 4);
  if (bytes > gpu.caps.maxComputeWorkgroupStorageSize) return 0;
  // One lane per key would hold every chunk of G queries and outputs in registers: only for short heads.
  return lanes * 4 >= d / 8 ? lanes : 0;
}

/**
 * Records attention_decode.wgsl for a one-row segment: partials of a.nsplit key splits in `part` (always;
 * kv_commit.wgsl merges them). Needs decodeLanes(gpu, d, g) > 0.
 */
export function attentionDecode(
  enc: Encoder,
  a: Omit<AttentionArgs, 'T' | 'statOff'>,
  bufs: { qkv: GPUBuffer; alpha: Binding; k: GPUBuffer; v: GPUBuffer; state: GPUBuffer; part: GPUBuffer },
): void {
  const g = a.hq / a.hkv;
  const lanes = decodeLanes(enc.gpu, a.d, g);
  if (!lanes) throw new Error('attentionDecode: the decode kernel cannot run on this device');
  const kb = decodeTuning.keysPerStep;
  const code = 'enable subgroups;\n'
    + u32Constants({ WG: DECODE_WG, G: g, D: a.d, LG: lanes, NCH: Math.ceil(a.d / 8 / lanes), KB: kb, ...scatterConstants(kb * g, lanes) }) + DECODE_PARAMS.struct
    + specialize(include(decodeSource), { F16: a.dtype === 'f16', Q8: a.dtype === 'q8', Q4: a.dtype === 'q4', QUANT: a.dtype === 'q8' || a.dtype === 'q4' }).replace('enable subgroups;\n', '');
  const pipe = enc.gpu.pipeline(`attention_decode G${g} D${a.d} LG${lanes} KB${kb} ${a.dtype}`, code);
  const pr = DECODE_PARAMS.pack({
    rowBase: a.rowBase, seenOff: a.seenOff, hq: a.hq, hkv: a.hkv, cap: a.cap, w: a.w, nsplit: a.nsplit, stride: (a.hq + 2 * a.hkv) * a.d,
    posOff: a.posOff, mlOff: partialStatsOffset(1, a.hq, a.d, a.nsplit), scale: 1 / Math.sqrt(a.d), carryOff: a.carryOff,
  });
  enc.dispatch(pipe, pr, [bufs.qkv, bufs.alpha, bufs.k, bufs.v, bufs.state, bufs.part], enc.grid(a.hkv * a.nsplit));
}
