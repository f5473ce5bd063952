/** A small Hugging Face style model repo (real safetensors shards) for the weight-store tests. */
import { writeSafetensors } from '../load/helpers';
import { noise, type Repo } from './hub-server';

const enc = (s: string) => new TextEncoder().encode(s);

/** A float tensor of `n` values from a seed. */
function values(n: number, seed: number): number[] {
  const b = noise(n, seed);
  return Array.from(b, (x) => (x - 128) / 64);
}

export interface FixtureOptions {
  /** Elements per tensor: each shard is about 4 × 2 × this many bytes. */
  elems?: number;
  /** Changes the weights (a new model version). */
  seed?: number;
  sharded?: boolean;
  commit?: string;
  /** Extra text in config.json (a new config version). */
  configNote?: string;
}

export function makeRepo(o: FixtureOptions = {}): Repo {
  const elems = o.elems ?? 40_000;
  const seed = o.seed ?? 1;
  const config = enc(JSON.stringify({ architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 64, note: o.configNote ?? '' }, null, 1));
  const files = new Map<string, Uint8Array>([
    ['config.json', config],
    ['generation_config.json', enc(JSON.stringify({ eos_token_id: 2, temperature: 0.7 }))],
    ['tokenizer.json', enc(JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: { a: 0, b: 1 } }, padding: 'x'.repeat(5000) }))],
    ['tokenizer_config.json', enc(JSON.stringify({ chat_template: '{{ messages }}' }))],
  ]);
  const shardA = writeSafetensors([
    { name: 'model.embed_tokens.weight', dtype: 'F16', shape: [elems / 8, 8], data: values(elems, seed) },
    { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'F16', shape: [elems / 8, 8], data: values(elems, seed + 1) },
  ]);
  const shardB = writeSafetensors([
    { name: 'model.layers.1.mlp.up_proj.weight', dtype: 'BF16', shape: [elems / 8, 8], data: values(elems, seed + 2) },
    { name: 'model.norm.weight', dtype: 'F32', shape: [elems], data: values(elems, seed + 3) },
  ]);
  if (o.sharded === false) {
    const single = writeSafetensors([
      { name: 'model.embed_tokens.weight', dtype: 'F16', shape: [elems / 8, 8], data: values(elems, seed) },
      { name: 'model.norm.weight', dtype: 'F32', shape: [elems], data: values(elems, seed + 3) },
    ]);
    files.set('model.safetensors', single);
  } else {
    const a = 'model-00001-of-00002.safetensors';
    const b = 'model-00002-of-00002.safetensors';
    files.set(a, shardA);
    files.set(b, shardB);
    files.set('model.safetensors.index.json', enc(JSON.stringify({
      metadata: { total_size: shardA.length + shardB.length },
      weight_map: {
        'model.embed_tokens.weight': a,
        'model.layers.0.mlp.up_proj.weight': a,
        'model.layers.1.mlp.up_proj.weight': b,
        'model.norm.weight': b,
      },
    })));
  }
  return { commit: o.commit ?? 'c0ffee0000000000000000000000000000000001', files };
}
