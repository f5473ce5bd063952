"""CPU smoke tests for the retrofit trainer (Python unittest, PyTorch >= 1.13, no transformers).

  /usr/bin/python3 -m unittest discover -s retrofit/tests -v

With RETROFIT_EXPORT_DIR=/some/dir, test_write_engine_fixture also writes a tiny exported DMS model
(config.json, model.safetensors, generation_config.json) and reference_logits.json, for the engine's
TypeScript tests to compare against.
"""

import json
import os
import random
import shutil
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import hf_io  # noqa: E402
import train  # noqa: E402
from model import (CausalLM, ModelConfig, dms_hard_visibility, dms_soft_mask, enable_dms,  # noqa: E402
                   gumbel_sigmoid_decisions, shift_decisions)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=128, rope_theta=10000.0,
            bos_token_id=0, eos_token_id=2, pad_token_id=0)


def write_token_files(d, n=60000, seed=0):
    """A learnable stream: repeated short 'sentences' from a small grammar plus copy patterns."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        k = rng.randint(3, 8)
        start = rng.randint(5, 40)
        seq = [(start + 3 * i) % 60 + 4 for i in range(k)]  # arithmetic progressions mod 60
        out += [1] + seq + [2] + seq + [0]
    arr = np.asarray(out[:n], dtype=np.uint16)
    arr.tofile(os.path.join(d, "train.bin"))
    arr[: n // 10].tofile(os.path.join(d, "val_text.bin"))
    arr[n // 10: n // 5].tofile(os.path.join(d, "val_synth.bin"))


def brute_visibility(alpha_tok, w):
    """alpha_tok[t]: decision computed at token t (governs key t-1). Returns vis[i][j] by the rule."""
    T = len(alpha_tok)
    vis = [[False] * T for _ in range(T)]
    for i in range(T):
        for j in range(i + 1):
            a_j = alpha_tok[j + 1] if j + 1 < T else 0
            vis[i][j] = (i - j <= w) or a_j == 0
    return vis


def brute_cache_decode(alpha_tok, w):
    """Simulate the inference cache of DMS.md section 3 for one (layer, head): which keys each query reads."""
    T = len(alpha_tok)
    slots = []  # token ids held
    marked = set()
    reads = []
    for t in range(T):
        cand = t - w - 1
        if cand >= 0 and cand in marked and cand in slots:
            slots[slots.index(cand)] = t
        else:
            slots.append(t)
        if t >= 1 and alpha_tok[t] == 1:
            marked.add(t - 1)
        reads.append(sorted(slots))
        # keys older than the window that are marked must be gone at the next step's read
    return reads


class TestSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="retrofit_test_")
        cls.data = os.path.join(cls.tmp, "data")
        os.makedirs(cls.data)
        write_token_files(cls.data)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ masks
    def test_dms_mask_matches_bruteforce(self):
        g = torch.Generator().manual_seed(0)
        for w in (0, 1, 3, 5):
            T = 13
            alpha = (torch.rand(2, 3, T, generator=g) > 0.5).float()
            vis = dms_hard_visibility(shift_decisions(alpha, 0.0), w)
            for b in range(2):
                for h in range(3):
                    ref = brute_visibility(alpha[b, h].tolist(), w)
                    self.assertEqual(vis[b, h].tolist(), ref, f"w={w} b={b} h={h}")

    def test_cache_simulation_agrees_with_mask(self):
        """The ring-buffer cache of DMS.md section 3 reads exactly the keys the mask makes visible."""
        g = torch.Generator().manual_seed(1)
        for w in (1, 2, 4):
            T = 20
            alpha = (torch.rand(T, generator=g) > 0.4).float()
            vis = dms_hard_visibility(shift_decisions(alpha[None, None], 0.0), w)[0, 0]
            reads = brute_cache_decode([int(a) for a in alpha.tolist()], w)
            for i in range(T):
                self.assertEqual([j for j in range(T) if vis[i, j]], reads[i], f"w={w} i={i}")
            # ring: at most w+1 marked-or-not recent tokens plus kept ones
            self.assertLessEqual(len(reads[-1]), T)

    def test_soft_mask_values(self):
        T, w = 9, 2
        scaled = torch.randn(1, 2, T) * 3
        m = dms_soft_mask(shift_decisions(scaled, 0.0), w)
        for i in range(T):
            for j in range(T):
                v = m[0, 1, i, j].item()
                if j > i:
                    self.assertLess(v, -1e8)
                elif i - j <= w:
                    self.assertEqual(v, 0.0)
                else:
                    p = torch.sigmoid(scaled[0, 1, j + 1]).item()
                    self.assertAlmostEqual(v, float(np.log1p(-p)) if p < 1 - 1e-7 else v, places=4)

    def test_gumbel_straight_through(self):
        logits = torch.tensor([-5.0, 0.0, 5.0], requires_grad=True)
        noise = torch.zeros(3)
        scaled, alpha = gumbel_sigmoid_decisions(logits, 0.1, noise)
        self.assertEqual(alpha.detach().tolist(), [0.0, 0.0, 1.0])  # p(0) = 0.5 is not > 0.5
        alpha.sum().backward()
        self.assertGreater(logits.grad[1].item(), 1.0)  # dp/dl = p(1-p)/tau = 2.5 at 0

    def test_borrowed_channel_zeroed(self):
        torch.manual_seed(0)
        cfg = ModelConfig(**TINY)
        m = CausalLM(cfg)
        enable_dms(m, window=4)
        x = torch.randint(0, 64, (1, 10))
        # the decision logit starts at exactly -c (q_proj row zeroed): nothing evicted at step 0
        _, alphas = m(x, dms_mode="hard", return_aux=True)
        self.assertEqual(alphas.sum().item(), 0.0)
        # logits with eviction off and 'hard' with no evictions are identical
        self.assertTrue(torch.allclose(m(x, dms_mode="off"), m(x, dms_mode="hard"), atol=1e-5))

    # ------------------------------------------------------------------ training
    def _pretrain(self, out, steps=40):
        train.main(["pretrain", "--data", self.data, "--out", out, "--model_config", json.dumps(TINY),
                    "--steps", str(steps), "--batch", "16", "--seq", "48", "--lr", "3e-3", "--warmup", "5",
                    "--log_every", "10", "--eval_every", "20", "--eval_batches", "2"])
        with open(os.path.join(out, "train_log.json")) as f:
            return json.load(f)

    def test_pretrain_then_dms_then_export(self):
        pre = os.path.join(self.tmp, "pre")
        lg = self._pretrain(pre)
        losses = [r["loss"] for r in lg["log"]]
        self.assertLess(losses[-1], losses[0] - 0.5, f"pretraining loss did not fall: {losses}")
        self.assertTrue(os.path.exists(os.path.join(pre, "model.safetensors")))

        # DMS retrofit, all weights, borrowed channel: the eviction fraction must follow the hinge upwards
        dms = os.path.join(self.tmp, "dms")
        train.main(["dms", "--init", pre, "--data", self.data, "--out", dms, "--window", "4", "--target_cr", "4",
                    "--steps", "30", "--ramp_steps", "10", "--batch", "8", "--seq", "48", "--lr", "3e-3",
                    "--log_every", "5"])
        with open(os.path.join(dms, "dms_log.json")) as f:
            dl = json.load(f)["log"]
        fr0, fr1 = dl[0]["frac"], dl[-1]["frac"]
        self.assertLess(fr0, 0.1)
        self.assertGreater(fr1, fr0 + 0.3, f"alpha fraction did not respond to the hinge: {[r['frac'] for r in dl]}")
        for r in dl:
            self.assertTrue(np.isfinite(r["loss"]))

        # export files exist; re-import gives identical logits (bf16 weights both sides)
        for fn in ("config.json", "model.safetensors", "generation_config.json"):
            self.assertTrue(os.path.exists(os.path.join(dms, fn)), fn)
        with open(os.path.join(dms, "config.json")) as f:
            c = json.load(f)
        self.assertEqual(c["architectures"], ["Qwen3ForCausalLM"])
        for k in ("dms_window_size", "dms_alpha_scale", "dms_initial_alpha_offset", "dms_cr"):
            self.assertIn(k, c)
        m1 = hf_io.import_hf(dms)
        out2 = os.path.join(self.tmp, "dms2")
        hf_io.export_hf(m1, out2, dtype=torch.float32)
        m2 = hf_io.import_hf(out2)
        x = torch.randint(0, 64, (2, 40))
        for mode in ("off", "hard"):
            self.assertTrue(torch.equal(m1(x, dms_mode=mode), m2(x, dms_mode=mode)), mode)
        # measured compression on held-out data with eviction
        ev = train.eval_loss(m1, train.TokenStream(os.path.join(self.data, "val_text.bin"), 48), torch.device("cpu"),
                             bsz=4, max_batches=2, dms_mode="hard")
        self.assertGreater(ev["cr_final"], 1.0)

    def test_adapter_only(self):
        pre = os.path.join(self.tmp, "pre_a")
        self._pretrain(pre, steps=10)
        before = hf_io.load_safetensors(os.path.join(pre, "model.safetensors"))
        out = os.path.join(self.tmp, "dms_a")
        train.main(["dms", "--init", pre, "--data", self.data, "--out", out, "--window", "4", "--target_cr", "4",
                    "--steps", "30", "--ramp_steps", "5", "--batch", "8", "--seq", "48", "--lr", "1e-2",
                    "--adapter_only", "--log_every", "5"])
        after = hf_io.load_safetensors(os.path.join(out, "model.safetensors"))
        self.assertIn("model.layers.0.self_attn.dms_proj_alpha.weight", after)
        self.assertIn("model.layers.0.self_attn.dms_proj_alpha_norm.weight", after)
        for k, v in before.items():
            self.assertTrue(torch.equal(v, after[k]), f"{k} changed in adapter-only mode")
        with open(os.path.join(out, "dms_log.json")) as f:
            dl = json.load(f)["log"]
        self.assertGreater(dl[-1]["frac"], dl[0]["frac"] + 0.2, [r["frac"] for r in dl])

    # ------------------------------------------------------------------ incremental decoder
    def test_incremental_decoder_matches_full_forward(self):
        """policy_eval's token-by-token cache (DMS eviction by slot validity) reproduces the masked full forward."""
        import policy_eval
        torch.manual_seed(3)
        cfg = ModelConfig(**TINY)
        m = CausalLM(cfg)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "norm" in n:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
        enable_dms(m, window=3, zero_borrowed_rows=False)
        m.eval()
        x = torch.randint(0, 64, (2, 20))
        for policy, mode in (("dms", "hard"), ("full", "off")):
            ref, alphas = m(x, dms_mode=mode, return_aux=True)
            cache = policy_eval.Cache(cfg.num_hidden_layers, 2, cfg.num_key_value_heads, 20, cfg.head_dim, "cpu", torch.float32)
            outs = [policy_eval.step(m, cache, x[:, t], t, policy, None, torch.ones(2)) for t in range(20)]
            inc = torch.stack(outs, dim=1)
            self.assertTrue(torch.allclose(inc, ref, atol=1e-4), f"{policy}: {(inc - ref).abs().max()}")
            if policy == "dms":
                self.assertGreater(alphas.float().mean().item(), 0.1)  # evictions really happened
                self.assertLess(cache.valid.float().mean().item(), 0.99)

    def test_budget_policies_respect_budget(self):
        import policy_eval
        torch.manual_seed(4)
        m = CausalLM(ModelConfig(**TINY)).eval()
        x = torch.randint(0, 64, (2, 30))
        for policy in ("streaming", "tova", "h2o"):
            cache = policy_eval.Cache(2, 2, 2, 30, 16, "cpu", torch.float32)
            for t in range(30):
                policy_eval.step(m, cache, x[:, t], t, policy, 8, torch.ones(2))
                self.assertTrue(bool((cache.valid.sum(-1) <= 8).all()), f"{policy} t={t}")
            self.assertTrue(bool(cache.valid[..., 29].all()), policy)  # the newest token is always kept
            if policy == "streaming":
                self.assertTrue(bool(cache.valid[..., :4].all()))

    # ------------------------------------------------------------------ I/O and variants
    def test_variants_roundtrip(self):
        for arch, extra in (("Qwen3ForCausalLM", {}),
                            ("Qwen2ForCausalLM", {"qk_norm": False, "qkv_bias": True, "tie_word_embeddings": False}),
                            ("LlamaForCausalLM", {"qk_norm": False, "qkv_bias": True, "o_bias": True})):
            torch.manual_seed(0)
            cfg = ModelConfig(**{**TINY, **extra, "architecture": arch})
            m = CausalLM(cfg)
            with torch.no_grad():
                for n, p in m.named_parameters():
                    if n.endswith("bias") or "norm" in n:
                        p.add_(torch.randn_like(p) * 0.1)
            d = os.path.join(self.tmp, "rt_" + arch)
            hf_io.export_hf(m, d, dtype=torch.float32)
            m2 = hf_io.import_hf(d)
            self.assertEqual(m2.cfg.qk_norm, cfg.qk_norm, arch)
            self.assertEqual(m2.cfg.qkv_bias, cfg.qkv_bias, arch)
            self.assertEqual(m2.cfg.o_bias, cfg.o_bias, arch)
            x = torch.randint(0, 64, (1, 17))
            self.assertTrue(torch.equal(m(x), m2(x)), arch)

    def test_safetensors_bf16(self):
        t = {"a": torch.randn(3, 5).to(torch.bfloat16), "b": torch.arange(6, dtype=torch.int64).reshape(2, 3)}
        p = os.path.join(self.tmp, "t.safetensors")
        hf_io.save_safetensors(t, p, {"format": "pt"})
        r = hf_io.load_safetensors(p)
        self.assertTrue(torch.equal(r["a"], t["a"]))
        self.assertTrue(torch.equal(r["b"], t["b"]))
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            self.assertEqual(n % 8, 0)
            hdr = json.loads(f.read(n))
        self.assertEqual(hdr["a"]["dtype"], "BF16")

    def test_write_engine_fixture(self):
        """Tiny DMS model + reference logits for the TypeScript engine test (RETROFIT_EXPORT_DIR)."""
        out = os.environ.get("RETROFIT_EXPORT_DIR") or os.path.join(self.tmp, "fixture")
        write_engine_fixture(out)
        for fn in ("config.json", "model.safetensors", "generation_config.json", "reference_logits.json"):
            self.assertTrue(os.path.exists(os.path.join(out, fn)))


