/**
 * Hugging Face `config.json` (+ `generation_config.json`) → validated {@link ModelConfig}.
 *
 * Defaults follow the Hugging Face `transformers` config classes (LlamaConfig, Qwen2Config, Qwen3Config)
 * for the optional keys; the keys that fix the tensor shapes are required. Every error names the field.
 */
import type { ModelSource } from '../load/source';
import type { Architecture, DmsConfig, GenerationDefaults, ModelConfig } from './types';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Obj = Record<string, unknown>;

/** Recognised `architectures[0]` names. Qwen3ForCausalLMDMS is NVIDIA's DMS retrofit of Qwen3. */
const ARCHITECTURES: Record<string, Architecture> = {
  Qwen3ForCausalLM: 'qwen3',
  Qwen3ForCausalLMDMS: 'qwen3',
  Qwen2ForCausalLM: 'qwen2',
  LlamaForCausalLM: 'llama',
};
const MODEL_TYPES: Record<string, Architecture> = { qwen3: 'qwen3', qwen2: 'qwen2', llama: 'llama' };

/** Per-architecture defaults of the HF config classes for keys that may be absent. */
const HF_DEFAULTS: Record<Architecture, { rmsNormEps: number; maxPos: number; headDim: number | null }> = {
  llama: { rmsNormEps: 1e-6, maxPos: 2048, headDim: null },
  qwen2: { rmsNormEps: 1e-6, maxPos: 32768, headDim: null },
  // Qwen3Config has head_dim=128 as its default, not hidden_size / num_attention_heads.
  qwen3: { rmsNormEps: 1e-6, maxPos: 32768, headDim: 128 },
};

const fmt = (v: unknown): string => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v); // JSON.stringify would say null
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
};

class Reader {
  constructor(readonly file: string, readonly obj: Obj) {}

  err(field: string, what: string): ConfigError {
    return new ConfigError(`${this.file}: "${field}" ${what}`);
  }

  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }

  num(field: string, kind: 'int' | 'float', min: 'positive' | 'nonneg' | 'any', def?: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (def !== undefined) return def;
      throw this.err(field, 'is missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.err(field, `must be a finite number, got ${fmt(v)}`);
    if (kind === 'int' && !Number.isInteger(v)) throw this.err(field, `must be an integer, got ${fmt(v)}`);
    if (min === 'positive' && !(v > 0)) throw this.err(field, `must be positive, got ${fmt(v)}`);
    if (min === 'nonneg' && !(v >= 0)) throw this.err(field, `must be non-negative, got ${fmt(v)}`);
    return v;
  }

  posInt(field: string, def?: number): number {
    return this.num(field, 'int', 'positive', def);
  }
  nonNegInt(field: string, def?: number): number {
    return this.num(field, 'int', 'nonneg', def);
  }
  posFloat(field: string, def?: number): number {
    return this.num(field, 'float', 'positive', def);
  }
  nonNegFloat(field: string, def?: number): number {
    return this.num(field, 'float', 'nonneg', def);
  }
  float(field: string, def?: number): number {
    return this.num(field, 'float', 'any', def);
  }

  bool(field: string, def: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') throw this.err(field, `must be true or false, got ${fmt(v)}`);
    return v;
  }

  optString(field: string): string | undefined {
    const v = this.obj[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw this.err(field, `must be a string, got ${fmt(v)}`);
    return v;
  }

  /** A token id or a list of token ids (null/absent → []). */
  tokenIds(field: string): number[] {
    const v = this.obj[field];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw this.err(field, `must be a non-negative integer token id or a list of them, got ${fmt(v)}`);
      }
    }
    return list as number[];
  }
}

function asObject(v: unknown, file: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ConfigError(`${file}: expected a JSON object, got ${Array.isArray(v) ? 'an array' : fmt(v)}`);
  }
  return v as Obj;
}

function detectArchitecture(r: Reader): Architecture {
  const supported = `supported: ${Object.keys(ARCHITECTURES).join(', ')} (or model_type ${Object.keys(MODEL_TYPES).join(', ')})`;
  const archs = r.obj.architectures;
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== 'string') {
      throw r.err('architectures', `must be a non-empty list of strings, got ${fmt(archs)}`);
    }
    const a = ARCHITECTURES[archs[0]];
    if (!a) throw r.err('architectures', `names unsupported architecture ${fmt(archs[0])}; ${supported}`);
    return a;
  }
  const mt = r.optString('model_type');
  if (mt === undefined) throw new ConfigError(`${r.file}: neither "architectures" nor "model_type" is given; ${supported}`);
  const a = MODEL_TYPES[mt];
  if (!a) throw r.err('model_type', `names unsupported architecture ${fmt(mt)}; ${supported}`);
  return a;
}

