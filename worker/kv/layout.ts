/**
 * The KV cache's memory layout (docs/kv-cache.md), in one place: slots per stream for every policy, the
 * state words of a (layer, sequence) stream, the shared scratch, and the bytes all of it allocates. The
 * slot cache allocates exactly this; the pre-flight and the chains planner count it.
 */
import { DEFAULT_KV_DTYPE, kvRowBytes } from '../model/dtype';
import type { KvDtype, KvPolicyName } from '../model/types';

/** What the layout depends on in the model. */
export interface KvShape {
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  dms: { windowSize: number; cr: number | null } | null;
}

/** Most key splits of one (row, query head) in attention's partials (flash-decoding). */
export const MAX_SPLITS = 256;
/** Counters of the cache (resident, peak, reads lo/hi, budget and policy evictions, spare). */
export const COUNTERS = 8;

/** Policies that keep an attention-weight score per slot. */
export function scoredPolicy(policy: KvPolicyName): boolean {
  return policy === 'tova' || policy === 'h2o';
}

/**
 * Slots per (layer, sequence, KV head). full: maxTokens. dms: the budget, by default w+1 plus 1/cr of
 * maxTokens (maxTokens without cr). Training-free policies: the budget (required; the cache checks it).
 */
export function kvCapacity(shape: Pick<KvShape, 'dms'>, policy: KvPolicyName, maxTokens: number, budget?: number): number {
  if (policy === 'full') return maxTokens;
  if (policy === 'dms') {
    const dms = shape.dms;
    if (!dms) return maxTokens;
    const dflt = dms.cr && dms.cr > 1 ? dms.windowSize + 1 + Math.ceil(maxTokens / dms.cr) : maxTokens;
    return Math.min(maxTokens, budget ?? dflt);
  }
  return Math.min(maxTokens, budget ?? maxTokens);
}

/**
 * Word offsets in the state buffer of one (layer, sequence) stream:
 *   len[Hkv]          resident slots per KV head
 *   seen[Hkv]         tokens the stream has seen (the position of the next one), per KV head
 *   pos[Hkv][cap]     position of each slot's token, bit 31 = DMS mark "evict after the window"
 *   ring[Hkv][w+1]    DMS: slot of each of the last w+1 tokens
 *   carry[Hkv]        DMS with own decisions (FastDMS): f32 decision of the stream's last token, which
 *                     marks it at the next step (worker/kv/cache.ts, write())
 *   score[Hkv][cap]   tova/h2o: f32 eviction score of each slot
 */
export interface StateLayout {
  seenOff: number;
  posOff: number;
  ringOff: number;
  carryOff: number;
  scoreOff: number;
  words: number;
}

export function stateLayout(hkv: number, cap: number, policy: KvPolicyName, window: number): StateLayout {
  const seenOff = hkv;
  const posOff = Math.ceil((2 * hkv) / 4) * 4;
  const ringOff = posOff + hkv * cap;
  const carryOff = ringOff + (policy === 'dms' ? hkv * (window + 1) : 0);
  const scoreOff = carryOff + (policy === 'dms' ? hkv : 0);
  const words = scoreOff + (scoredPolicy(policy) ? hkv * cap : 0);
  return { seenOff, posOff, ringOff, carryOff, scoreOff, words };
}

/**
 * The cache's shared scratch (one u32/f32 buffer): attention's split partials (acc[d], max, sum of every
 * (row, query head, split)), then for tova/h2o the softmax (max, sum) of every (row, query head), then
 * `dest`: the slot each step token receives per KV head, and for tova/h2o the step tokens' scores.
 */
export interface ScratchLayout {
  partFloats: number;
  statOff: number;
  destOff: number;
  words: number;
}

export function scratchLayout(hq: number, hkv: number, d: number, maxStep: number, scored: boolean): ScratchLayout {
  const partFloats = partialFloats(1, hq, d, MAX_SPLITS);
  const statOff = partFloats;
  const destOff = statOff + (scored ? maxStep * hq * 2 : 0);
  const words = destOff + hkv * maxStep * (scored ? 2 : 1);
  return { partFloats, statOff, destOff, words };
}

/** Floats of the partials of T rows and nsplit splits: acc[d], then (max, sum) after all of them. */
export function partialFloats(T: number, hq: number, d: number, nsplit: number): number {
  return T * hq * nsplit * (d + 2);
}

/** GPU buffers are allocated in 16-byte multiples (worker/gpu/context.ts). */
export function bufferBytes(bytes: number): number {
  return Math.max(16, Math.ceil(bytes / 16) * 16);
}

/** Bytes of K (and of V) of one (layer, sequence) stream: the values of every slot, then their scales (worker/kv/quant.ts). */
export function streamKvBytes(hkv: number, cap: number, d: number, dtype: KvDtype): number {
  return hkv * cap * kvRowBytes(d, dtype);
}

/** Bytes of one (layer, sequence) stream: K, V and its state words. */
export function streamBytes(shape: KvShape, policy: KvPolicyName, cap: number, dtype: KvDtype = DEFAULT_KV_DTYPE): number {
  const hkv = shape.numKvHeads;
  const st = stateLayout(hkv, cap, policy, shape.dms?.windowSize ?? 0);
  return 2 * bufferBytes(streamKvBytes(hkv, cap, shape.headDim, dtype)) + bufferBytes(4 * st.words);
}

/** Bytes of the buffers shared by all streams: scratch, counters and four 16-byte placeholders. */
export function sharedBytes(shape: KvShape, policy: KvPolicyName, maxStep: number): number {
  const s = scratchLayout(shape.numHeads, shape.numKvHeads, shape.headDim, maxStep, scoredPolicy(policy));
  return bufferBytes(4 * s.words) + bufferBytes(4 * COUNTERS) + 4 * 16;
}

/** Everything the cache allocates for `sequences` sequences of `cap` slots. */
export function kvCacheBytes(shape: KvShape, policy: KvPolicyName, cap: number, o: { sequences?: number; maxStepTokens?: number; dtype?: KvDtype } = {}): number {
  return shape.numLayers * (o.sequences ?? 1) * streamBytes(shape, policy, cap, o.dtype) + sharedBytes(shape, policy, o.maxStepTokens ?? 64);
}
