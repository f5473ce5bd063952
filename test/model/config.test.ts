import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, readModelConfig } from '../../worker/model/config';
import { HttpSource } from '../../worker/load/source';

const qwen3 = () => ({
  architectures: ['Qwen3ForCausalLM'],
  model_type: 'qwen3',
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  vocab_size: 151936,
  max_position_embeddings: 40960,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  rope_scaling: null,
  tie_word_embeddings: true,
  attention_bias: false,
  hidden_act: 'silu',
  use_sliding_window: false,
  sliding_window: null,
  bos_token_id: 151643,
  eos_token_id: 151645,
});

const qwen2 = () => ({
  architectures: ['Qwen2ForCausalLM'],
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  vocab_size: 151936,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  use_sliding_window: false,
  sliding_window: 32768,
  bos_token_id: 151643,
  eos_token_id: 151645,
});

const llama3 = () => ({
  architectures: ['LlamaForCausalLM'],
  hidden_size: 2048,
  intermediate_size: 8192,
  num_hidden_layers: 16,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  tie_word_embeddings: true,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
});

function expectError(cfg: unknown, pattern: RegExp, gen?: unknown) {
  let err: unknown;
  try {
    parseConfig(cfg, gen);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as Error).message).toMatch(pattern);
}

describe('parseConfig: architectures', () => {
  it('parses a Qwen3 config: qk-norm, no bias, explicit head_dim', () => {
    const { config, generation } = parseConfig(qwen3());
    expect(config).toEqual({
      architecture: 'qwen3',
      hiddenSize: 1024,
      intermediateSize: 3072,
      numLayers: 28,
      numHeads: 16,
      numKvHeads: 8,
      headDim: 128,
      vocabSize: 151936,
      rmsNormEps: 1e-6,
      ropeTheta: 1000000,
      ropeScaling: null,
      maxPositionEmbeddings: 40960,
      tieWordEmbeddings: true,
      attentionBias: false,
      qkNorm: true,
      bosTokenId: 151643,
      eosTokenIds: [151645],
      dms: null,
    });
    expect(generation).toEqual({});
  });

  it('parses a Qwen2 config: q/k/v bias, head_dim from hidden/heads', () => {
    const { config } = parseConfig(qwen2());
    expect(config.architecture).toBe('qwen2');
    expect(config.attentionBias).toBe(true);
    expect(config.qkNorm).toBe(false);
    expect(config.headDim).toBe(64);
    expect(config.numKvHeads).toBe(2);
    expect(config.tieWordEmbeddings).toBe(true);
  });

  it('parses the stories260K Llama config from /work/shared', () => {
    const raw = JSON.parse(readFileSync('/work/shared/models/stories260K/config.json', 'utf8'));
    const { config } = parseConfig(raw);
    expect(config.architecture).toBe('llama');
    expect(config.hiddenSize).toBe(64);
    expect(config.numHeads).toBe(8);
    expect(config.numKvHeads).toBe(4);
    expect(config.headDim).toBe(8);
    expect(config.intermediateSize).toBe(172);
    expect(config.numLayers).toBe(5);
    expect(config.vocabSize).toBe(512);
    expect(config.rmsNormEps).toBe(1e-5);
    expect(config.tieWordEmbeddings).toBe(true);
    expect(config.attentionBias).toBe(false);
    expect(config.qkNorm).toBe(false);
    expect(config.bosTokenId).toBe(1);
    expect(config.eosTokenIds).toEqual([2]);
  });

  it('parses Llama 3 rope scaling', () => {
    const { config } = parseConfig(llama3());
    expect(config.ropeTheta).toBe(500000);
    expect(config.ropeScaling).toEqual({ factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(config.eosTokenIds).toEqual([128001, 128008, 128009]);
  });

  it('accepts the legacy "type" key for rope scaling and maps "default" to null', () => {
    const c = llama3();
    c.rope_scaling = { type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } as never;
    expect(parseConfig(c).config.ropeScaling?.factor).toBe(8);
    c.rope_scaling = { rope_type: 'default' } as never;
    expect(parseConfig(c).config.ropeScaling).toBeNull();
  });

  it('reads rope settings from the newer rope_parameters', () => {
    const c: Record<string, unknown> = llama3();
    delete c.rope_scaling;
    delete c.rope_theta;
    c.rope_parameters = { rope_type: 'llama3', rope_theta: 500000, factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const { config } = parseConfig(c);
    expect(config.ropeTheta).toBe(500000);
    expect(config.ropeScaling?.originalMaxPositionEmbeddings).toBe(8192);
    c.rope_parameters = { rope_type: 'default', rope_theta: 1e6 };
    expect(parseConfig(c).config).toMatchObject({ ropeTheta: 1e6, ropeScaling: null });
  });

  it('falls back to model_type when architectures is absent', () => {
    const c: Record<string, unknown> = qwen2();
    delete c.architectures;
    c.model_type = 'qwen2';
    expect(parseConfig(c).config.architecture).toBe('qwen2');
    c.model_type = 'llama';
    expect(parseConfig(c).config.architecture).toBe('llama');
  });

  it('applies HF defaults for optional keys', () => {
    const c = {
      architectures: ['LlamaForCausalLM'],
      hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100,
    };
    const { config } = parseConfig(c);
    expect(config).toMatchObject({
      numKvHeads: 4, headDim: 16, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: false,
      rmsNormEps: 1e-6, maxPositionEmbeddings: 2048, bosTokenId: null, eosTokenIds: [], dms: null, attentionBias: false,
    });
    const q3 = { ...c, architectures: ['Qwen3ForCausalLM'] };
    // Qwen3Config's head_dim default is 128, not hidden/heads.
    expect(parseConfig(q3).config).toMatchObject({ headDim: 128, tieWordEmbeddings: false, qkNorm: true });
    const q2 = { ...c, architectures: ['Qwen2ForCausalLM'] };
    expect(parseConfig(q2).config).toMatchObject({ tieWordEmbeddings: false, maxPositionEmbeddings: 32768 });
  });

  it('accepts NVIDIA\'s Qwen3ForCausalLMDMS as qwen3', () => {
    const c = { ...qwen3(), architectures: ['Qwen3ForCausalLMDMS'], dms_window_size: 512 };
    expect(parseConfig(c).config.architecture).toBe('qwen3');
  });
});

describe('parseConfig: DMS keys', () => {
  it('reads all dms_* keys', () => {
    const c = { ...qwen3(), dms_window_size: 512, dms_alpha_scale: 50, dms_initial_alpha_offset: 3, dms_cr: 8, dms_separate_alpha: true };
    expect(parseConfig(c).config.dms).toEqual({ windowSize: 512, alphaScale: 50, alphaOffset: 3, cr: 8, separateAlpha: true });
  });

  it('defaults alpha scale 100, offset 5, cr null, borrowed channel', () => {
    const c = { ...qwen3(), dms_window_size: 256 };
    expect(parseConfig(c).config.dms).toEqual({ windowSize: 256, alphaScale: 100, alphaOffset: 5, cr: null, separateAlpha: false });
  });

  it('rejects DMS keys without a window, and bad DMS values', () => {
    expectError({ ...qwen3(), dms_alpha_scale: 100 }, /"dms_window_size" is missing.*dms_alpha_scale/);
    expectError({ ...qwen3(), dms_window_size: 0 }, /"dms_window_size" must be positive/);
    expectError({ ...qwen3(), dms_window_size: 12.5 }, /"dms_window_size" must be an integer/);
    expectError({ ...qwen3(), dms_window_size: '512' }, /"dms_window_size" must be a finite number, got "512"/);
    expectError({ ...qwen3(), dms_window_size: 512, dms_alpha_scale: -1 }, /"dms_alpha_scale" must be positive/);
    expectError({ ...qwen3(), dms_window_size: 512, dms_cr: 0 }, /"dms_cr" must be positive/);
    expectError({ ...qwen3(), dms_window_size: 512, dms_separate_alpha: 1 }, /"dms_separate_alpha" must be true or false/);
    expectError({ ...qwen3(), dms_window_size: 512, dms_alpha_per: 'layer' }, /"dms_alpha_per".*"layer"/);
  });
});

describe('parseConfig: dms_metadata.json (FastDMS packaging)', () => {
  const meta = (m: unknown, c: Record<string, unknown> = llama3()) => parseConfig(c, undefined, m).config.dms;
  const metaError = (m: unknown, re: RegExp, c: Record<string, unknown> = llama3()) => {
    expect(() => parseConfig(c, undefined, m)).toThrow(ConfigError);
    expect(() => parseConfig(c, undefined, m)).toThrow(re);
  };

  it('reads the keys at the top level or wrapped in "config" or "dms"; channel -1 is the last', () => {
    const want = { windowSize: 256, alphaScale: 100, alphaOffset: 5, cr: 8, separateAlpha: false, channel: 63, convention: 'fastdms' };
    const keys = { window_size: 256, alpha_scale: 100, alpha_offset: 5, target_cr: 8 };
    expect(meta(keys)).toEqual(want);
    expect(meta({ config: keys, model_path: '/x' })).toEqual(want);
    expect(meta({ dms: { ...keys, borrowed_query_channel: -1 } })).toEqual(want);
    expect(meta({ window_size: 16, borrowed_query_channel: 5 })).toEqual({ ...want, windowSize: 16, cr: null, channel: 5 });
    expect(meta({ window_size: 16, borrowed_query_channel: -64 })!.channel).toBe(0);
    // FastDMS's fallback names.
    expect(meta({ dms_window_size: 32, dms_alpha_offset: 4.25 })).toEqual({ ...want, windowSize: 32, alphaOffset: 4.25, cr: null });
    // Without a metadata file (null/undefined), nothing changes.
    expect(meta(undefined)).toBeNull();
  });

  it('refuses bad values, naming the file and the key', () => {
    metaError([1, 2], /dms_metadata.json: expected a JSON object, got an array/);
    metaError({ config: 'x' }, /dms_metadata.json: "config": expected a JSON object/);
    metaError({ alpha_scale: 100 }, /dms_metadata.json: "window_size" is missing/);
    metaError({ config: { alpha_scale: 100 } }, /dms_metadata.json: "config": "window_size" is missing/);
    metaError({ window_size: '256' }, /dms_metadata.json: "window_size" must be a finite number, got "256"/);
    metaError({ window_size: 0 }, /dms_metadata.json: "window_size" must be positive/);
    metaError({ window_size: 2.5 }, /dms_metadata.json: "window_size" must be an integer/);
    metaError({ window_size: 1e999 }, /dms_metadata.json: "window_size" must be a finite number, got Infinity/);
    metaError(JSON.parse('{ "window_size": 8, "alpha_offset": -1e999 }'), /"alpha_offset" must be a finite number, got -Infinity/);
    metaError(null, /dms_metadata.json: expected a JSON object, got null/);
    metaError(7, /dms_metadata.json: expected a JSON object, got 7/);
    metaError({ window_size: 8, alpha_scale: 0 }, /dms_metadata.json: "alpha_scale" must be positive/);
    metaError({ window_size: 8, alpha_offset: null, dms_alpha_offset: 'x' }, /"dms_alpha_offset" must be a finite number/);
    metaError({ window_size: 8, alpha_offset: -Infinity }, /"alpha_offset" must be a finite number/);
    metaError({ window_size: 8, target_cr: -8 }, /"target_cr" must be positive/);
    metaError({ window_size: 8, borrowed_query_channel: 64 }, /"borrowed_query_channel" \(64\) is outside the query head of 64 channels/);
    metaError({ window_size: 8, borrowed_query_channel: -65 }, /"borrowed_query_channel" \(-65\) is outside/);
    metaError({ window_size: 8, borrowed_query_channel: 1.5 }, /"borrowed_query_channel" must be an integer/);
    metaError({ window_size: 8, dms_window_size: 16 }, /"dms_window_size" \(16\) disagrees with "window_size" \(8\)/);
  });

  it('with config.json dms_* keys too: they must agree, and the metadata convention applies', () => {
    const c = { ...llama3(), dms_window_size: 256, dms_alpha_scale: 100, dms_initial_alpha_offset: 5 };
    expect(meta({ window_size: 256, target_cr: 8 }, c)).toMatchObject({ windowSize: 256, cr: 8, convention: 'fastdms', channel: 63 });
    metaError({ window_size: 512 }, /dms_metadata.json: "window_size" \(512\) disagrees with config.json "dms_window_size" \(256\)/, c);
    metaError({ window_size: 256, alpha_offset: 4 }, /"alpha_offset" \(4\) disagrees with config.json "dms_initial_alpha_offset" \(5\)/, c);
    metaError({ window_size: 256, target_cr: 4 }, /"target_cr" \(4\) disagrees with config.json "dms_cr"/, { ...c, dms_cr: 8 });
    metaError({ window_size: 256 }, /"dms_separate_alpha" is true/, { ...c, dms_separate_alpha: true });
  });

  it('readModelConfig reads it over HTTP: a 404 or a web page is "absent", other HTTP errors are errors', async () => {
    const files: Record<string, { status: number; body: string; type?: string }> = {
      'config.json': { status: 200, body: JSON.stringify(llama3()) },
      'generation_config.json': { status: 404, body: '' },
    };
    const fetchFn = (async (url: string) => {
      const f = files[new URL(url).pathname.slice(1)] ?? { status: 404, body: '' };
      return new Response(f.status === 200 ? f.body : null, { status: f.status, headers: { 'content-type': f.type ?? 'application/json' } });
    }) as unknown as typeof fetch;
    const read = () => readModelConfig(new HttpSource('http://host/', { fetch: fetchFn }));
    expect((await read()).config.dms).toBeNull();
    files['dms_metadata.json'] = { status: 200, body: '<!doctype html><html></html>', type: 'text/html' };
    expect((await read()).config.dms).toBeNull();
    files['dms_metadata.json'] = { status: 200, body: JSON.stringify({ config: { window_size: 256, target_cr: 8 } }) };
    expect((await read()).config.dms).toMatchObject({ windowSize: 256, convention: 'fastdms' });
    files['dms_metadata.json'] = { status: 200, body: '{ "window_size": ' };
    await expect(read()).rejects.toThrow(/dms_metadata.json \(http:\/\/host\/\) is not valid JSON/);
    files['dms_metadata.json'] = { status: 200, body: JSON.stringify({ window_size: -1 }) };
    await expect(read()).rejects.toThrow(/dms_metadata.json: "window_size" must be positive.*\(http:\/\/host\/\)/);
    files['dms_metadata.json'] = { status: 500, body: '' };
    await expect(read()).rejects.toThrow(/HTTP 500.*dms_metadata.json/);
    files['dms_metadata.json'] = { status: 403, body: '' };
    await expect(read()).rejects.toThrow(/HTTP 403/);
  });
});

describe('parseConfig: generation config', () => {
  it('merges eos ids and dedupes, reads sampling defaults', () => {
    const gen = { eos_token_id: [151645, 151643], temperature: 0.6, top_p: 0.95, top_k: 20, do_sample: true, bos_token_id: 151643 };
    const { config, generation } = parseConfig(qwen3(), gen);
    expect(config.eosTokenIds).toEqual([151645, 151643]);
    expect(generation).toEqual({ temperature: 0.6, topP: 0.95, topK: 20 });
  });

  it('takes bos from generation_config when config has none, and do_sample false means greedy', () => {
    const c: Record<string, unknown> = qwen3();
    delete c.bos_token_id;
    const { config, generation } = parseConfig(c, { bos_token_id: 151643, do_sample: false, temperature: 0.7 });
    expect(config.bosTokenId).toBe(151643);
    expect(generation.temperature).toBe(0);
  });

  it('rejects malformed generation configs', () => {
    expectError(qwen3(), /generation_config\.json: "top_p" must be in \(0, 1\], got 1\.5/, { top_p: 1.5 });
    expectError(qwen3(), /generation_config\.json: "temperature" must be non-negative/, { temperature: -0.1 });
    expectError(qwen3(), /generation_config\.json: "top_k" must be an integer/, { top_k: 2.5 });
    expectError(qwen3(), /generation_config\.json: "eos_token_id"/, { eos_token_id: ['x'] });
    expectError(qwen3(), /generation_config\.json: expected a JSON object/, [1, 2]);
  });
});

describe('parseConfig: malformed configs', () => {
  const without = (k: string) => {
    const c: Record<string, unknown> = qwen3();
    delete c[k];
    return c;
  };
  for (const k of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size']) {
    it(`names the missing "${k}"`, () => expectError(without(k), new RegExp(`config\\.json: "${k}" is missing`)));
  }

  it('rejects non-objects', () => {
    expectError(null, /config\.json: expected a JSON object/);
    expectError([], /config\.json: expected a JSON object, got an array/);
    expectError('x', /config\.json: expected a JSON object/);
  });

  it('rejects unsupported architectures and lists the supported ones', () => {
    expectError({ ...qwen3(), architectures: ['MistralForCausalLM'] }, /unsupported architecture "MistralForCausalLM"; supported: Qwen3ForCausalLM.*Qwen2ForCausalLM.*LlamaForCausalLM/);
    const c: Record<string, unknown> = qwen3();
    delete c.architectures;
    c.model_type = 'gemma';
    expectError(c, /"model_type" names unsupported architecture "gemma"/);
    delete c.model_type;
    expectError(c, /neither "architectures" nor "model_type"/);
    expectError({ ...qwen3(), architectures: [] }, /"architectures" must be a non-empty list/);
    expectError({ ...qwen3(), architectures: 'Qwen3ForCausalLM' }, /"architectures" must be a non-empty list/);
  });

  it('checks types and positivity of numeric fields', () => {
    expectError({ ...qwen3(), hidden_size: '1024' }, /"hidden_size" must be a finite number, got "1024"/);
    expectError({ ...qwen3(), hidden_size: 0 }, /"hidden_size" must be positive, got 0/);
    expectError({ ...qwen3(), num_hidden_layers: -2 }, /"num_hidden_layers" must be positive/);
    expectError({ ...qwen3(), intermediate_size: 10.5 }, /"intermediate_size" must be an integer, got 10\.5/);
    expectError({ ...qwen3(), vocab_size: true }, /"vocab_size" must be a finite number/);
    expectError({ ...qwen3(), rms_norm_eps: 0 }, /"rms_norm_eps" must be positive/);
    expectError({ ...qwen3(), rms_norm_eps: 'tiny' }, /"rms_norm_eps" must be a finite number/);
    expectError({ ...qwen3(), rope_theta: -1 }, /"rope_theta" must be positive/);
    expectError({ ...qwen3(), max_position_embeddings: 0 }, /"max_position_embeddings" must be positive/);
    expectError({ ...qwen3(), head_dim: 0 }, /"head_dim" must be positive/);
    expectError({ ...qwen3(), head_dim: 63 }, /"head_dim" \(63\) must be even/);
    expectError({ ...qwen3(), tie_word_embeddings: 'yes' }, /"tie_word_embeddings" must be true or false/);
  });

  it('checks head counts', () => {
    expectError({ ...qwen3(), num_attention_heads: 8, num_key_value_heads: 3 }, /config\.json: "num_key_value_heads" \(3\) must divide "num_attention_heads" \(8\)/);
    expectError({ ...qwen2(), hidden_size: 900 }, /"hidden_size" \(900\) must be a multiple of "num_attention_heads" \(14\)/);
  });

  it('checks rope scaling', () => {
    for (const type of ['linear', 'dynamic', 'yarn']) {
      expectError({ ...llama3(), rope_scaling: { rope_type: type, factor: 4 } }, new RegExp(`"rope_scaling" has unsupported rope type "${type}"`));
    }
    expectError({ ...llama3(), rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } }, /"original_max_position_embeddings" is missing/);
    expectError({ ...llama3(), rope_scaling: { rope_type: 'llama3', factor: 0, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, /"factor" must be positive/);
    expectError({ ...llama3(), rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, /"high_freq_factor" \(4\) must be greater than "low_freq_factor" \(4\)/);
    expectError({ ...llama3(), rope_scaling: 'llama3' }, /"rope_scaling": expected a JSON object/);
  });

  it('rejects sliding windows, unsupported activations and biases', () => {
    expectError({ ...qwen2(), use_sliding_window: true }, /"use_sliding_window" is true/);
    expect(parseConfig({ ...qwen2(), use_sliding_window: false }).config.architecture).toBe('qwen2');
    expectError({ ...qwen3(), layer_types: ['full_attention', 'sliding_attention'] }, /"layer_types"/);
    expectError({ ...qwen3(), hidden_act: 'gelu' }, /"hidden_act" is "gelu"/);
    expectError({ ...llama3(), mlp_bias: true }, /"mlp_bias" is true/);
    expectError({ ...llama3(), attention_bias: true }, /"attention_bias" is true/);
  });

  it('checks token ids', () => {
    expectError({ ...qwen3(), eos_token_id: 'eos' }, /"eos_token_id" must be a non-negative integer token id/);
    expectError({ ...qwen3(), eos_token_id: [1, -1] }, /"eos_token_id"/);
    expectError({ ...qwen3(), eos_token_id: 200000 }, /"eos_token_id" \(200000\) is outside the vocabulary/);
    expectError({ ...qwen3(), bos_token_id: [1, 2] }, /"bos_token_id" must be a single token id/);
    expect(parseConfig({ ...qwen3(), bos_token_id: null, eos_token_id: null }).config).toMatchObject({ bosTokenId: null, eosTokenIds: [] });
  });
});
