#!/usr/bin/env python3
"""Writes a random-weight checkpoint in the Hugging Face layout, like scripts/make-random-checkpoint.mjs
(same shapes, tensor names and order, shard grouping, file names, safetensors headers byte for byte,
index and config.json), making the values on every core: an 8B checkpoint (16.4 GB bf16) in well under
the minutes the single-threaded .mjs needs.

    python3 scripts/make-random-checkpoint.py --out DIR [--shape qwen3-8b|qwen3-8b-dms|JSON] [--seed 1]
                                              [--shard-mb 500] [--dtype BF16|F16|F32] [--threads N]

Values: bf16 of magnitude 2^-10..2^-6 with a random sign (norm weights 1 + small), as the .mjs writes
them (the same distribution, not the same random stream). Memory stays small: values are made and
written a chunk at a time, chunks made on every core (each chunk seeded by (seed, tensor, chunk), so the
output does not depend on the thread count) and written in order. Needs numpy (else torch, slower); the
safetensors header is written by hand.
"""
import argparse
import ctypes
import json
import os
import struct
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

try:
    import torch
except ImportError:
    torch = None


def qwen3(hidden, inter, layers, heads, tie):
    return {
        'architectures': ['Qwen3ForCausalLM'], 'model_type': 'qwen3', 'hidden_size': hidden, 'intermediate_size': inter,
        'num_hidden_layers': layers, 'num_attention_heads': heads, 'num_key_value_heads': 8, 'head_dim': 128,
        'vocab_size': 151936, 'max_position_embeddings': 40960, 'rope_theta': 1000000, 'rope_scaling': None,
        'rms_norm_eps': 1e-6, 'tie_word_embeddings': tie, 'hidden_act': 'silu', 'attention_bias': False,
        'use_sliding_window': False, 'bos_token_id': 151643, 'eos_token_id': 151645, 'torch_dtype': 'bfloat16',
    }


# Keep in step with SHAPES in make-random-checkpoint.mjs (test/cli/random-checkpoint.test.ts compares them).
SHAPES = {
    'qwen3-0.6b': qwen3(1024, 3072, 28, 16, True),
    'qwen3-1.7b': qwen3(2048, 6144, 28, 16, True),
    'qwen3-8b': qwen3(4096, 12288, 36, 32, False),
    # nvidia/Qwen3-8B-DMS-8x: Qwen3-8B's tensors, with the DMS keys the engine reads (worker/model/presets.ts).
    'qwen3-8b-dms': {
        **qwen3(4096, 12288, 36, 32, False), 'architectures': ['Qwen3ForCausalLMDMS'],
        'dms_window_size': 256, 'dms_alpha_scale': 100, 'dms_initial_alpha_offset': 5, 'dms_cr': 8,
    },
}

SIZE = {'BF16': 2, 'F16': 2, 'F32': 4}
TORCH_DTYPE = {'BF16': 'bfloat16', 'F16': 'float16', 'F32': 'float32'}


