/**
 * The contract between the UI (app/) and the model worker (worker/worker.ts), used through Comlink.
 * Both sides import these types, and the page the preset catalogue below, and nothing else from each other.
 */
import type { KvDtype, KvPolicyName, KvResidency, KvStats, WeightFormat } from './model/types';

export type { KvDtype, KvPolicyName, KvResidency, KvStats, WeightFormat };

/**
 * The models the page's model dialog offers, with their sizes and whether they fit an adapter's limits.
 * Plain data and the pre-flight's arithmetic, no GPU or worker state, so the page computes them itself;
 * this line is the one place that says where the catalogue lives in worker/.
 */
export { modelPresets, presetFit } from './model/presets';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface LoadRequest {
  /** 'default' (the embedded model), a base URL in the Hugging Face resolve/main/ form, or a repo id. */
  model: string;
  weights?: WeightFormat;
  /** KV policy and budget the engine is built with. */
  kv?: KvPolicyName;
  kvBudget?: number;
  /**
   * How the KV cache stores K and V on the GPU: 'f16' (the default: two halves per u32, half the memory
   * and the reads of 'f32'), 'f32' (exact), 'q8' (int8 + a scale per token and head, ~0.53x of f16) or
   * 'q4' (4-bit + a scale per 32 values, ~0.28x; head dims in 32s). Also what the pre-flight sizes the cache with.
   */
  kvDtype?: KvDtype;
  /** Most tokens per conversation (prompt + reply). */
  maxContext?: number;
  /** When the model cannot be stored in IndexedDB (quota, no IndexedDB), run it from the network instead of failing. */
  memoryFallback?: boolean;
  /** Most parallel reasoning chains a chat request may ask for (KV sequences allocated; docs/hyperscaling.md). Default 1. */
  chains?: number;
}

export interface LoadProgress {
  /**
   * fetch: downloading into the browser's storage; stream: downloading a checkpoint straight onto the GPU,
   * quantized as it arrives; upload: weights onto the GPU; store: saving the quantized copy for next time.
   */
  phase: 'fetch' | 'stream' | 'upload' | 'store' | 'compile' | 'ready';
  file?: string;
  loadedBytes: number;
  totalBytes: number;
  /** Bytes per second over the last second, when fetching. */
  bytesPerSecond?: number;
}

export interface ModelInfo {
  name: string;
  architecture: string;
  parameters: number;
  weights: WeightFormat;
  weightBytes: number;
  numLayers: number;
  numKvHeads: number;
  /** rule: whose decision rule the checkpoint follows (docs/real-models.md, "DMS checkpoints"); absent = 'nvidia'. */
  dms: { windowSize: number; cr: number | null; rule?: 'nvidia' | 'fastdms' } | null;
  adapter: string;
  maxContext: number;
  /** How the KV cache stores K and V (the engine always sets it). */
  kvDtype?: KvDtype;
  /** Whether the weights came from (or were saved to) the browser's storage, and any warning about that copy. */
  stored?: boolean;
  storageWarning?: string;
  /** How this load went (the worker sets it). */
  load?: LoadReport;
}

/** Start time and bytes of one load, shown to the user. */
export interface LoadReport {
  /** cold: the weights came over the network; warm: from the browser's storage. */
  start: 'cold' | 'warm';
  /** From the load request to ready. */
  ms: number;
  /** Bytes fetched over the network by this load. */
  downloadedBytes: number;
  /** Weight bytes the engine read (from storage or the network). */
  readBytes: number;
  weights: WeightFormat;
  /** What the weight store now holds for this model: the files as published, a quantized copy, or nothing. */
  stored: 'checkpoint' | 'quantized' | null;
  storedBytes: number;
}

/** A model kept in the browser's storage (the weight store). */
export interface StoredModelInfo {
  id: string;
  name: string;
  bytes: number;
  storedBytes: number;
  complete: boolean;
  lastUsed: number;
  /** Set for a quantized copy made on this machine from a checkpoint (its format). */
  weights?: WeightFormat;
}

export interface SamplingOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
}

