"""A Qwen3-family causal LM in plain PyTorch, with Dynamic Memory Sparsification (DMS).

No dependency on transformers: the math follows Hugging Face's Qwen3 implementation
(RMSNorm computed in float32, per-head q_norm/k_norm before rotate-half RoPE, grouped-query
attention, SwiGLU MLP), and two switches cover its relatives:
  * ``qk_norm=False``            -> Llama / Qwen2 (no per-head q/k RMSNorm)
  * ``qkv_bias`` / ``o_bias``    -> Qwen2 (bias on q, k, v) or Llama ``attention_bias``.

DMS (see shared/DMS.md): every layer makes one eviction decision per (token, KV head).
  * borrowed channel (default): logit = s * q[h*g][d-1] - c, read after q_norm and before RoPE;
    that channel is zeroed before and after RoPE.
  * ``dms_separate_alpha``: logit = s * Linear(RMSNorm(x_layer_input))[h] - c.
The decision at token t+1 governs key t (shift by one); query i sees key j <= i iff
i - j <= w or the (shifted) decision for j is 0.

Attention modes of ``forward``:
  * ``dms_mode="off"``   : plain causal attention (the teacher, and pretraining).
  * ``dms_mode="train"`` : Gumbel-sigmoid relaxation, soft additive mask log(1 - p~) beyond the window.
  * ``dms_mode="hard"``  : inference semantics, hard decisions (logit > 0), exact visibility rule.
"""

import math
from dataclasses import dataclass, field, asdict, fields
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
MASK_VALUE = -1e9  # finite "minus infinity" for additive masks (keeps softmax NaN-free)


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    hidden_size: int = 384
    intermediate_size: int = 1024
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    head_dim: int = 64
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = True
    qk_norm: bool = True  # Qwen3: True; Qwen2 / Llama: False
    qkv_bias: bool = False  # Qwen2: True
    o_bias: bool = False  # Llama attention_bias=True sets both qkv_bias and o_bias
    mlp_bias: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    pad_token_id: Optional[int] = None
    architecture: str = "Qwen3ForCausalLM"
    initializer_range: float = 0.02
    # DMS
    dms_window_size: int = 64
    dms_alpha_scale: float = 100.0
    dms_initial_alpha_offset: float = 5.0
    dms_cr: Optional[float] = None
    dms_separate_alpha: bool = False
    dms_tau: float = 0.1
    # True once the checkpoint carries DMS semantics (borrowed channel reserved / adapter present)
    dms: bool = False

    @property
    def group_size(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class RMSNorm(nn.Module):
    """HF Qwen3RMSNorm: normalise in float32, cast back, then scale by the weight."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype):
    """HF default RoPE: inv_freq over even channels, emb = cat(freqs, freqs); computed in float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float().to(positions.device) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    # x: (B, H, T, d); cos/sin: (T, d)
    return x * cos + rotate_half(x) * sin


# ---------------------------------------------------------------------------------------------
# DMS pieces
# ---------------------------------------------------------------------------------------------

def gumbel_sigmoid_decisions(logits: torch.Tensor, tau: float, noise: Optional[torch.Tensor] = None):
    """Relaxed Bernoulli with straight-through hard decisions.

    Returns (scaled_logits, alpha_st): scaled = (l + n) / tau with n = G1 - G2, p = sigmoid(scaled),
    alpha_st = 1[p > 0.5] - sg(p) + p (value hard, gradient of p).
    """
    if noise is None:
        u1 = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-10, 1 - 1e-10)
        u2 = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-10, 1 - 1e-10)
        noise = -torch.log(-torch.log(u1)) + torch.log(-torch.log(u2))  # G1 - G2
    scaled = (logits.float() + noise) / tau
    p = torch.sigmoid(scaled)
    alpha = (p > 0.5).float() - p.detach() + p
    return scaled, alpha


def shift_decisions(x: torch.Tensor, fill: float):
    """x[..., t] is the decision computed at token t; return y[..., j] = x[..., j+1] (applies to key j)."""
    return F.pad(x[..., 1:], (0, 1), value=fill)


def dms_soft_mask(shifted_scaled_logits: torch.Tensor, window: int):
    """Training mask (B, Hkv, T, T), float32, to be added to attention scores.

    0 for 0 <= i - j <= w; log(1 - p~_j) = logsigmoid(-scaled_j) for i - j > w; MASK_VALUE for j > i.
    """
    T = shifted_scaled_logits.shape[-1]
    dev = shifted_scaled_logits.device
    i = torch.arange(T, device=dev)[:, None]
    j = torch.arange(T, device=dev)[None, :]
    diff = i - j
    logkeep = F.logsigmoid(-shifted_scaled_logits.float())[..., None, :]  # (B,H,1,T) over keys j
    beyond = (diff > window).float()
    mask = beyond * logkeep
    mask = mask.masked_fill(diff < 0, MASK_VALUE)
    return mask


