#!/usr/bin/env python3
"""Build tiny random-weight golden parity fixtures for the WebDMS engine.

Every fixture is a complete Hugging Face style model folder (config.json, safetensors weights,
generation_config.json, tokenizer.json, tokenizer_config.json) plus golden.json, which holds
float32 logits and greedy continuations computed by PyTorch + transformers from the weights AS
STORED (the saved bf16/f16/f32 checkpoint is loaded back and cast to float32).

Needs: torch, transformers (5.x), tokenizers, safetensors, jinja2. No network. Runs on CPU.

    python3 scripts/make_golden.py --out test/fixtures/golden

Fixtures (see test/fixtures/README.md):
  qwen3      Qwen3ForCausalLM, head_dim 32 != hidden/heads, q_norm/k_norm, tied embeddings, bf16
  qwen2      Qwen2ForCausalLM, 4 heads / 1 KV head, q/k/v bias, untied, f16
  llama      LlamaForCausalLM, llama3 rope scaling, untied, f32, two safetensors shards + index
  qwen3-dms  Qwen3 + dms_* config keys; golden logits for DMS semantics ("full" and "dms")
"""

import argparse
import json
import os
import random
import shutil
import sys
import traceback

import torch

SEED = 1234
DMS_WINDOW = 4
DMS_ALPHA_SCALE = 100.0
DMS_ALPHA_OFFSET = 5.0
DMS_CR = 4
N_GREEDY = 16

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

# Pre-tokenization regex of the Qwen2/Qwen3 tokenizers (so the fixture exercises the same
# pipeline as the real models: NFC -> Split(regex, isolated) -> ByteLevel(use_regex=false)).
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # special=True
THINK = ["<think>", "</think>"]  # added, special=False (as in Qwen3)

# Our own ChatML template with Qwen3-like reasoning handling:
#  - reasoning comes from message.reasoning_content or from "<think>...</think>" inside content;
#  - it is rendered only for assistant turns after the last user turn;
#  - add_generation_prompt opens an assistant turn; enable_thinking=false pre-fills an empty
#    think block.
CHAT_TEMPLATE = r"""{%- set ns = namespace(last_user=-1) -%}
{%- for message in messages -%}
{%- if message['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}
{%- endfor -%}
{%- for message in messages -%}
{%- set content = message['content'] if message['content'] is string else '' -%}
{%- if message['role'] == 'assistant' -%}
{%- set reasoning = '' -%}
{%- if message['reasoning_content'] is defined and message['reasoning_content'] is string -%}
{%- set reasoning = message['reasoning_content'] -%}
{%- elif '</think>' in content -%}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1] -%}
{%- set content = content.split('</think>')[-1] -%}
{%- endif -%}
{%- set reasoning = reasoning.strip('\n') -%}
{%- set content = content.lstrip('\n') -%}
{{- '<|im_start|>assistant\n' -}}
{%- if loop.index0 > ns.last_user and reasoning -%}
{{- '<think>\n' + reasoning + '\n</think>\n\n' -}}
{%- endif -%}
{{- content + '<|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- if enable_thinking is defined and enable_thinking is false -%}
{{- '<think>\n\n</think>\n\n' -}}
{%- endif -%}
{%- endif -%}"""

PROMPT_MESSAGES = [{"role": "user", "content": "Hi! Name two colors, please."}]

CHAT_EXAMPLES = [
    {"messages": PROMPT_MESSAGES, "add_generation_prompt": True, "kwargs": {}},
    {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name two colors."},
            {"role": "assistant", "content": "<think>\nThe user wants colors.\n</think>\n\nRed and blue."},
            {"role": "user", "content": "And a third one?"},
        ],
        "add_generation_prompt": True,
        "kwargs": {},
    },
    {
        "messages": [
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "reasoning_content": "Two plus three is five.", "content": "It is 5."},
        ],
        "add_generation_prompt": False,
        "kwargs": {},
    },
    {
        "messages": [{"role": "user", "content": "Say hello."}],
        "add_generation_prompt": True,
        "kwargs": {"enable_thinking": False},
    },
]

