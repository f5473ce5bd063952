#!/usr/bin/env node
// Writes a random-weight checkpoint in the Hugging Face layout (config.json, bf16 safetensors shards,
// model.safetensors.index.json), for load and conversion tests at real sizes without downloading one.
//
//   node scripts/make-random-checkpoint.mjs --out /tmp/qwen3-0.6b-random [--shape qwen3-0.6b] [--seed 1] [--shard-mb 500] [--dtype BF16|F16|F32]
//
// --shape is a name below or a JSON object of config.json keys. Weights are random bf16 of magnitude
// 2^-10..2^-6 with a random sign (norm weights near 1), written slice by slice: memory stays small.
// Also importable: makeRandomCheckpoint(dir, config, opts) returns { files, bytes }.
// scripts/make-random-checkpoint.py writes the same layout with PyTorch (much faster at 8B).
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const qwen3 = (hidden, inter, layers, heads, tie) => ({
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: hidden, intermediate_size: inter, num_hidden_layers: layers,
  num_attention_heads: heads, num_key_value_heads: 8, head_dim: 128, vocab_size: 151936, max_position_embeddings: 40960,
  rope_theta: 1000000, rope_scaling: null, rms_norm_eps: 1e-6, tie_word_embeddings: tie, hidden_act: 'silu', attention_bias: false,
  use_sliding_window: false, bos_token_id: 151643, eos_token_id: 151645, torch_dtype: 'bfloat16',
});

export const SHAPES = {
  'qwen3-0.6b': qwen3(1024, 3072, 28, 16, true),
  'qwen3-1.7b': qwen3(2048, 6144, 28, 16, true),
  'qwen3-8b': qwen3(4096, 12288, 36, 32, false),
  // nvidia/Qwen3-8B-DMS-8x: Qwen3-8B's tensors, with the DMS keys the engine reads (worker/model/presets.ts).
  'qwen3-8b-dms': {
    ...qwen3(4096, 12288, 36, 32, false), architectures: ['Qwen3ForCausalLMDMS'],
    dms_window_size: 256, dms_alpha_scale: 100, dms_initial_alpha_offset: 5, dms_cr: 8,
  },
};

/** [name, shape, kind] of every tensor of the config, in the Hugging Face naming. */
export function tensorList(c) {
  const H = c.hidden_size, F = c.intermediate_size, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads ?? Hq;
  const arch = c.model_type;
  const d = c.head_dim ?? (arch === 'qwen3' ? 128 : H / Hq);
  const out = [['model.embed_tokens.weight', [c.vocab_size, H], 'w']];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    out.push([`${p}input_layernorm.weight`, [H], 'norm']);
    out.push([`${p}self_attn.q_proj.weight`, [Hq * d, H], 'w']);
    out.push([`${p}self_attn.k_proj.weight`, [Hkv * d, H], 'w']);
    out.push([`${p}self_attn.v_proj.weight`, [Hkv * d, H], 'w']);
    if (arch === 'qwen2') {
      out.push([`${p}self_attn.q_proj.bias`, [Hq * d], 'w']);
      out.push([`${p}self_attn.k_proj.bias`, [Hkv * d], 'w']);
      out.push([`${p}self_attn.v_proj.bias`, [Hkv * d], 'w']);
    }
    if (arch === 'qwen3') {
      out.push([`${p}self_attn.q_norm.weight`, [d], 'norm']);
      out.push([`${p}self_attn.k_norm.weight`, [d], 'norm']);
    }
    out.push([`${p}self_attn.o_proj.weight`, [H, Hq * d], 'w']);
    out.push([`${p}post_attention_layernorm.weight`, [H], 'norm']);
    out.push([`${p}mlp.gate_proj.weight`, [F, H], 'w']);
    out.push([`${p}mlp.up_proj.weight`, [F, H], 'w']);
    out.push([`${p}mlp.down_proj.weight`, [H, F], 'w']);
  }
  out.push(['model.norm.weight', [H], 'norm']);
  if (!c.tie_word_embeddings) out.push(['lm_head.weight', [c.vocab_size, H], 'w']);
  return out;
}

const SIZE = { BF16: 2, F16: 2, F32: 4 };

