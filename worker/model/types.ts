/** Shapes shared by the loader, the engine and the KV cache. */

export type Architecture = 'qwen3' | 'qwen2' | 'llama';
export type WeightFormat = 'f32' | 'f16' | 'q8' | 'q4';
export type KvPolicyName = 'full' | 'dms' | 'window' | 'tova' | 'h2o';
/**
 * How the KV cache stores K and V on the GPU (docs/kv-cache.md): 'f16' (the default) packs two halves
 * per u32 (2 bytes a value, rounded to nearest when written), 'f32' keeps them exact (4 bytes a value),
 * 'q8' int8 with one f32 scale per (token, KV head) (symmetric, round to nearest), 'q4' 4-bit with one
 * f16 scale per 32 values (llama.cpp's q4_0 grid). worker/kv/quant.ts has the layouts.
 */
export type KvDtype = 'f32' | 'f16' | 'q8' | 'q4';

/** A Hugging Face config.json, validated and normalised (see ./config.ts). */
export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Llama 3 `rope_scaling` (type llama3), or null. */
  ropeScaling: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number } | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  attentionBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  bosTokenId: number | null;
  /** From config.json and generation_config.json, merged. */
  eosTokenIds: number[];
  dms: DmsConfig | null;
}

export interface DmsConfig {
  windowSize: number;
  alphaScale: number;
  alphaOffset: number;
  /** Target compression ratio, informational. */
  cr: number | null;
  /** Adapter variant: alpha from self_attn.dms_proj_alpha(_norm) instead of the borrowed q channel. */
  separateAlpha: boolean;
  /**
   * The borrowed q channel (0 ≤ channel < headDim) of the first query head of each KV group; absent: the
   * last (headDim − 1), the convention of both published formats.
   */
  channel?: number;
  /**
   * Whose decision rule (docs/real-models.md, "DMS checkpoints"); absent means 'nvidia'.
   * - 'nvidia' (config.json `dms_*` keys, nvidia/Qwen3-8B-DMS-8x): the decision read at token t+1 marks
   *   token t (shift by one), and the borrowed channel is zeroed before and after RoPE.
   * - 'fastdms' (a `dms_metadata.json` beside the weights, shisa-ai/FastDMS): token t's own decision marks
   *   token t, and the channel is zeroed before RoPE only (RoPE then rotates channel d/2 − 1 into it).
   */
  convention?: 'nvidia' | 'fastdms';
}

/** Generation defaults from generation_config.json. */
export interface GenerationDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
}

/** A weight on the GPU, split along rows so no part exceeds maxStorageBufferBindingSize. */
export interface GpuMatrix {
  label: string;
  format: WeightFormat;
  rows: number;
  cols: number;
  parts: MatrixPart[];
}

/**
 * Packing of one part (row-major, rows of `cols` logical elements):
 * - f32: data f32[rows][cols]
 * - f16: data u32[rows][ceil(cols/2)], element c in the low half of word c/2 when c is even
 * - q8:  groups of 32 along cols (cols padded with zeros to a multiple of 32);
 *        data u32[rows][cols32/4] of int8 (element c in byte c%4 of word c/4), scales f16[rows][cols32/32]
 *        two a u32 (group g in the low half of word g/2 when g is even; a row's words start afresh, an odd
 *        row ending in a zero half: worker/load/pack.ts, rowScaleWords);
 *        w = q * scale
 * - q4:  groups of 32; data u32[rows][cols32/8] of 4-bit codes (element c in bits 4*(c%8) of word c/8),
 *        scales f16 as for q8; w = (q - 8) * scale (4.5 bits a weight, llama.cpp's q4_0 and WebLLM's q4f16 size)
 */
export interface MatrixPart {
  rowStart: number;
  rows: number;
  data: GPUBuffer;
  scales: GPUBuffer | null;
}

export interface KvStats {
  policy: KvPolicyName;
  /** Tokens that entered the cache (per sequence, summed over sequences). */
  tokensSeen: number;
  /** Resident KV tokens now, summed over layers and KV heads. */
  residentTokens: number;
  /** Peak over time of resident KV tokens summed over layers and KV heads. */
  peakTokens: number;
  /** The same peak for a full cache. */
  peakTokensFull: number;
  /** Sum over decode steps of tokens read by attention, over layers and KV heads. */
  tokenReads: number;
  tokenReadsFull: number;
  /** peakTokensFull / peakTokens. */
  compression: number;
  /** Bytes of K and V resident at peak (peakTokens x bytesPerToken), and the cache's allocated GPU bytes. */
  peakBytes: number;
  allocatedBytes: number;
  /**
   * How K and V are stored, and the bytes of K and V of one resident token in one (layer, KV head):
   * 2 x headDim x (2 for f16, 4 for f32); attention reads that much per resident token. The slot cache
   * always sets both (optional only so that hand-made stats stay valid).
   */
  kvDtype?: KvDtype;
  bytesPerToken?: number;
  /** Times the budget overflowed and the fallback evicted (DMS: oldest kept token outside the window). */
  budgetEvictions: number;
}

/**
 * Which positions are resident in the KV cache of one sequence, per (layer, KV head): the picture of
 * what DMS keeps. bits[(layer * kvHeads + head) * tokens + position] is 1 when resident.
 */
export interface KvResidency {
  tokens: number;
  layers: number;
  kvHeads: number;
  /** DMS window (the last window+1 tokens are always resident), or null. */
  window: number | null;
  bits: Uint8Array;
}