/** `rope_scaling` (or the newer `rope_parameters`) → llama3 parameters or null. */
function parseRopeScaling(r: Reader, field: string): ModelConfig['ropeScaling'] {
  const v = r.obj[field];
  if (v === undefined || v === null) return null;
  const rs = new Reader(`${r.file}: "${field}"`, asObject(v, `${r.file}: "${field}"`));
  const type = rs.optString('rope_type') ?? rs.optString('type');
  if (type === undefined || type === 'default') return null;
  if (type !== 'llama3') {
    throw r.err(field, `has unsupported rope type ${fmt(type)} (supported: default, llama3)`);
  }
  const factor = rs.posFloat('factor');
  const lowFreqFactor = rs.posFloat('low_freq_factor');
  const highFreqFactor = rs.posFloat('high_freq_factor');
  const originalMaxPositionEmbeddings = rs.posInt('original_max_position_embeddings');
  if (!(highFreqFactor > lowFreqFactor)) {
    throw rs.err('high_freq_factor', `(${highFreqFactor}) must be greater than "low_freq_factor" (${lowFreqFactor})`);
  }
  return { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings };
}

function parseDms(r: Reader): DmsConfig | null {
  const keys = Object.keys(r.obj).filter((k) => k.startsWith('dms_') && r.obj[k] !== null && r.obj[k] !== undefined);
  if (keys.length === 0) return null;
  if (!r.has('dms_window_size')) {
    throw r.err('dms_window_size', `is missing while other DMS keys are present (${keys.join(', ')})`);
  }
  const per = r.optString('dms_alpha_per');
  if (per !== undefined && per !== 'head') {
    throw r.err('dms_alpha_per', `is ${fmt(per)}; only per-head DMS decisions ("head") are supported`);
  }
  return {
    windowSize: r.posInt('dms_window_size'),
    alphaScale: r.posFloat('dms_alpha_scale', 100),
    alphaOffset: r.float('dms_initial_alpha_offset', 5),
    cr: r.has('dms_cr') ? r.posFloat('dms_cr') : null,
    separateAlpha: r.bool('dms_separate_alpha', false),
  };
}

/** The file FastDMS reads its DMS settings from, beside the weights. */
export const DMS_METADATA_FILE = 'dms_metadata.json';

/**
 * `dms_metadata.json` (shisa-ai/FastDMS packaging) → DmsConfig with the 'fastdms' convention. The file is
 * untrusted: every value is checked and every error names the file and the key. The settings may sit at
 * the top level or inside `"config"` or `"dms"`. Keys: `window_size` (required, a positive integer),
 * `alpha_scale` (positive, default 100), `alpha_offset` (finite, default 5), `target_cr` (positive,
 * optional), `borrowed_query_channel` (an integer in [−headDim, headDim), default −1 = the last channel;
 * negative counts from the end as in Python). FastDMS's own fallbacks `dms_window_size`, `dms_alpha_scale`,
 * `dms_alpha_offset`, `dms_initial_alpha_offset` and `dms_cr` are read too; two names for one value must agree.
 */
export function parseDmsMetadata(meta: unknown, headDim: number, file = DMS_METADATA_FILE): DmsConfig {
  const top = asObject(meta, file);
  let obj = top;
  let where = file;
  for (const wrap of ['config', 'dms']) {
    if (top[wrap] === undefined || top[wrap] === null) continue;
    where = `${file}: "${wrap}"`;
    obj = asObject(top[wrap], where);
    break;
  }
  const r = new Reader(where, obj);
  /** The first present of `names`, checked by `read`; the others, when present, must agree with it. */
  const pick = <T>(names: string[], read: (name: string) => T): { value: T; name: string } | null => {
    const present = names.filter((n) => r.has(n));
    if (present.length === 0) return null;
    const value = read(present[0]);
    for (const other of present.slice(1)) {
      const v = read(other);
      if (v !== value) throw r.err(other, `(${fmt(v)}) disagrees with "${present[0]}" (${fmt(value)})`);
    }
    return { value, name: present[0] };
  };
  const window = pick(['window_size', 'dms_window_size'], (n) => r.posInt(n));
  if (!window) throw r.err('window_size', 'is missing (the DMS window, a positive integer)');
  const scale = pick(['alpha_scale', 'dms_alpha_scale'], (n) => r.posFloat(n));
  const offset = pick(['alpha_offset', 'dms_alpha_offset', 'dms_initial_alpha_offset'], (n) => r.float(n));
  const cr = pick(['target_cr', 'dms_cr'], (n) => r.posFloat(n));
  let channel = headDim - 1;
  if (r.has('borrowed_query_channel')) {
    const ch = r.num('borrowed_query_channel', 'int', 'any');
    if (ch < -headDim || ch >= headDim) {
      throw r.err('borrowed_query_channel', `(${ch}) is outside the query head of ${headDim} channels (config.json "head_dim"): expected ${-headDim} to ${headDim - 1}`);
    }
    channel = ch < 0 ? headDim + ch : ch;
  }
  return {
    windowSize: window.value,
    alphaScale: scale?.value ?? 100,
    alphaOffset: offset?.value ?? 5,
    cr: cr?.value ?? null,
    separateAlpha: false,
    channel,
    convention: 'fastdms',
  };
}