/** Random values of one tensor, `n` at a time, as raw bytes of `dtype`. */
function* randomBytes(n, kind, dtype, state) {
  const CH = 1 << 22;
  for (let i = 0; i < n; i += CH) {
    const m = Math.min(CH, n - i);
    const bits = new Uint16Array(m);
    let s = state.s;
    for (let k = 0; k < m; k += 2) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      for (let h = 0; h < 2 && k + h < m; h++) {
        const r = (s >>> (16 * h)) & 0xffff;
        // bf16: sign, exponent 2^-10..2^-6 (norms: 1 + small), 7 mantissa bits
        bits[k + h] = kind === 'norm' ? 0x3f80 | (r & 0x7) : ((r & 0x8000) | ((117 + ((r >>> 7) & 3) + ((r >>> 9) & 1)) << 7) | (r & 0x7f));
      }
    }
    state.s = s;
    if (dtype === 'BF16') yield new Uint8Array(bits.buffer);
    else {
      const f = new Float32Array(m);
      const u = new Uint32Array(f.buffer);
      for (let k = 0; k < m; k++) u[k] = bits[k] << 16;
      if (dtype === 'F32') yield new Uint8Array(f.buffer);
      else {
        const h = new Uint16Array(m); // f32 -> f16 by truncation is enough for random data in range
        for (let k = 0; k < m; k++) {
          const b = u[k], e = ((b >>> 23) & 0xff) - 112;
          h[k] = ((b >>> 16) & 0x8000) | (e <= 0 ? 0 : (e << 10) | ((b >>> 13) & 0x3ff));
        }
        yield new Uint8Array(h.buffer);
      }
    }
  }
}

export function makeRandomCheckpoint(dir, config, opts = {}) {
  const dtype = opts.dtype ?? 'BF16';
  const shardBytes = opts.shardBytes ?? 500e6;
  const state = { s: (opts.seed ?? 1) >>> 0 || 1 };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, torch_dtype: dtype === 'BF16' ? 'bfloat16' : dtype === 'F16' ? 'float16' : 'float32' }, null, 2));
  // Group tensors into shards of about shardBytes.
  const shards = [];
  let cur = null;
  for (const [name, shape, kind] of tensorList(config)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * SIZE[dtype];
    if (!cur || (cur.bytes > 0 && cur.bytes + bytes > shardBytes)) shards.push((cur = { tensors: [], bytes: 0 }));
    cur.tensors.push({ name, shape, kind, bytes, begin: cur.bytes });
    cur.bytes += bytes;
  }
  const files = [];
  const weightMap = {};
  let total = 0;
  shards.forEach((sh, i) => {
    const file = shards.length === 1 && opts.single ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const header = { __metadata__: { format: 'pt' } };
    for (const t of sh.tensors) {
      header[t.name] = { dtype, shape: t.shape, data_offsets: [t.begin, t.begin + t.bytes] };
      weightMap[t.name] = file;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const fd = openSync(join(dir, file), 'w');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json));
    for (const t of sh.tensors) {
      for (const chunk of randomBytes(t.bytes / SIZE[dtype], t.kind, dtype, state)) writeSync(fd, chunk);
    }
    closeSync(fd);
    files.push(file);
    total += sh.bytes;
  });
  if (!(shards.length === 1 && opts.single)) {
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  return { files, bytes: total };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = new Map();
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) args.set(argv[i].replace(/^--/, ''), argv[i + 1]);
  const out = args.get('out');
  if (!out) {
    process.stderr.write(`usage: node scripts/make-random-checkpoint.mjs --out DIR [--shape ${Object.keys(SHAPES).join('|')}|JSON] [--seed N] [--shard-mb 500] [--dtype BF16|F16|F32]\n`);
    process.exit(2);
  }
  const shape = args.get('shape') ?? 'qwen3-0.6b';
  const config = shape.trim().startsWith('{') ? JSON.parse(shape) : SHAPES[shape];
  if (!config) throw new Error(`unknown shape ${shape} (${Object.keys(SHAPES).join(', ')} or a JSON object)`);
  const t0 = Date.now();
  const r = makeRandomCheckpoint(out, config, { seed: Number(args.get('seed') ?? 1), shardBytes: Number(args.get('shard-mb') ?? 500) * 1e6, dtype: args.get('dtype') ?? 'BF16' });
  process.stdout.write(`${out}: ${r.files.length} shards, ${r.bytes} bytes in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}
