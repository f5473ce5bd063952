/**
 * The KV cache contract between the engine and every cache policy (full, dms, window, tova, h2o).
 * See docs/kv-cache.md for the layout. One forward step processes `tokens` new rows; each row belongs
 * to one sequence segment. The engine calls, per step:
 *   begin(enc, segments)                       once, before layer 0
 *   for each layer: write(enc, layer, qkv, alpha); attend(enc, layer, qkv, out)
 *   end(enc)                                   once, after the last layer
 * All of it is recorded into the same Encoder and submitted by the engine: no per-step readback.
 *
 * How a step is executed (all policies): attend() reads the keys/values already resident in the cache
 * plus this step's own keys/values straight from `qkv`, with the policy's visibility rule, and then
 * commits the step's tokens into the cache (slot assignment, DMS delayed eviction, budget eviction).
 * So the same `qkv` (and `alpha`) must be passed to write() and attend() of a layer and must not be
 * overwritten between the two calls.
 */
import type { Encoder } from '../gpu/encoder';
import type { DmsConfig, KvDtype, KvPolicyName, KvResidency, KvStats } from '../model/types';

export type { DmsConfig };

/** What the cache needs to know about the model. */
export interface ModelShape {
  numLayers: number;
  /** Query heads Hq. */
  numHeads: number;
  /** KV heads Hkv; Hq must be a multiple of it (group size g = Hq / Hkv). */
  numKvHeads: number;
  /** Head dim d (16..128, a multiple of 4). */
  headDim: number;
  /** DMS checkpoint (window size etc.), or null. Policy 'dms' needs it; policy 'full' ignores it. */
  dms: DmsConfig | null;
}

export interface Segment {
  /** Which sequence (0 for a single conversation; chains 0..W-1). */
  seq: number;
  /** First row of this segment in the step's activations. */
  row: number;
  /** Rows (new tokens) of this segment. */
  tokens: number;
  /**
   * Position of its first token in the sequence. It must equal `seen[seq]` of the cache (the cache
   * continues where it stopped; reset(seq) starts a sequence again at 0).
   */
  pos0: number;
}

export interface KvCache {
  readonly policy: KvPolicyName;
  /** How K and V are stored on the GPU. */
  readonly dtype: KvDtype;
  /**
   * Tokens each sequence has seen, i.e. the position of its next token: the one count of it on the CPU
   * (the engine derives every position from it; the GPU keeps its own copy per stream, seen[h], so that
   * no dispatch of a step takes the position as a parameter). Advanced by end(), fork(), reset(), prime().
   */
  readonly seen: readonly number[];
  /** Starts a step. At most one segment per sequence; segments may not overlap in rows. */
  begin(enc: Encoder, segments: Segment[]): void;
  /**
   * Records this step's inputs for `layer`. qkv is f32 [rows][(Hq + 2*Hkv) * headDim]: q heads,
   * then k heads (already normed and roped), then v heads. alpha is f32 [rows][Hkv] of DMS decision
   * logits (positive = evict after the window), or null when the model has no DMS (it is required by
   * policy 'dms'). The keys, values and decisions enter the cache at the end of attend(), which reads
   * them from the same qkv and alpha. Row t's decision marks the token before it (NVIDIA's shift by one;
   * the first row's marks the last token of the previous step); with own decisions (a FastDMS checkpoint:
   * dms.convention 'fastdms' without separateAlpha) row t's decision marks row t's own token, and the cache
   * carries each stream's last decision to its next step. The slot cache records no GPU work here.
   */
  write(enc: Encoder, layer: number, qkv: GPUBuffer, alpha: GPUBuffer | null): void;
  /**
   * out f32 [rows][Hq * headDim] = softmax(q k^T / sqrt(d)) v over the keys visible to each row
   * (the cache's resident keys and this step's keys up to the row), then commits the step's keys
   * and values of `layer` into the cache (evicting per the policy). Call after write() of the layer.
   */
  attend(enc: Encoder, layer: number, qkv: GPUBuffer, out: GPUBuffer): void;
  end(enc: Encoder): void;
  /**
   * Identifies what attend() records for these segments (their rows, kernels and key splits; no position):
   * a step recorded once can be replayed for later steps with the same key (worker/engine/forward.ts).
   */
  planKey(segments: Segment[]): string;
  /** Metrics (docs/kv-cache.md); may read back small counters, so call it after a step, not inside. */
  stats(): Promise<KvStats>;
  /** Which positions of sequence `seq` are resident per (layer, KV head); one small readback per layer. */
  residency(seq?: number): Promise<KvResidency>;
  /** Drops a sequence's tokens (all sequences when omitted). Submits its own small GPU work. */
  reset(seq?: number): void;
  /**
   * Makes each sequence of `dsts` a copy of sequence `src` (its cached tokens, positions, DMS marks and
   * policy scores), e.g. parallel chains continuing one prompt. Copy-on-fork: the compressed state of
   * `src` is copied into each destination's own slots. Submits its own GPU copies.
   */
  fork(src: number, dsts: number[]): void;
  /**
   * Benchmarks only: makes sequence `seq` look as if it had seen `tokens` tokens, of which the last
   * w+1 (DMS) and a `keptFraction` of the older ones are resident, without running the model.
   */
  prime(seq: number, tokens: number, keptFraction?: number): void;
  destroy(): void;
}

/** The policy when none is asked for: the checkpoint's own DMS when it has one, else the full cache. */
export function kvPolicy(asked: KvPolicyName | undefined, dms: DmsConfig | null): KvPolicyName {
  return asked ?? (dms ? 'dms' : 'full');
}

export interface KvCacheOptions {
  policy: KvPolicyName;
  /** Most tokens a sequence may reach (prompt + generated). */
  maxTokens: number;
  /**
   * Training-free policies: tokens kept per (layer, KV head) (required). DMS: slots per (layer, seq,
   * KV head) (default w+1 + ceil(maxTokens / dms.cr), or maxTokens without cr); when full, the oldest
   * kept token outside the window is evicted and counted in budgetEvictions. Ignored by 'full'.
   */
  budget?: number;
  /** Sequences held at once (default 1). */
  sequences?: number;
  /** Most rows one step may carry (prefill chunk size). */
  maxStepTokens: number;
  /**
   * How K and V are stored (default 'f16': two halves per u32, half the memory and reads of 'f32').
   * With f16 every key and value attention sees is rounded to f16, the step's own ones included.
   */
  dtype?: KvDtype;
}
