/**
 * Models the picker offers, with their published config.json (the keys that fix sizes, copied from the
 * Hugging Face repos) and what they need on the GPU in each weight format, computed by the pre-flight.
 *
 * For the app: `modelPresets()` returns every preset with `sizes[format]` (weight bytes, GPU total at
 * the preset's default context and policy, the download size of the converted form) and `gpuMemory`
 * (the smallest total); `presetFit(preset, limits)` says which format the engine would choose on this
 * adapter, or the PreflightError message.
 */
import { parseConfig } from './config';
import { preflight, PreflightError, type PreflightLimits, type PreflightReport, WEIGHT_FORMATS } from '../load/preflight';
import type { KvPolicyName, ModelConfig, WeightFormat } from './types';

export interface ModelPreset {
  /** Hugging Face repo id, what `--model` / openModelSource take. */
  id: string;
  label: string;
  /** The published config.json (size-relevant keys). */
  config: Record<string, unknown>;
  /** The published dms_metadata.json (FastDMS packaging: the DMS settings beside the weights), if any. */
  dmsMetadata?: Record<string, unknown>;
  /** Context the sizes below assume. */
  context: number;
  kv: KvPolicyName;
  /** Bytes of the published safetensors (bf16). */
  checkpointBytes: number;
  notes?: string;
}

const qwen3 = (hidden: number, inter: number, layers: number, heads: number, tie: boolean): Record<string, unknown> => ({
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: hidden, intermediate_size: inter, num_hidden_layers: layers,
  num_attention_heads: heads, num_key_value_heads: 8, head_dim: 128, vocab_size: 151936, max_position_embeddings: 40960,
  rope_theta: 1000000, rope_scaling: null, rms_norm_eps: 1e-6, tie_word_embeddings: tie, hidden_act: 'silu', attention_bias: false,
  use_sliding_window: false, bos_token_id: 151643, eos_token_id: 151645, torch_dtype: 'bfloat16',
});

/** Llama 3.2 1B (base; the Instruct model differs only in its eos ids). */
const llama32_1b = (): Record<string, unknown> => ({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
  num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, vocab_size: 128256, max_position_embeddings: 131072,
  rope_theta: 500000, rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rms_norm_eps: 1e-5, tie_word_embeddings: true, hidden_act: 'silu', attention_bias: false, mlp_bias: false,
  bos_token_id: 128000, eos_token_id: 128001, torch_dtype: 'bfloat16',
});

const PRESETS: Omit<ModelPreset, 'checkpointBytes'>[] = [
  {
    id: 'nvidia/Qwen3-8B-DMS-8x', label: 'Qwen3 8B DMS 8x', context: 8192, kv: 'dms',
    config: { ...qwen3(4096, 12288, 36, 32, false), architectures: ['Qwen3ForCausalLMDMS'], dms_window_size: 256, dms_alpha_scale: 100, dms_initial_alpha_offset: 5, dms_cr: 8 },
    notes: 'Qwen3-8B retrofitted with DMS (8x KV compression). DMS keys as the engine reads them (window 256, CR 8); the sizes do not depend on them except the KV cache.',
  },
  {
    id: 'shisa-ai/Llama-3.2-1B-DMS-8x', label: 'Llama 3.2 1B DMS 8x', context: 8192, kv: 'dms',
    config: llama32_1b(),
    // FastDMS packaging: no dms_* key in config.json; the settings are in dms_metadata.json (window 256 as
    // FastDMS's benchmarks of this model record it, target 8x; scale and offset are FastDMS's defaults; the
    // file in the repo decides at load, and the sizes depend only on the window).
    dmsMetadata: { window_size: 256, alpha_scale: 100, alpha_offset: 5, target_cr: 8 },
    notes: 'Llama 3.2 1B retrofitted with DMS by shisa-ai (FastDMS packaging: dms_metadata.json beside the weights). About 0.7 GB at q4: the natural in-tab DMS model.',
  },
  { id: 'Qwen/Qwen3-0.6B', label: 'Qwen3 0.6B', context: 8192, kv: 'full', config: qwen3(1024, 3072, 28, 16, true) },
  { id: 'Qwen/Qwen3-1.7B', label: 'Qwen3 1.7B', context: 8192, kv: 'full', config: qwen3(2048, 6144, 28, 16, true) },
  { id: 'Qwen/Qwen3-4B', label: 'Qwen3 4B', context: 8192, kv: 'full', config: qwen3(2560, 9728, 36, 32, true) },
  { id: 'Qwen/Qwen3-8B', label: 'Qwen3 8B', context: 8192, kv: 'full', config: qwen3(4096, 12288, 36, 32, false) },
  {
    id: 'Qwen/Qwen2.5-1.5B-Instruct', label: 'Qwen2.5 1.5B Instruct', context: 8192, kv: 'full',
    config: {
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28,
      num_attention_heads: 12, num_key_value_heads: 2, vocab_size: 151936, max_position_embeddings: 32768, rope_theta: 1000000,
      rms_norm_eps: 1e-6, tie_word_embeddings: true, hidden_act: 'silu', use_sliding_window: false, bos_token_id: 151643,
      eos_token_id: 151645, torch_dtype: 'bfloat16',
    },
  },
  {
    id: 'meta-llama/Llama-3.2-1B-Instruct', label: 'Llama 3.2 1B Instruct', context: 8192, kv: 'full',
    config: { ...llama32_1b(), eos_token_id: [128001, 128008, 128009] },
    notes: 'Gated on the Hub: the user needs a token with access.',
  },
];