TOKENIZER_CASES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces,\ttabs\tand\n\nblank lines\n",
    "Numbers 12345 and 3.14159, dates 2024-05-06.",
    "Unicode: caf\u00e9, na\u00efve, \u65e5\u672c\u8a9e, emoji \U0001F642!",
    "NFC: e\u0301 vs \u00e9",
    "it's they're we'll I'M YOU'VE",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nsome reasoning\n</think>\n\nThe answer.<|im_end|>",
    "<|endoftext|>",
    "code: def f(x):\n    return x * 2  # done",
]


def training_text():
    """A few KB of English generated from our own word lists and sentences (seeded)."""
    sentences = [
        "The small model reads a prompt and writes an answer one token at a time.",
        "Every layer keeps keys and values for the tokens it has already seen.",
        "A browser tab can run a language model when the graphics card does the heavy work.",
        "We compare the numbers from the engine with the numbers from the reference library.",
        "If the two lists of logits agree, the kernels are probably correct.",
        "Memory is the main limit, so the cache should only keep what matters.",
        "Some tokens are kept for good, others are dropped after a short window.",
        "The teacher and the student see the same text during training.",
        "Colors such as red, green and blue are easy to name.",
        "Numbers like 1, 2, 3, 10, 42 and 100 appear in many questions.",
        "Please answer the question in one short sentence.",
        "What is the capital of the country to the north of the river?",
        "She walked to the market, bought bread, and came home before noon.",
        "They said it's fine, but we'll check the results again tomorrow.",
        "The weather was cold in the morning and warm in the afternoon.",
        "A helpful assistant explains its reasoning before giving the answer.",
        "Think step by step, then write the final answer on its own line.",
        "The user asked for two colors, and the assistant replied with red and blue.",
    ]
    adjs = ["quick", "small", "bright", "quiet", "old", "new", "green", "heavy", "simple", "careful"]
    nouns = ["model", "token", "cache", "window", "teacher", "student", "answer", "question",
             "layer", "kernel", "river", "market", "color", "number", "sentence", "prompt"]
    verbs = ["reads", "writes", "keeps", "drops", "finds", "checks", "builds", "moves", "names", "sees"]
    preps = ["near", "after", "before", "inside", "over", "under", "with", "without"]
    rng = random.Random(SEED)
    lines = list(sentences)
    for _ in range(90):
        lines.append(
            f"The {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)} the "
            f"{rng.choice(nouns)} {rng.choice(preps)} the {rng.choice(adjs)} {rng.choice(nouns)}."
        )
    for _ in range(20):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        lines.append(f"Question: what is {a} plus {b}? Answer: {a + b}.")
    lines += sentences  # repeat the hand-written part so its words win merges
    return lines


def build_tokenizer(vocab_target=395):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_target,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK])
    return tok


def tokenizer_config(tok):
    added = {}
    for t in SPECIAL + THINK:
        tid = tok.token_to_id(t)
        added[str(tid)] = {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": t in SPECIAL,
        }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def render_with_jinja2(messages, add_generation_prompt, kwargs):
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt, **kwargs)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def r6(x):
    return float(f"{x:.6g}")


def round_2d(t):
    return [[r6(v) for v in row] for row in t.tolist()]


