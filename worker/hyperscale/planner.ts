/**
 * The hyper-scaling planner: given a KV memory budget, choose how many chains (W), how long (max new
 * tokens L) and which cache policy fit it (docs/hyperscaling.md).
 *
 * Memory is what the KV cache allocates up front (docs/kv-cache.md): per layer and sequence, K and V of
 * [Hkv][cap][d] in f16 (the default; 4 bytes per element pair: 2 for K, 2 for V) or f32 (8 bytes) plus the
 * u32 state words (worker/kv/layout.ts: a length and a position counter per KV head, a position per slot,
 * and for DMS a ring of w+1 slots per KV head). So one chain of `cap` slots costs layers × (Hkv × cap × d × 2 × bytes per value + 4 ×
 * state words) bytes, and W chains W times that.
 *
 * - full: cap = prompt + L.
 * - dms: cap = min(prompt + L, w+1 + ceil((prompt + L − w − 1) / r)), with r the compression of the tokens
 *   that left the window: the checkpoint's dms_cr, or a measured ratio (`compression`: tokens seen /
 *   tokens kept over a measured length, converted to the same form). A chain that outgrows its cap does
 *   not fail: the cache's fallback evicts its oldest kept token outside the window (budgetEvictions).
 *
 * Choice: among widths × lengths × policies that fit, the most reasoning tokens W × L with L at least
 * `minLength`; ties go to the longer chains, then to DMS (fewer KV reads per token).
 */

import { streamBytes } from '../kv/layout';
import { DEFAULT_KV_DTYPE, kvRowBytes } from '../model/dtype';
import type { KvDtype } from '../model/types';

export type PlanPolicy = 'full' | 'dms';

export interface PlanModel {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Most tokens a sequence may hold (prompt + generated). */
  maxContext: number;
  dms: { windowSize: number; cr: number | null } | null;
  /** How the KV cache stores K and V (default 'f16', as the engine). */
  kvDtype?: KvDtype;
}

/** Named budgets in MB. */
export const MEMORY_LEVELS = { low: 16, medium: 64, high: 256 } as const;
export type MemoryLevel = keyof typeof MEMORY_LEVELS;

export interface PlanRequest {
  /** KV memory budget: bytes, or a named level. */
  budget: number | MemoryLevel;
  promptTokens: number;
  /** Measured DMS compression, tokens seen / tokens kept, over sequences of `measuredLength` tokens. */
  compression?: number;
  measuredLength?: number;
  widths?: number[];
  lengths?: number[];
  /** Shortest useful chain (the task needs this many tokens to reach its answer). Default: the shortest candidate length. */
  minLength?: number;
  policies?: PlanPolicy[];
}

export interface PlanOption {
  policy: PlanPolicy;
  chains: number;
  maxTokens: number;
  /** Slots per (layer, sequence, KV head): pass as kvBudget for dms. */
  slots: number;
  /** Bytes the cache allocates for these chains. */
  bytes: number;
}

export interface Plan extends PlanOption {
  budgetBytes: number;
  /** K+V bytes of one token in every layer and KV head: layers × Hkv × d × 2 × (2 for f16, 4 for f32). */
  bytesPerToken: number;
  /** Old-token compression the dms sizing assumed (null for full). */
  compressionAssumed: number | null;
  /** The best option of each policy considered (for reports). */
  options: PlanOption[];
  reason: string;
}

export const MB = 1024 * 1024;

export function budgetBytes(budget: number | MemoryLevel): number {
  if (typeof budget === 'number') return budget;
  const mb = MEMORY_LEVELS[budget];
  if (mb === undefined) throw new Error(`unknown memory level "${budget}" (low, medium, high, or a number of MB)`);
  return mb * MB;
}

/** Bytes the cache allocates for `sequences` sequences of `cap` slots (K, V and state; not the small shared buffers). */
export function kvBytes(m: PlanModel, policy: PlanPolicy, sequences: number, cap: number): number {
  const shape = { numLayers: m.numLayers, numHeads: m.numKvHeads, numKvHeads: m.numKvHeads, headDim: m.headDim, dms: m.dms ?? null };
  return m.numLayers * sequences * streamBytes(shape, policy === 'dms' && m.dms ? 'dms' : 'full', cap, m.kvDtype ?? DEFAULT_KV_DTYPE);
}