/**
 * The DMS settings of a checkpoint with both config.json `dms_*` keys and a dms_metadata.json: the values
 * both give must agree (else an error naming both keys), and the metadata's convention applies.
 */
function mergeDms(fromConfig: DmsConfig, fromMeta: DmsConfig): DmsConfig {
  const pairs: [keyof DmsConfig, string, string][] = [
    ['windowSize', 'dms_window_size', 'window_size'],
    ['alphaScale', 'dms_alpha_scale', 'alpha_scale'],
    ['alphaOffset', 'dms_initial_alpha_offset', 'alpha_offset'],
    ['cr', 'dms_cr', 'target_cr'],
  ];
  if (fromConfig.separateAlpha) {
    throw new ConfigError(`config.json: "dms_separate_alpha" is true, but ${DMS_METADATA_FILE} describes a decision read from a borrowed query channel; remove one of the two`);
  }
  for (const [k, ck, mk] of pairs) {
    const a = fromConfig[k], b = fromMeta[k];
    if (k === 'cr' && (a === null || b === null)) continue;
    if (a !== b) throw new ConfigError(`${DMS_METADATA_FILE}: "${mk}" (${fmt(b)}) disagrees with config.json "${ck}" (${fmt(a)}); the two files must describe the same DMS settings`);
  }
  return { ...fromMeta, cr: fromMeta.cr ?? fromConfig.cr };
}

function parseGeneration(generationConfig: unknown): { generation: GenerationDefaults; eos: number[]; bos: number | null } {
  const generation: GenerationDefaults = {};
  if (generationConfig === undefined || generationConfig === null) return { generation, eos: [], bos: null };
  const g = new Reader('generation_config.json', asObject(generationConfig, 'generation_config.json'));
  const doSample = g.bool('do_sample', true);
  if (g.has('temperature')) generation.temperature = g.nonNegFloat('temperature');
  if (!doSample) generation.temperature = 0; // explicit greedy decoding
  if (g.has('top_p')) {
    const p = g.posFloat('top_p');
    if (p > 1) throw g.err('top_p', `must be in (0, 1], got ${p}`);
    generation.topP = p;
  }
  if (g.has('top_k')) generation.topK = g.nonNegInt('top_k');
  const bosIds = g.tokenIds('bos_token_id');
  return { generation, eos: g.tokenIds('eos_token_id'), bos: bosIds.length ? bosIds[0] : null };
}

/**
 * `dmsMetadata`: the parsed dms_metadata.json when the checkpoint has one (FastDMS packaging); it gives
 * the DMS settings (checked against config.json's `dms_*` keys when both are present).
 */