export interface PresetSize {
  /** Weight buffers on the GPU. */
  weightBytes: number;
  /** Weights + KV at the preset's context + activations + overhead. */
  gpuBytes: number;
  /** Download of the converted form (about the packed weights; the manifest and tokenizer are extra). */
  downloadBytes: number;
}

export interface PresetInfo extends ModelPreset {
  parsed: ModelConfig;
  parameters: number;
  sizes: Record<WeightFormat, PresetSize>;
  kvBytes: number;
  /** GPU memory the smallest format (q4) needs at the preset's context. */
  gpuMemory: number;
}

/** A budget so large that only the buffer limits could refuse (sizes are then always reported). */
const UNLIMITED: PreflightLimits = { maxBufferSize: 2 ** 40, maxStorageBufferBindingSize: 2 ** 40, memoryBytes: 2 ** 50 };

function describe(p: Omit<ModelPreset, 'checkpointBytes'>): PresetInfo {
  const { config } = parseConfig(p.config, undefined, p.dmsMetadata);
  const r = preflight(config, UNLIMITED, { weights: 'f32', maxContext: p.context, kv: p.kv });
  const sizes = {} as Record<WeightFormat, PresetSize>;
  for (const f of WEIGHT_FORMATS) {
    const e = r.formats[f];
    sizes[f] = { weightBytes: e.weightBytes, gpuBytes: e.totalBytes, downloadBytes: e.weightBytes };
  }
  return {
    ...p, parsed: config, parameters: r.parameters, sizes, kvBytes: r.kvBytes, gpuMemory: sizes.q4.gpuBytes,
    checkpointBytes: r.parameters * 2,
  };
}

/** Every preset with its sizes (computed once). */
let cached: PresetInfo[] | null = null;
export function modelPresets(): PresetInfo[] {
  cached ??= PRESETS.map(describe);
  return cached;
}

export function findPreset(id: string): PresetInfo | undefined {
  return modelPresets().find((p) => p.id === id);
}

/** What the engine would pick for this preset on an adapter with `limits` (and optional memory budget). */
export function presetFit(p: PresetInfo, limits: PreflightLimits, weights?: WeightFormat): { ok: true; report: PreflightReport } | { ok: false; error: PreflightError } {
  try {
    return { ok: true, report: preflight(p.parsed, limits, { weights, maxContext: p.context, kv: p.kv }) };
  } catch (e) {
    if (e instanceof PreflightError) return { ok: false, error: e };
    throw e;
  }
}