/** Ratio r applied to the tokens that left the window, from a measured whole-sequence ratio. */
function oldTokenRatio(w: number, compression: number, length: number): number {
  const kept = length / compression;
  const old = length - (w + 1);
  if (old <= 0 || kept <= w + 1) return Infinity;
  return old / (kept - (w + 1));
}

export function dmsSlots(m: PlanModel, tokens: number, r: number): number {
  const w = m.dms!.windowSize;
  if (!(r > 1) || tokens <= w + 1) return tokens;
  return Math.min(tokens, w + 1 + Math.ceil((tokens - w - 1) / r));
}

export function plan(m: PlanModel, req: PlanRequest): Plan {
  const total = budgetBytes(req.budget);
  if (!(total > 0)) throw new Error(`the KV memory budget must be positive, got ${total}`);
  const P = req.promptTokens;
  const room = m.maxContext - P;
  if (room < 1) throw new Error(`the prompt (${P} tokens) leaves no room in the context of ${m.maxContext}`);
  const widths = [...(req.widths ?? [1, 2, 4, 8, 16])].sort((a, b) => a - b);
  const lengths = [...new Set([...(req.lengths ?? [64, 128, 256, 512, 1024, 2048, 4096, 8192]), room])].filter((l) => l <= room).sort((a, b) => a - b);
  const minLength = Math.min(req.minLength ?? lengths[0], room);
  const policies = (req.policies ?? (m.dms ? ['dms', 'full'] : ['full'])).filter((p) => p === 'full' || m.dms);
  let r: number | null = null;
  if (m.dms) {
    r = req.compression !== undefined
      ? oldTokenRatio(m.dms.windowSize, req.compression, req.measuredLength ?? m.maxContext)
      : (m.dms.cr ?? 1);
  }
  const options: PlanOption[] = [];
  for (const policy of policies) {
    let best: PlanOption | null = null;
    for (const L of lengths) {
      if (L < minLength) continue;
      const slots = policy === 'dms' ? dmsSlots(m, P + L, r!) : P + L;
      for (const W of widths) {
        const bytes = kvBytes(m, policy, W, slots);
        if (bytes > total) continue;
        const o = { policy, chains: W, maxTokens: L, slots, bytes };
        if (!best || W * L > best.chains * best.maxTokens || (W * L === best.chains * best.maxTokens && L > best.maxTokens)) best = o;
      }
    }
    if (best) options.push(best);
  }
  const bytesPerToken = m.numLayers * m.numKvHeads * 2 * kvRowBytes(m.headDim, m.kvDtype ?? DEFAULT_KV_DTYPE);
  if (options.length === 0) {
    throw new Error(`${(total / MB).toFixed(1)} MB holds no chain of ${minLength} tokens after a ${P}-token prompt (one full-cache token costs ${bytesPerToken} bytes)`);
  }
  const chosen = options.reduce((b, o) => {
    const wb = b.chains * b.maxTokens, wo = o.chains * o.maxTokens;
    if (wo !== wb) return wo > wb ? o : b;
    if (o.maxTokens !== b.maxTokens) return o.maxTokens > b.maxTokens ? o : b;
    return o.policy === 'dms' ? o : b;
  });
  const others = options.filter((o) => o !== chosen).map((o) => `${o.policy}: ${o.chains} x ${o.maxTokens}`).join(', ');
  return {
    ...chosen,
    budgetBytes: total,
    bytesPerToken,
    compressionAssumed: chosen.policy === 'dms' ? r : null,
    options,
    reason: `${chosen.chains} chain(s) x ${chosen.maxTokens} tokens under ${chosen.policy} (${chosen.slots} slots per head, ${(chosen.bytes / MB).toFixed(2)} of ${(total / MB).toFixed(2)} MB)` +
      (others ? `; best alternative ${others}` : ''),
  };
}