def tensor_list(c):
    """[name, shape, kind] of every tensor, in the order and naming of the .mjs tensorList."""
    H, F, Hq = c['hidden_size'], c['intermediate_size'], c['num_attention_heads']
    Hkv = c.get('num_key_value_heads') or Hq
    arch = c['model_type']
    d = c.get('head_dim') or (128 if arch == 'qwen3' else H // Hq)
    out = [['model.embed_tokens.weight', [c['vocab_size'], H], 'w']]
    for l in range(c['num_hidden_layers']):
        p = f'model.layers.{l}.'
        out.append([f'{p}input_layernorm.weight', [H], 'norm'])
        out.append([f'{p}self_attn.q_proj.weight', [Hq * d, H], 'w'])
        out.append([f'{p}self_attn.k_proj.weight', [Hkv * d, H], 'w'])
        out.append([f'{p}self_attn.v_proj.weight', [Hkv * d, H], 'w'])
        if arch == 'qwen2':
            out.append([f'{p}self_attn.q_proj.bias', [Hq * d], 'w'])
            out.append([f'{p}self_attn.k_proj.bias', [Hkv * d], 'w'])
            out.append([f'{p}self_attn.v_proj.bias', [Hkv * d], 'w'])
        if arch == 'qwen3':
            out.append([f'{p}self_attn.q_norm.weight', [d], 'norm'])
            out.append([f'{p}self_attn.k_norm.weight', [d], 'norm'])
        out.append([f'{p}self_attn.o_proj.weight', [H, Hq * d], 'w'])
        out.append([f'{p}post_attention_layernorm.weight', [H], 'norm'])
        out.append([f'{p}mlp.gate_proj.weight', [F, H], 'w'])
        out.append([f'{p}mlp.up_proj.weight', [F, H], 'w'])
        out.append([f'{p}mlp.down_proj.weight', [H, F], 'w'])
    out.append(['model.norm.weight', [H], 'norm'])
    if not c.get('tie_word_embeddings'):
        out.append(['lm_head.weight', [c['vocab_size'], H], 'w'])
    return out


CHUNK = 1 << 25  # values made at a time (64 MB of bf16)

try:
    import numpy as np
except ImportError:  # torch alone works too, more slowly
    np = None


def _bf16_tables():
    """bf16 bits from 16 random bits k: weights: sign, exponent 117..121 (2^-10..2^-6), 7 mantissa bits;
    norms: 1 + 0..7 ulp (what the .mjs writer makes)."""
    w = [(k & 0x8000) | ((117 + ((k >> 7) & 3) + ((k >> 9) & 1)) << 7) | (k & 0x7F) for k in range(1 << 16)]
    norm = [0x3F80 | (k & 0x7) for k in range(1 << 16)]
    return w, norm


def chunk_bytes(key, m, kind, dtype):
    """m random values of `kind` as raw little-endian `dtype` bytes: (owner, buffer); `key` seeds them."""
    if np is not None:
        # 16 random bits per value from PCG64's raw output, mapped through a table.
        bits = np.random.PCG64(np.random.SeedSequence(list(key))).random_raw((m + 3) // 4).view(np.uint16)[:m]
        bf = LUT_NP[1 if kind == 'norm' else 0][bits]
        if dtype != 'BF16':
            f = (bf.astype(np.uint32) << 16).view(np.float32)
            bf = f if dtype == 'F32' else f.astype(np.float16)
        return bf, memoryview(bf).cast('B')
    gen = torch.Generator().manual_seed(hash(key) & ((1 << 63) - 1))
    r = torch.randint(0, 1 << 16, (m,), dtype=torch.int64, generator=gen)
    t = LUT[1 if kind == 'norm' else 0][r].view(torch.bfloat16)
    if dtype != 'BF16':
        t = t.to(torch.float32 if dtype == 'F32' else torch.float16)
    t = t.contiguous()
    return t, memoryview((ctypes.c_ubyte * (t.numel() * t.element_size())).from_address(t.data_ptr()))


if np is not None:
    LUT_NP = [np.array(x, dtype=np.uint16) for x in _bf16_tables()]
elif torch is not None:
    LUT = [torch.tensor([v - 65536 if v >= 32768 else v for v in x], dtype=torch.int16) for x in _bf16_tables()]
else:
    sys.exit('make-random-checkpoint.py needs numpy or torch (or use make-random-checkpoint.mjs)')


def make_random_checkpoint(out_dir, config, seed=1, shard_bytes=500e6, dtype='BF16', single=False, threads=None):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
        json.dump({**config, 'torch_dtype': TORCH_DTYPE[dtype]}, f, indent=2)
    shards, cur = [], None
    for name, shape, kind in tensor_list(config):
        n = 1
        for s in shape:
            n *= s
        nbytes = n * SIZE[dtype]
        if cur is None or (cur['bytes'] > 0 and cur['bytes'] + nbytes > shard_bytes):
            cur = {'tensors': [], 'bytes': 0}
            shards.append(cur)
        cur['tensors'].append({'name': name, 'shape': shape, 'kind': kind, 'n': n, 'bytes': nbytes, 'begin': cur['bytes']})
        cur['bytes'] += nbytes
    files, weight_map, total = [], {}, 0
    for i, sh in enumerate(shards):
        sh['file'] = 'model.safetensors' if len(shards) == 1 and single else f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
        files.append(sh['file'])
        total += sh['bytes']
        for t in sh['tensors']:
            weight_map[t['name']] = sh['file']
    # Every chunk of every tensor, in file order: made on `threads` threads, written in order by this one.
    jobs = []
    ti = 0
    for si, sh in enumerate(shards):
        for t in sh['tensors']:
            for c, i in enumerate(range(0, t['n'], CHUNK)):
                jobs.append((si, (seed, ti, c), min(CHUNK, t['n'] - i), t['kind']))
            ti += 1
    threads = threads or os.cpu_count() or 1
    f, open_shard = None, -1
    with ThreadPoolExecutor(threads) as ex:
        window = deque()
        it = iter(jobs)
        def submit():
            j = next(it, None)
            if j is not None:
                window.append((j[0], ex.submit(chunk_bytes, j[1], j[2], j[3], dtype)))
        for _ in range(2 * threads):
            submit()
        while window:
            si, fut = window.popleft()
            data = fut.result()
            submit()
            if si != open_shard:
                if f:
                    f.close()
                sh = shards[si]
                header = {'__metadata__': {'format': 'pt'}}
                for t in sh['tensors']:
                    header[t['name']] = {'dtype': dtype, 'shape': t['shape'], 'data_offsets': [t['begin'], t['begin'] + t['bytes']]}
                text = json.dumps(header, separators=(',', ':'))
                text += ' ' * ((8 - len(text) % 8) % 8)
                f = open(os.path.join(out_dir, sh['file']), 'wb')
                f.write(struct.pack('<Q', len(text)))
                f.write(text.encode())
                open_shard = si
            f.write(data[1])
    if f:
        f.close()
    if not (len(shards) == 1 and single):
        with open(os.path.join(out_dir, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map}, f, indent=2)
    return files, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--shape', default='qwen3-0.6b', help=f'{", ".join(SHAPES)} or a JSON object of config.json keys')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--shard-mb', type=float, default=500)
    ap.add_argument('--dtype', choices=list(SIZE), default='BF16')
    ap.add_argument('--threads', type=int, default=None, help='threads making values (default: every core)')
    a = ap.parse_args()
    if a.shape.strip().startswith('{'):
        config = json.loads(a.shape)
    elif a.shape in SHAPES:
        config = SHAPES[a.shape]
    else:
        sys.exit(f'unknown shape {a.shape} ({", ".join(SHAPES)} or a JSON object)')
    t0 = time.time()
    files, total = make_random_checkpoint(a.out, config, a.seed, a.shard_mb * 1e6, a.dtype, threads=a.threads)
    print(f'{a.out}: {len(files)} shards, {total} bytes in {time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