def write_engine_fixture(out):
    """A random tiny Qwen3 with DMS (window 4) whose decisions evict roughly half the tokens, exported in
    bf16; logits are computed in float32 from the bf16 weights as stored."""
    torch.manual_seed(1234)
    cfg = ModelConfig(**{**TINY, "rms_norm_eps": 1e-6, "rope_theta": 10000.0})
    m = CausalLM(cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    enable_dms(m, window=4, cr=2.0, zero_borrowed_rows=False)
    os.makedirs(out, exist_ok=True)
    hf_io.export_hf(m, out, dtype=torch.bfloat16)
    m = hf_io.import_hf(out, dtype=torch.float32)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, cfg.vocab_size, (1, 24), generator=g)
    with torch.no_grad():
        off = m(ids, dms_mode="off")
        hard, alphas = m(ids, dms_mode="hard", return_aux=True)
    ref = {
        "description": "WebDMS retrofit fixture: logits (float32 math on the bf16 weights in model.safetensors)",
        "input_ids": ids[0].tolist(),
        "dms_window_size": cfg.dms_window_size,
        "logits_no_eviction": [[round(v, 6) for v in row] for row in off[0].tolist()],
        "logits_dms": [[round(v, 6) for v in row] for row in hard[0].tolist()],
        "decisions": alphas[0].int().tolist(),  # [layer][kv_head][t], decision computed at token t (governs key t-1)
        "decision_rule": "alpha_t = 1 iff 100*q[h*g][d-1] - 5 > 0 (after q_norm, before RoPE); "
                         "query i sees key j iff i-j <= w or alpha_{j+1} == 0",
    }
    with open(os.path.join(out, "reference_logits.json"), "w") as f:
        json.dump(ref, f)
    return ref


if __name__ == "__main__":
    unittest.main()