/** OpenAI chat-completions shaped request. */
export interface ChatRequest extends SamplingOptions {
  messages: ChatMessage[];
  /**
   * Parallel chains W (hyper-scaling mode): W replies are sampled at once from the same prompt (chain i
   * with seed + i), streamed with `ChatDelta.chain`, and combined by a vote (`ChatResult.vote`). At most
   * the `chains` the model was loaded with. Such a turn does not continue the cached conversation.
   */
  chains?: number;
}

/** One streamed chunk (the OpenAI `choices[0].delta` idea, flattened). */
export interface ChatDelta {
  /** New text since the last delta. */
  content: string;
  tokenIds: number[];
  /** The cache's figures as last read; absent while none could be read (the text still streams). */
  kv?: KvStats;
  decodeTokensPerSecond: number;
  /** In chains mode: the chain this delta's content and tokens belong to. */
  chain?: number;
}

/** One chain of a chains-mode reply. */
export interface ChainReply {
  content: string;
  finishReason: 'stop' | 'length' | 'abort';
  completionTokens: number;
  /** The chain's final answer (\boxed{} or "The answer is X."), or null. */
  answer: string | null;
  /** Mean log-probability of its tokens under the model. */
  meanLogProb: number;
}

/** How the chains were combined: 'majority' over stated answers, or 'logprob' (none stated one: the best-scored chain). */
export interface ChainVote {
  rule: 'majority' | 'logprob';
  answer: string | null;
  counts: Record<string, number>;
  /** The chain whose text is the reply's content. */
  chain: number;
}

/** The oldest turns left out because the conversation outgrew the context. */
export interface ContextDropped {
  messages: number;
  /** Prompt tokens the full conversation had beyond the one that was sent. */
  tokens: number;
}

export interface ChatResult {
  content: string;
  /** Set when the oldest turns no longer fit the context and were left out of this turn's prompt. */
  dropped?: ContextDropped;
  finishReason: 'stop' | 'length' | 'abort';
  promptTokens: number;
  /** Prompt tokens continued from the cached conversation instead of being prefilled again. */
  cachedTokens?: number;
  completionTokens: number;
  kv: KvStats;
  timing: Timing;
  /** Chains mode: every chain, and the vote that picked `content`. */
  chains?: ChainReply[];
  vote?: ChainVote;
}

export interface Timing {
  prefillMs: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
}

/** Where a model would come from and what loading it would download (WorkerApi.describeModel). */
export interface ModelOrigin {
  /** The model's base URL. */
  base: string;
  /** Its scheme, host and port. */
  origin: string;
  /** Total bytes of its files, or null when that could not be learned. */
  bytes: number | null;
  files: number;
  /** A complete copy is already in this browser's storage. */
  stored: boolean;
  /** Why the size is unknown (the address has no model, the server cannot be reached). */
  problem?: string;
}

/** What worker/worker.ts exposes. Callbacks are passed with Comlink.proxy. */
export interface WorkerApi {
  /**
   * `onDeviceLost` is called if the GPU device of this model is lost later (driver reset, GPU process
   * crash): the model is gone, and the next load makes a new device.
   */
  load(req: LoadRequest, onProgress?: (p: LoadProgress) => void, onDeviceLost?: (message: string) => void): Promise<ModelInfo>;
  /** Streams deltas; resolves when the reply ends. A new chat turn continues the cached conversation when its messages extend the last ones. */
  chat(req: ChatRequest, onDelta: (d: ChatDelta) => void): Promise<ChatResult>;
  /**
   * The model loaded now, or null. A load keeps the model it replaces until the new one is ready (a small
   * one also through a failed load; worker.ts, KEEP_WHILE_LOADING_BYTES), so after a failed load this says
   * whether the previous model is still there to use.
   */
  current(): Promise<ModelInfo | null>;
  /** Stops the running chat at the next token; the engine stays usable. */
  abort(): void;
  kvStats(): Promise<KvStats | null>;
  /** Which positions of the conversation each (layer, KV head) still holds; null before a model loads. */
  kvResidency(): Promise<KvResidency | null>;
  unload(): Promise<void>;
  /** Models kept in the browser's storage, most recently used first. */
  listStored(): Promise<StoredModelInfo[]>;
  deleteStored(id: string): Promise<void>;
  /** Where a model spec points and how much it would download, without loading or storing anything. */
  describeModel(model: string): Promise<ModelOrigin>;
}