export function parseConfig(config: unknown, generationConfig?: unknown, dmsMetadata?: unknown): { config: ModelConfig; generation: GenerationDefaults } {
  const r = new Reader('config.json', asObject(config, 'config.json'));
  const architecture = detectArchitecture(r);
  const defaults = HF_DEFAULTS[architecture];

  const hiddenSize = r.posInt('hidden_size');
  const intermediateSize = r.posInt('intermediate_size');
  const numLayers = r.posInt('num_hidden_layers');
  const numHeads = r.posInt('num_attention_heads');
  const numKvHeads = r.posInt('num_key_value_heads', numHeads);
  const vocabSize = r.posInt('vocab_size');
  if (numHeads % numKvHeads !== 0) {
    throw r.err('num_key_value_heads', `(${numKvHeads}) must divide "num_attention_heads" (${numHeads})`);
  }
  let headDim: number;
  if (r.has('head_dim')) headDim = r.posInt('head_dim');
  else if (defaults.headDim !== null) headDim = defaults.headDim;
  else {
    if (hiddenSize % numHeads !== 0) {
      throw r.err('hidden_size', `(${hiddenSize}) must be a multiple of "num_attention_heads" (${numHeads}) when "head_dim" is not given`);
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw r.err('head_dim', `(${headDim}) must be even for rotary embeddings`);

  const act = r.optString('hidden_act') ?? r.optString('hidden_activation');
  if (act !== undefined && act !== 'silu') throw r.err('hidden_act', `is ${fmt(act)}; only "silu" is supported`);
  if (r.bool('mlp_bias', false)) throw r.err('mlp_bias', 'is true; MLP biases are not supported');

  // Qwen2 always has q/k/v biases (and none on o_proj). Llama and Qwen3 `attention_bias` puts a bias on
  // o_proj as well, which ModelConfig cannot express.
  const attentionBias = architecture === 'qwen2';
  if (architecture !== 'qwen2' && r.bool('attention_bias', false)) {
    throw r.err('attention_bias', `is true; ${architecture} attention biases (q, k, v and o) are not supported`);
  }
  if (r.bool('use_sliding_window', false)) {
    throw r.err('use_sliding_window', 'is true; sliding-window attention is not supported');
  }
  const layerTypes = r.obj.layer_types;
  if (Array.isArray(layerTypes) && layerTypes.some((t) => t !== 'full_attention')) {
    throw r.err('layer_types', 'contains non-full attention layers; only full attention is supported');
  }

  // Newer transformers put the RoPE settings in `rope_parameters`; older ones use rope_theta + rope_scaling.
  let ropeTheta: number;
  let ropeScaling: ModelConfig['ropeScaling'];
  if (r.has('rope_parameters')) {
    const rp = new Reader('config.json: "rope_parameters"', asObject(r.obj.rope_parameters, 'config.json: "rope_parameters"'));
    ropeTheta = rp.posFloat('rope_theta', r.posFloat('rope_theta', 10000));
    ropeScaling = parseRopeScaling(r, 'rope_parameters');
  } else {
    ropeTheta = r.posFloat('rope_theta', 10000);
    ropeScaling = parseRopeScaling(r, 'rope_scaling');
  }

  const bosIds = r.tokenIds('bos_token_id');
  if (bosIds.length > 1) throw r.err('bos_token_id', `must be a single token id, got ${fmt(r.obj.bos_token_id)}`);
  const gen = parseGeneration(generationConfig);
  const eosTokenIds = [...new Set([...r.tokenIds('eos_token_id'), ...gen.eos])];
  for (const id of [...eosTokenIds, ...bosIds]) {
    if (id >= vocabSize) throw r.err(eosTokenIds.includes(id) ? 'eos_token_id' : 'bos_token_id', `(${id}) is outside the vocabulary (vocab_size ${vocabSize})`);
  }

  const out: ModelConfig = {
    architecture,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    rmsNormEps: r.posFloat('rms_norm_eps', defaults.rmsNormEps),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: r.posInt('max_position_embeddings', defaults.maxPos),
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    attentionBias,
    qkNorm: architecture === 'qwen3',
    bosTokenId: bosIds.length ? bosIds[0] : gen.bos,
    eosTokenIds,
    dms: null,
  };
  const fromConfig = parseDms(r);
  // A file that holds `null` is an error (not an object), not an absent file.
  const fromMeta = dmsMetadata === undefined ? null : parseDmsMetadata(dmsMetadata, headDim);
  out.dms = fromConfig && fromMeta ? mergeDms(fromConfig, fromMeta) : fromMeta ?? fromConfig;
  return { config: out, generation: gen.generation };
}

/** The JSON in `text`, with an error that names the file (and says so when a server sent a web page instead). */
export function parseJsonFile(text: string, file: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    if (/^\s*</.test(text)) throw new ConfigError(`${file} (${where}) is an HTML page, not JSON: the server answered with a web page (is the model address right?)`);
    throw new ConfigError(`${file} (${where}) is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The parsed dms_metadata.json of `source`, or undefined when it has none. Absent is not an error: a
 * missing file (HTTP 404) or a web page instead of it (a static host's fallback page) means none; any
 * other failure to read it (another HTTP error, a network error) is thrown, and so is a file that is not JSON.
 */
export async function readDmsMetadata(source: ModelSource): Promise<unknown> {
  if (!(await source.exists(DMS_METADATA_FILE))) return undefined;
  const text = await source.text(DMS_METADATA_FILE);
  if (/^\s*</.test(text)) return undefined;
  return parseJsonFile(text, DMS_METADATA_FILE, source.name);
}

/** config.json and, when present, generation_config.json and dms_metadata.json of `source`, parsed and validated. */
export async function readModelConfig(source: ModelSource, opts: { generation?: boolean } = {}): Promise<{ config: ModelConfig; generation: GenerationDefaults }> {
  const config = parseJsonFile(await source.text('config.json'), 'config.json', source.name);
  // generation: false (the pre-flight) skips generation_config.json, which sizes nothing.
  const generation = opts.generation !== false && (await source.exists('generation_config.json'))
    ? parseJsonFile(await source.text('generation_config.json'), 'generation_config.json', source.name)
    : undefined;
  const dmsMetadata = await readDmsMetadata(source);
  try {
    return parseConfig(config, generation, dmsMetadata);
  } catch (e) {
    // Name the model in errors about its metadata file (several models may be open).
    if (e instanceof ConfigError && e.message.startsWith(DMS_METADATA_FILE)) throw new ConfigError(`${e.message} (${source.name})`);
    throw e;
  }
}