def dump_json(path, obj, compact=False):
    with open(path, "w") as f:
        if compact:
            json.dump(obj, f, separators=(",", ":"), ensure_ascii=False)
        else:
            json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def init_weights(model, seed, std=0.1, bias_std=0.05, norm_std=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + norm_std * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(bias_std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def round_to_storage(model, dtype):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


def make_config(cls, **kw):
    """Construct a transformers config; rope given as rope_parameters (5.x) with a 4.x fallback."""
    rope = kw.pop("rope", None)
    extra = kw.pop("extra", {})

    def construct(**more):
        try:
            return cls(rope_parameters=dict(rope), **kw, **more)
        except TypeError as e:
            print("  config: rope_parameters rejected (", e, ") -> legacy rope_theta/rope_scaling")
            r = dict(rope)
            theta = r.pop("rope_theta")
            scaling = r if r.get("rope_type", "default") != "default" else None
            return cls(rope_theta=theta, rope_scaling=scaling, **kw, **more)

    try:
        cfg = construct(**extra)
    except Exception as e:
        print("  config: extra keys rejected as kwargs (", e, ") -> setattr")
        cfg = construct()
        for k, v in extra.items():
            try:
                setattr(cfg, k, v)
            except Exception as e2:
                print("  config: setattr", k, "failed:", e2)
    print("  config rope:", getattr(cfg, "rope_parameters", None), getattr(cfg, "rope_scaling", None))
    return cfg


def load_back(path):
    from transformers import AutoModelForCausalLM
    try:
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        m = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def rotary(model, x, pos):
    re = model.model.rotary_emb
    try:
        return re(x, pos)
    except TypeError:
        return re(x, pos, "full_attention")


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


@torch.no_grad()
def ref_forward(model, ids, mode="plain", window=DMS_WINDOW, scale=DMS_ALPHA_SCALE, offset=DMS_ALPHA_OFFSET):
    """Our re-implementation of the decoder forward, built from the HF modules.

    mode 'plain': standard causal attention (must equal HF forward).
    mode 'full' : DMS model without eviction: channel d-1 of query heads h*g zeroed before and
                  after RoPE.
    mode 'dms'  : 'full' + the DMS visibility mask from the decisions alpha.
    Returns (logits[T,V], alpha list [layer][token][kvHead], decision logits [layer][token][kvHead]).
    """
    cfg = model.config
    m = model.model
    ids = torch.as_tensor(ids, dtype=torch.long).view(1, -1)
    T = ids.shape[1]
    x = m.embed_tokens(ids)
    pos = torch.arange(T).view(1, -1)
    cos, sin = rotary(model, x, pos)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (1,1,T,d)
    Hq, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    g = Hq // Hkv
    ii = torch.arange(T).view(-1, 1)
    jj = torch.arange(T).view(1, -1)
    causal = jj <= ii
    alphas, dlogits = [], []
    for layer in m.layers:
        attn = layer.self_attn
        d = attn.head_dim
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(1, T, Hq, d)
        k = attn.k_proj(h).view(1, T, Hkv, d)
        v = attn.v_proj(h).view(1, T, Hkv, d)
        if hasattr(attn, "q_norm"):
            q = attn.q_norm(q)
            k = attn.k_norm(k)
        q = q.transpose(1, 2).clone()
        k = k.transpose(1, 2)
        v = v.transpose(1, 2)
        vis = causal.view(1, T, T).expand(Hq, T, T)
        if mode in ("full", "dms"):
            dec = q[0, ::g, :, d - 1].transpose(0, 1)  # (T, Hkv), after q_norm, before RoPE
            lg = scale * dec - offset
            alpha = lg > 0
            alphas.append(alpha.int().tolist())
            dlogits.append(lg)
            q[:, ::g, :, d - 1] = 0.0
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if mode in ("full", "dms"):
            q[:, ::g, :, d - 1] = 0.0
        if mode == "dms":
            at = torch.zeros(Hkv, T, dtype=torch.bool)
            at[:, :-1] = alpha[1:, :].transpose(0, 1)  # alpha~_j = alpha_{j+1}
            kv_vis = causal.view(1, T, T) & (((ii - jj) <= window).view(1, T, T) | ~at.view(Hkv, 1, T))
            vis = kv_vis.repeat_interleave(g, dim=0)
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        scaling = getattr(attn, "scaling", d ** -0.5)
        s = torch.matmul(q, k.transpose(2, 3)) * scaling
        s = s.masked_fill(~vis.view(1, Hq, T, T), float("-inf"))
        p = torch.softmax(s, dim=-1, dtype=torch.float32)
        o = torch.matmul(p, v).transpose(1, 2).reshape(1, T, Hq * d)
        x = x + attn.o_proj(o)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    x = m.norm(x)
    logits = model.lm_head(x)[0]
    return logits, alphas, dlogits


@torch.no_grad()
def greedy_manual(step_fn, prompt, n):
    ids = list(prompt)
    gaps = []
    for _ in range(n):
        last = step_fn(ids)
        top = torch.topk(last, 2)
        gaps.append(float(top.values[0] - top.values[1]))
        ids.append(int(top.indices[0]))
    return ids[len(prompt):], gaps


@torch.no_grad()
def greedy_hf(model, prompt, n, pad_id):
    from transformers import GenerationConfig
    model.generation_config = GenerationConfig(do_sample=False, max_new_tokens=n, pad_token_id=pad_id)
    inp = torch.tensor([prompt], dtype=torch.long)
    out = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=n, do_sample=False)
    return out[0, len(prompt):].tolist()


def reshard(path, n_shards=2):
    """Split model.safetensors into n shards + model.safetensors.index.json (HF layout)."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    src = os.path.join(path, "model.safetensors")
    with safe_open(src, framework="pt") as f:
        names = list(f.keys())
        tensors = {k: f.get_tensor(k) for k in names}
    # keep the embeddings and low layers in shard 1, the rest in shard 2 (stable, by layer order)
    def order(k):
        if "embed_tokens" in k:
            return (-1, k)
        if ".layers." in k:
            return (int(k.split(".layers.")[1].split(".")[0]), k)
        return (10 ** 6, k)
    names.sort(key=order)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    shards, cur, acc = [], [], 0
    for k in names:
        if len(shards) < n_shards - 1 and acc >= total / n_shards and cur:
            shards.append(cur)
            cur, acc = [], 0
        cur.append(k)
        acc += tensors[k].numel() * tensors[k].element_size()
    shards.append(cur)
    assert len(shards) == n_shards, shards
    weight_map = {}
    for i, ks in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in ks}, os.path.join(path, fn), metadata={"format": "pt"})
        for k in ks:
            weight_map[k] = fn
    os.remove(src)
    dump_json(os.path.join(path, "model.safetensors.index.json"),
              {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    print(f"  resharded into {n_shards} files: {[len(s) for s in shards]} tensors, total_size {total}")


# --------------------------------------------------------------------------------------------
# Fixture builders
# --------------------------------------------------------------------------------------------

def versions():
    import tokenizers
    import transformers
    try:
        import safetensors
        sv = safetensors.__version__
    except Exception:
        sv = None
    return {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "safetensors_version": sv,
    }


def save_model(model, path, store_dtype, gen_cfg, shards=1):
    model = model.to(store_dtype)
    model.generation_config = gen_cfg
    model.save_pretrained(path)
    model.to(torch.float32)
    if shards > 1:
        reshard(path, shards)
    cfg = json.load(open(os.path.join(path, "config.json")))
    print("  config.json as written:", json.dumps(cfg, sort_keys=True))
    print("  generation_config.json:", open(os.path.join(path, "generation_config.json")).read().replace("\n", " "))
    print("  files:", sorted(os.listdir(path)))
    return cfg


def copy_tokenizer(tokdir, path):
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokdir, fn), os.path.join(path, fn))
    # transformers may also write other tokenizer files on save; we only ship these two.


def check_reload(model_mem, model_disk):
    sd_a = model_mem.state_dict()
    sd_b = model_disk.state_dict()
    worst = 0.0
    for k, v in sd_a.items():
        if k not in sd_b:
            print("  WARNING: reloaded model lacks", k)
            continue
        worst = max(worst, float((v.float() - sd_b[k].float()).abs().max()))
    print(f"  reload check: max |param(mem, rounded) - param(disk)| = {worst:g}")
    return worst


def finish_golden(path, name, tokinfo, logits_sets, greedy_ids, extra, vers, note):
    golden = {
        "name": name,
        "prompt_messages": PROMPT_MESSAGES,
        "prompt_text": tokinfo["prompt_text"],
        "prompt_ids": tokinfo["prompt_ids"],
        "chat_template_example": tokinfo["chat_examples"][1],
        "logits": {k: round_2d(v) for k, v in logits_sets.items()},
        "greedy_ids": greedy_ids,
    }
    golden.update(extra)
    golden.update(vers)
    golden["note"] = note
    dump_json(os.path.join(path, "golden.json"), golden, compact=True)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    print(f"  {name}: folder size {size} bytes")


def standard_fixture(out, name, tokdir, tokinfo, vers, build, store_dtype, gen_cfg, seed, shards=1, note=""):
    print(f"=== {name} ===")
    path = os.path.join(out, name)
    os.makedirs(path, exist_ok=True)
    model = build()
    init_weights(model, seed)
    round_to_storage(model, store_dtype)
    model.eval()
    save_model(model, path, store_dtype, gen_cfg, shards=shards)
    copy_tokenizer(tokdir, path)
    m2 = load_back(path)
    print("  loaded back as", type(m2).__name__, "attn:", getattr(m2.config, "_attn_implementation", None))
    check_reload(model, m2)
    prompt = tokinfo["prompt_ids"]
    inp = torch.tensor([prompt])
    with torch.no_grad():
        hf_logits = m2(input_ids=inp).logits[0].float()
    ref_logits, _, _ = ref_forward(m2, prompt, "plain")
    diff = float((hf_logits - ref_logits).abs().max())
    print(f"  HF forward vs our reference (plain): max abs diff {diff:.3g}")
    pad = tokinfo["pad_id"]
    gman, gaps = greedy_manual(lambda ids: m2(input_ids=torch.tensor([ids])).logits[0, -1].float(), prompt, N_GREEDY)
    try:
        ghf = greedy_hf(m2, prompt, N_GREEDY, pad)
    except Exception:
        traceback.print_exc()
        ghf = []
    print("  greedy HF generate:", ghf)
    print("  greedy manual     :", gman, "min top1-top2 gap", min(gaps))
    if len(ghf) != N_GREEDY:
        print("  WARNING: HF generate gave", len(ghf), "tokens; using the no-cache argmax loop instead")
        ghf = gman
    if ghf != gman:
        print("  WARNING: HF generate (kv cache) and no-cache argmax loop disagree")
    extra = {
        "greedy_ids_nocache": gman,
        "greedy_top2_gaps": [r6(x) for x in gaps],
        "greedy_text": tokinfo["decode"](ghf),
        "eos_in_greedy": any(t in tokinfo["eos_ids"] for t in ghf),
        "check_hf_vs_reference_max_abs": r6(diff),
    }
    finish_golden(path, name, tokinfo, {"f32": hf_logits}, ghf, extra, vers, note)


def dms_fixture(out, tokdir, tokinfo, vers):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    name = "qwen3-dms"
    print(f"=== {name} ===")
    path = os.path.join(out, name)
    os.makedirs(path, exist_ok=True)
    V = tokinfo["vocab_size"]
    cfg = make_config(
        Qwen3Config, vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=tokinfo["bos_id"],
        eos_token_id=tokinfo["im_end_id"],
        rope={"rope_type": "default", "rope_theta": 1000000.0},
        extra={"dms_window_size": DMS_WINDOW, "dms_alpha_scale": DMS_ALPHA_SCALE,
               "dms_initial_alpha_offset": DMS_ALPHA_OFFSET, "dms_cr": DMS_CR},
    )
    prompt = tokinfo["prompt_ids"]
    Hq, Hkv, d = 4, 2, 32
    g = Hq // Hkv
    best = None
    for trial in range(60):
        model = Qwen3ForCausalLM(cfg)
        init_weights(model, SEED + 7)
        gen = torch.Generator().manual_seed(10_000 + trial)
        with torch.no_grad():
            for layer in model.model.layers:
                W = layer.self_attn.q_proj.weight  # (Hq*d, hidden)
                for h in range(Hkv):
                    row = (h * g) * d + (d - 1)
                    W[row].copy_(0.2 * torch.randn(W.shape[1], generator=gen))
        round_to_storage(model, torch.bfloat16)
        model.eval()
        _, al, dl = ref_forward(model, prompt, "dms")
        gdms, _ = greedy_manual(lambda ids: ref_forward(model, ids, "dms")[0][-1], prompt, N_GREEDY)
        _, al2, dl2 = ref_forward(model, prompt + gdms, "dms")
        fr = torch.tensor(al, dtype=torch.float32).mean(dim=1)  # (L, Hkv)
        margin = min(float(x.abs().min()) for x in dl + dl2)
        ok = bool((fr >= 0.25).all() and (fr <= 0.75).all())
        score = (ok, margin)
        if best is None or score > best[0]:
            best = (score, trial)
        if ok and margin >= 1.0:
            break
    (ok, margin), trial = best
    print(f"  chose trial {trial}: fractions ok={ok}, min |decision logit| = {margin:.4g}")
    model = Qwen3ForCausalLM(cfg)
    init_weights(model, SEED + 7)
    gen = torch.Generator().manual_seed(10_000 + trial)
    with torch.no_grad():
        for layer in model.model.layers:
            W = layer.self_attn.q_proj.weight
            for h in range(Hkv):
                row = (h * g) * d + (d - 1)
                W[row].copy_(0.2 * torch.randn(W.shape[1], generator=gen))
    round_to_storage(model, torch.bfloat16)
    model.eval()
    gcfg = qwen3_generation_config(tokinfo)
    written = save_model(model, path, torch.bfloat16, gcfg)
    for k, v in (("dms_window_size", DMS_WINDOW), ("dms_alpha_scale", DMS_ALPHA_SCALE),
                 ("dms_initial_alpha_offset", DMS_ALPHA_OFFSET), ("dms_cr", DMS_CR)):
        if k not in written:
            print("  WARNING: transformers dropped", k, "from config.json; adding it back by hand")
            written[k] = v
            dump_json(os.path.join(path, "config.json"), written)
    copy_tokenizer(tokdir, path)
    m2 = load_back(path)
    check_reload(model, m2)
    inp = torch.tensor([prompt])
    with torch.no_grad():
        hf_plain = m2(input_ids=inp).logits[0].float()
    ref_plain, _, _ = ref_forward(m2, prompt, "plain")
    diff = float((hf_plain - ref_plain).abs().max())
    print(f"  HF forward vs our reference (plain): max abs diff {diff:.3g}")
    full, _, _ = ref_forward(m2, prompt, "full")
    dms, alpha, dlog = ref_forward(m2, prompt, "dms")
    print(f"  max |full - plain| = {float((full - hf_plain).abs().max()):.4g};"
          f" max |dms - full| = {float((dms - full).abs().max()):.4g}")
    a = torch.tensor(alpha)
    print("  alpha fraction per (layer, kvHead):", a.float().mean(dim=1).tolist())
    # keys hidden from the last query: how much eviction the prompt sees
    T = len(prompt)
    hidden = [[sum(1 for j in range(T - 1) if alpha[l][j + 1][h] == 1 and (T - 1 - j) > DMS_WINDOW)
               for h in range(Hkv)] for l in range(len(alpha))]
    print("  keys hidden from the last prompt query per (layer, kvHead):", hidden)
    gfull, gaps_full = greedy_manual(lambda ids: ref_forward(m2, ids, "full")[0][-1], prompt, N_GREEDY)
    gdms, gaps_dms = greedy_manual(lambda ids: ref_forward(m2, ids, "dms")[0][-1], prompt, N_GREEDY)
    _, alpha_seq, dlog_seq = ref_forward(m2, prompt + gdms, "dms")
    margin = min(float(x.abs().min()) for x in dlog + dlog_seq)
    print("  greedy full:", gfull, "min gap", min(gaps_full))
    print("  greedy dms :", gdms, "min gap", min(gaps_dms))
    print(f"  min |decision logit| over prompt and prompt+greedy_ids_dms: {margin:.4g}")
    try:
        gplain = greedy_hf(m2, prompt, N_GREEDY, tokinfo["pad_id"])
    except Exception as e:
        print("  HF generate failed:", e)
        gplain = None
    extra = {
        "greedy_ids_dms": gdms,
        "greedy_ids_plain_hf": gplain,
        "greedy_top2_gaps": [r6(x) for x in gaps_full],
        "greedy_top2_gaps_dms": [r6(x) for x in gaps_dms],
        "greedy_text": tokinfo["decode"](gfull),
        "eos_in_greedy": any(t in tokinfo["eos_ids"] for t in gfull),
        "alpha": alpha,
        "alpha_seq_dms": alpha_seq,
        "decision_logits": [[[r6(v) for v in row] for row in x.tolist()] for x in dlog],
        "min_abs_decision_logit": r6(margin),
        "dms": {"window_size": DMS_WINDOW, "alpha_scale": DMS_ALPHA_SCALE,
                "initial_alpha_offset": DMS_ALPHA_OFFSET, "cr": DMS_CR,
                "decision_heads": [h * g for h in range(Hkv)], "decision_channel": d - 1},
        "check_hf_vs_reference_max_abs": r6(diff),
    }
    note = (
        "DMS fixture. logits.plain = HF Qwen3 forward ignoring DMS. logits.full = DMS model without "
        "eviction: channel d-1 (31) of query heads h*g (0 and 2) zeroed after q_norm (before RoPE) "
        "and again after RoPE; keys unchanged. logits.dms = full + visibility mask: "
        "alpha[l][t][h] = 1 iff 100*q_t[h*g][d-1] - 5 > 0 (after q_norm, before RoPE, before zeroing); "
        "key j is governed by alpha[l][j+1][h] (alpha[l][0] governs nothing; the last token has no "
        "decision); query i sees key j<=i iff i-j <= 4 or alpha[l][j+1][h] == 0. Decisions come from "
        "the dms run (layer>0 decisions depend on masked earlier layers). greedy_ids = argmax loop "
        "over logits.full semantics (recomputed each step); greedy_ids_dms = same over dms semantics; "
        "alpha_seq_dms = decisions over prompt_ids + greedy_ids_dms. decision_logits = 100*q - 5 for "
        "the prompt. Weights stored bf16, computed in f32 from the stored values."
    )
    finish_golden(path, name, tokinfo, {"full": full, "dms": dms, "plain": hf_plain}, gfull, extra, vers, note)


def qwen3_generation_config(tokinfo):
    from transformers import GenerationConfig
    return GenerationConfig(
        bos_token_id=tokinfo["bos_id"], eos_token_id=[tokinfo["im_end_id"], tokinfo["bos_id"]],
        pad_token_id=tokinfo["pad_id"], do_sample=True, temperature=0.6, top_k=20, top_p=0.95,
    )


def plain_generation_config(tokinfo):
    from transformers import GenerationConfig
    return GenerationConfig(bos_token_id=tokinfo["bos_id"], eos_token_id=tokinfo["im_end_id"],
                            pad_token_id=tokinfo["pad_id"])


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma list of fixture names")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_grad_enabled(False)
    out = args.out
    os.makedirs(out, exist_ok=True)
    vers = versions()
    print("versions:", vers)

    # ---- tokenizer
    tok = build_tokenizer()
    tokdir = os.path.join(out, "_tokenizer")
    os.makedirs(tokdir, exist_ok=True)
    tok.save(os.path.join(tokdir, "tokenizer.json"))
    dump_json(os.path.join(tokdir, "tokenizer_config.json"), tokenizer_config(tok))
    V = tok.get_vocab_size(with_added_tokens=True)
    print("tokenizer vocab size (with added tokens):", V, "base:", tok.get_vocab_size(with_added_tokens=False))
    ids_of = {t: tok.token_to_id(t) for t in SPECIAL + THINK}
    print("added token ids:", ids_of)

    hf_tok = None
    try:
        from transformers import AutoTokenizer
        hf_tok = AutoTokenizer.from_pretrained(tokdir)
        print("AutoTokenizer class:", type(hf_tok).__name__)
    except Exception:
        traceback.print_exc()
        print("WARNING: AutoTokenizer failed; falling back to jinja2 for chat rendering")

    def render(ex):
        if hf_tok is not None:
            return hf_tok.apply_chat_template(ex["messages"], tokenize=False,
                                              add_generation_prompt=ex["add_generation_prompt"], **ex["kwargs"])
        return render_with_jinja2(ex["messages"], ex["add_generation_prompt"], ex["kwargs"])

    chat_examples = []
    for ex in CHAT_EXAMPLES:
        text = render(ex)
        j2 = render_with_jinja2(ex["messages"], ex["add_generation_prompt"], ex["kwargs"])
        if text != j2:
            print("WARNING: apply_chat_template and plain jinja2 differ:", repr(text), repr(j2))
        chat_examples.append({**ex, "text": text, "ids": tok.encode(text).ids,
                              "rendered_by": "transformers.apply_chat_template" if hf_tok is not None else "jinja2"})
        print("chat example:", repr(text))
    prompt_text = chat_examples[0]["text"]
    prompt_ids = tok.encode(prompt_text).ids
    print("prompt_text:", repr(prompt_text))
    print("prompt_ids (%d):" % len(prompt_ids), prompt_ids)

    cases = []
    for s in TOKENIZER_CASES:
        enc = tok.encode(s)
        case = {"text": s, "ids": enc.ids, "tokens": enc.tokens,
                "decoded": tok.decode(enc.ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(enc.ids, skip_special_tokens=True)}
        if hf_tok is not None:
            try:
                hf_ids = hf_tok(s, add_special_tokens=True)["input_ids"]
                case["hf_ids_equal"] = hf_ids == enc.ids
                if hf_ids != enc.ids:
                    print("WARNING: transformers tokenizer differs from tokenizers on", repr(s), hf_ids, enc.ids)
                case["hf_decoded"] = hf_tok.decode(enc.ids)
            except Exception as e:
                print("hf tokenizer encode failed:", e)
        cases.append(case)
    dump_json(os.path.join(out, "tokenizer_cases.json"), {
        "note": "Shared tokenizer of all fixtures (identical tokenizer.json in every folder). ids from "
                "tokenizers.Tokenizer.encode (no special tokens added by the post-processor). "
                "chat_examples rendered with transformers apply_chat_template from tokenizer_config.json.",
        "vocab_size": V, "added_token_ids": ids_of, "cases": cases, "chat_examples": chat_examples, **vers})

    def decode(ids):
        return tok.decode(ids, skip_special_tokens=False)

    tokinfo = {
        "prompt_text": prompt_text, "prompt_ids": prompt_ids, "chat_examples": chat_examples,
        "vocab_size": V, "bos_id": ids_of["<|endoftext|>"], "pad_id": ids_of["<|endoftext|>"],
        "im_end_id": ids_of["<|im_end|>"], "eos_ids": [ids_of["<|im_end|>"], ids_of["<|endoftext|>"]],
        "decode": decode,
    }

    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    def b_qwen3():
        cfg = make_config(
            Qwen3Config, vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
            rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=tokinfo["bos_id"],
            eos_token_id=tokinfo["im_end_id"], rope={"rope_type": "default", "rope_theta": 1000000.0})
        return Qwen3ForCausalLM(cfg)

    def b_qwen2():
        cfg = make_config(
            Qwen2Config, vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
            rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=tokinfo["bos_id"],
            eos_token_id=tokinfo["im_end_id"], rope={"rope_type": "default", "rope_theta": 10000.0})
        return Qwen2ForCausalLM(cfg)

    def b_llama():
        cfg = make_config(
            LlamaConfig, vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
            rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
            bos_token_id=tokinfo["bos_id"], eos_token_id=tokinfo["im_end_id"],
            rope={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
        return LlamaForCausalLM(cfg)

    jobs = {
        "qwen3": lambda: standard_fixture(
            out, "qwen3", tokdir, tokinfo, vers, b_qwen3, torch.bfloat16, qwen3_generation_config(tokinfo), SEED + 1,
            note="Qwen3ForCausalLM, 3 layers, hidden 64, 4 heads / 2 KV heads, head_dim 32, q_norm/k_norm, "
                 "tied embeddings (no lm_head.weight stored), rope_theta 1e6, weights stored bf16; "
                 "logits.f32 = HF eager forward in float32 from the stored weights."),
        "qwen2": lambda: standard_fixture(
            out, "qwen2", tokdir, tokinfo, vers, b_qwen2, torch.float16, plain_generation_config(tokinfo), SEED + 2,
            note="Qwen2ForCausalLM, 2 layers, hidden 64, 4 heads / 1 KV head (group 4), head_dim 16, "
                 "q/k/v bias, untied, rope_theta 1e4, weights stored f16; logits.f32 = HF eager forward "
                 "in float32 from the stored weights."),
        "llama": lambda: standard_fixture(
            out, "llama", tokdir, tokinfo, vers, b_llama, torch.float32, plain_generation_config(tokinfo), SEED + 3,
            shards=2,
            note="LlamaForCausalLM, 2 layers, hidden 64, 4 heads / 2 KV heads, head_dim 16, untied, "
                 "rope llama3 (theta 5e5, factor 8, low 1, high 4, original_max_position_embeddings 16), "
                 "max_position_embeddings 128, f32 weights in 2 safetensors shards + index."),
        "qwen3-dms": lambda: dms_fixture(out, tokdir, tokinfo, vers),
    }
    only = [s for s in args.only.split(",") if s]
    failed = []
    for name, job in jobs.items():
        if only and name not in only:
            continue
        try:
            job()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"!!! fixture {name} FAILED")
    shutil.rmtree(tokdir, ignore_errors=True)
    print("failed:", failed)
    print("done")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
