/**
 * The KV cache contract between the engine and every cache policy (full, dms, window, tova, h2o).
 * See docs/kv-cache.md for the layout. One forward step processes `tokens` new rows; each row belongs
 * to one sequence segment. The engine calls, per step:
 *   begin(enc, segments)                       once, before layer 0
 *   for each layer: write(enc, layer, qkv, alpha); attend(enc, layer, qkv, out)
 *   end(enc)                                   once, after the last layer
 * All of it is recorded into the same Encoder and submitted by the engine: no per-step readback.
 */
import type { Encoder } from '../gpu/encoder';
import type { KvPolicyName, KvStats } from '../model/types';

export interface Segment {
  /** Which sequence (0 for a single conversation; chains 0..W-1). */
  seq: number;
  /** First row of this segment in the step's activations. */
  row: number;
  /** Rows (new tokens) of this segment. */
  tokens: number;
  /** Position of its first token in the sequence. */
  pos0: number;
}

export interface KvCache {
  readonly policy: KvPolicyName;
  begin(enc: Encoder, segments: Segment[]): void;
  /**
   * Stores this step's keys and values of `layer`. qkv is f32 [rows][(Hq + 2*Hkv) * headDim]: q heads,
   * then k heads (already normed and roped), then v heads. alpha is f32 [rows][Hkv] of DMS decision
   * logits (positive = evict after the window), or null when the model has no DMS.
   */
  write(enc: Encoder, layer: number, qkv: GPUBuffer, alpha: GPUBuffer | null): void;
  /** out f32 [rows][Hq * headDim] = softmax(q k^T / sqrt(d)) v over the keys visible to each row. */
  attend(enc: Encoder, layer: number, qkv: GPUBuffer, out: GPUBuffer): void;
  end(enc: Encoder): void;
  /** Metrics (docs/kv-cache.md); may read back small counters, so call it after a step, not inside. */
  stats(): Promise<KvStats>;
  /** Drops a sequence's tokens (all sequences when omitted). */
  reset(seq?: number): void;
  destroy(): void;
}

export interface KvCacheOptions {
  policy: KvPolicyName;
  /** Most tokens a sequence may reach (prompt + generated). */
  maxTokens: number;
  /** Training-free policies: tokens kept per (layer, KV head); DMS: cap on slots per (layer, KV head). */
  budget?: number;
  /** Sequences held at once. */
  sequences?: number;
  /** Most rows one step may carry (prefill chunk size). */
  maxStepTokens: number;
}