def dms_hard_visibility(shifted_alpha: torch.Tensor, window: int):
    """Boolean visibility (B, Hkv, T, T): query i sees key j iff j <= i and (i - j <= w or alpha~_j == 0)."""
    T = shifted_alpha.shape[-1]
    dev = shifted_alpha.device
    i = torch.arange(T, device=dev)[:, None]
    j = torch.arange(T, device=dev)[None, :]
    diff = i - j
    causal = diff >= 0
    in_window = diff <= window
    kept = (shifted_alpha < 0.5)[..., None, :]
    return causal & (in_window | kept)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------

class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.cfg = cfg
        self.layer_idx = layer_idx
        H, Hkv, d, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
        self.q_proj = nn.Linear(D, H * d, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(D, Hkv * d, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(D, Hkv * d, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(H * d, D, bias=cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(d, cfg.rms_norm_eps)
        else:
            self.q_norm = None
            self.k_norm = None
        if cfg.dms_separate_alpha:
            self.dms_proj_alpha_norm = RMSNorm(D, cfg.rms_norm_eps)
            self.dms_proj_alpha = nn.Linear(D, Hkv, bias=False)
            nn.init.zeros_(self.dms_proj_alpha.weight)
        else:
            self.dms_proj_alpha_norm = None
            self.dms_proj_alpha = None

    def forward(self, x, layer_input, cos, sin, dms_mode: str, noise=None):
        """x: normed hidden (B,T,D); layer_input: the un-normed layer input (for the separate-alpha adapter).

        Returns (out, aux) where aux holds 'alpha' (B,Hkv,T) decisions (straight-through in train mode)
        for DMS modes, else None.
        """
        cfg = self.cfg
        B, T, _ = x.shape
        H, Hkv, d, g = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.group_size
        q = self.q_proj(x).view(B, T, H, d)
        k = self.k_proj(x).view(B, T, Hkv, d)
        v = self.v_proj(x).view(B, T, Hkv, d).transpose(1, 2)
        if self.q_norm is not None:
            q = self.q_norm(q)
            k = self.k_norm(k)
        q = q.transpose(1, 2)  # (B,H,T,d)
        k = k.transpose(1, 2)

        logits = None
        borrowed = cfg.dms and not cfg.dms_separate_alpha
        if cfg.dms and dms_mode != "off_original":
            if cfg.dms_separate_alpha:
                a = self.dms_proj_alpha(self.dms_proj_alpha_norm(layer_input))  # (B,T,Hkv)
                logits = a.float().transpose(1, 2) * cfg.dms_alpha_scale - cfg.dms_initial_alpha_offset
            else:
                logits = q[:, ::g, :, d - 1].float() * cfg.dms_alpha_scale - cfg.dms_initial_alpha_offset
        if borrowed and dms_mode != "off_original":
            chan = torch.ones(H, d, device=q.device, dtype=q.dtype)
            chan[::g, d - 1] = 0
            chan = chan[None, :, None, :]
            q = q * chan
            q = apply_rope(q, cos, sin) * chan
        else:
            q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)

        aux = None
        scale = 1.0 / math.sqrt(d)
        mode = dms_mode if (cfg.dms and logits is not None) else "off"
        if mode in ("off", "off_original"):
            out = self._attend_causal(q, k, v, scale)
        elif mode == "train":
            scaled, alpha = gumbel_sigmoid_decisions(logits, cfg.dms_tau, noise)
            mask = dms_soft_mask(shift_decisions(scaled, 0.0), cfg.dms_window_size)  # (B,Hkv,T,T)
            out = self._attend_masked(q, k, v, scale, mask)
            aux = {"alpha": alpha}
        elif mode == "hard":
            alpha = (logits > 0).float()
            vis = dms_hard_visibility(shift_decisions(alpha, 0.0), cfg.dms_window_size)
            mask = torch.zeros(vis.shape, dtype=torch.float32, device=vis.device).masked_fill(~vis, MASK_VALUE)
            out = self._attend_masked(q, k, v, scale, mask)
            aux = {"alpha": alpha}
        else:
            raise ValueError(dms_mode)
        out = out.transpose(1, 2).reshape(B, T, H * d)
        return self.o_proj(out), aux

    def _attend_causal(self, q, k, v, scale):
        g = self.cfg.group_size
        if HAS_SDPA:
            dt = v.dtype if torch.is_autocast_enabled() else q.dtype
            q, k, v = q.to(dt), k.to(dt), v.to(dt)
            kk = k.repeat_interleave(g, dim=1) if g > 1 else k
            vv = v.repeat_interleave(g, dim=1) if g > 1 else v
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, scale=scale)
        T = q.shape[2]
        mask = torch.full((T, T), MASK_VALUE, device=q.device).triu(1)
        return self._attend_masked(q, k, v, scale, mask[None, None])

    def _attend_masked(self, q, k, v, scale, mask):
        """Explicit attention; mask (B|1, Hkv|1, T, T) float32 is shared by the g query heads of a group."""
        B, H, T, d = q.shape
        Hkv = k.shape[1]
        g = H // Hkv
        qg = q.view(B, Hkv, g, T, d)
        scores = torch.matmul(qg, k[:, :, None].transpose(-1, -2)).float() * scale  # (B,Hkv,g,T,T)
        scores = scores + mask[:, :, None]
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        out = torch.matmul(probs, v[:, :, None])  # (B,Hkv,g,T,d)
        return out.reshape(B, H, T, d)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(cfg, layer_idx)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, dms_mode, noise=None):
        a, aux = self.self_attn(self.input_layernorm(x), x, cos, sin, dms_mode, noise)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, aux


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class CausalLM(nn.Module):
    """HF-compatible parameter names: model.embed_tokens, model.layers.N..., model.norm, lm_head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.reset_parameters()
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.gradient_checkpointing = False

    def reset_parameters(self):
        std = self.cfg.initializer_range
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                if name.endswith("dms_proj_alpha"):
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
        # scale residual-branch outputs (GPT-2 style) for stable from-scratch pretraining
        for layer in self.model.layers:
            nn.init.normal_(layer.self_attn.o_proj.weight, 0.0, std / math.sqrt(2 * self.cfg.num_hidden_layers))
            nn.init.normal_(layer.mlp.down_proj.weight, 0.0, std / math.sqrt(2 * self.cfg.num_hidden_layers))

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())  # tied weights counted once

    def forward(self, input_ids, dms_mode: str = "off", return_aux: bool = False, positions=None):
        """Returns logits (B,T,V) in float32; with return_aux, also a (B, L, Hkv, T) tensor of decisions
        (straight-through in train mode) or None."""
        cfg = self.cfg
        B, T = input_ids.shape
        x = self.model.embed_tokens(input_ids)
        if positions is None:
            positions = torch.arange(T, device=input_ids.device)
        cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, x.dtype)
        alphas = []
        for layer in self.model.layers:
            if self.gradient_checkpointing and self.training:
                x, aux = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, dms_mode, use_reentrant=False)
            else:
                x, aux = layer(x, cos, sin, dms_mode)
            if aux is not None:
                alphas.append(aux["alpha"])
        x = self.model.norm(x)
        logits = self.lm_head(x).float()
        if return_aux:
            return logits, (torch.stack(alphas, dim=1) if alphas else None)
        return logits


# ---------------------------------------------------------------------------------------------
# DMS conversion
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def enable_dms(model: CausalLM, window: int, cr: Optional[float] = None, separate_alpha: bool = False,
               alpha_scale: float = 100.0, alpha_offset: float = 5.0, zero_borrowed_rows: bool = True):
    """Turn a plain checkpoint into a DMS student in place.

    For the borrowed channel, ``zero_borrowed_rows`` zeroes the q_proj row (and bias) that produces
    channel d-1 of each group's first query head, so the decision logit starts at exactly -c
    (nothing evicted at step 0, as DMS.md requires); that channel is excluded from attention
    anyway. With q_norm the row still receives gradient through the RMS normalisation.
    """
    cfg = model.cfg
    cfg.dms = True
    cfg.dms_window_size = int(window)
    cfg.dms_cr = cr
    cfg.dms_alpha_scale = alpha_scale
    cfg.dms_initial_alpha_offset = alpha_offset
    if separate_alpha and not cfg.dms_separate_alpha:
        cfg.dms_separate_alpha = True
        dev = model.lm_head.weight.device
        dt = model.lm_head.weight.dtype
        for layer in model.model.layers:
            at = layer.self_attn
            at.dms_proj_alpha_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps).to(dev, dt)
            at.dms_proj_alpha = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads, bias=False).to(dev, dt)
            nn.init.zeros_(at.dms_proj_alpha.weight)
    elif not cfg.dms_separate_alpha and zero_borrowed_rows:
        d, g = cfg.head_dim, cfg.group_size
        for layer in model.model.layers:
            at = layer.self_attn
            for h in range(0, cfg.num_attention_heads, g):
                at.q_proj.weight[h * d + d - 1].zero_()
                if at.q_proj.bias is not None:
                    at.q_proj.bias[h * d + d - 1] = 0
    return model


def dms_adapter_parameters(model: CausalLM):
    return [p for n, p in model.named_parameters() if "dms_proj_alpha" in n]
