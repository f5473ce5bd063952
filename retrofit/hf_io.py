"""Hugging Face layout I/O without transformers or the safetensors package.

safetensors format: 8-byte little-endian header length N, N bytes of JSON
({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}), then the raw
little-endian tensor bytes. Implemented here so CI needs only PyTorch.
"""

import json
import os
import shutil
import struct
from typing import Dict, Optional

import torch

from model import CausalLM, ModelConfig

_DT = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float64: "F64",
}
_DT_INV = {v: k for k, v in _DT.items()}
_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F64": 8}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(tensors: Dict[str, torch.Tensor], path: str, metadata: Optional[dict] = None):
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        t = tensors[name]
        b = _tensor_bytes(t)
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n).decode("utf-8"))
        data = f.read()
    out = {}
    npdt = {"F32": np.float32, "F16": np.int16, "BF16": np.int16, "I64": np.int64, "I32": np.int32,
            "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "F64": np.float64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=npdt[info["dtype"]]).copy()
        t = torch.from_numpy(arr)
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        elif info["dtype"] == "F16":
            t = t.view(torch.float16)
        out[name] = t.reshape(info["shape"])
    return out


def load_safetensors_dir(path: str) -> Dict[str, torch.Tensor]:
    """A single model.safetensors or a sharded one with model.safetensors.index.json."""
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return load_safetensors(single)
    index = os.path.join(path, "model.safetensors.index.json")
    with open(index) as f:
        wm = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(wm.values())):
        out.update(load_safetensors(os.path.join(path, shard)))
    return out


# ---------------------------------------------------------------------------------------------
# config.json <-> ModelConfig
# ---------------------------------------------------------------------------------------------

def hf_config_dict(cfg: ModelConfig, torch_dtype: str = "bfloat16") -> dict:
    arch = cfg.architecture
    model_type = {"Qwen3ForCausalLM": "qwen3", "Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}[arch]
    d = {
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "initializer_range": cfg.initializer_range,
        "use_cache": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "torch_dtype": torch_dtype,
    }
    if arch == "Qwen3ForCausalLM":
        d["attention_bias"] = bool(cfg.qkv_bias or cfg.o_bias)
    elif arch == "LlamaForCausalLM":
        d["attention_bias"] = bool(cfg.qkv_bias or cfg.o_bias)
        d["mlp_bias"] = bool(cfg.mlp_bias)
    if cfg.pad_token_id is not None:
        d["pad_token_id"] = cfg.pad_token_id
    if cfg.dms:
        d["dms_window_size"] = cfg.dms_window_size
        d["dms_alpha_scale"] = cfg.dms_alpha_scale
        d["dms_initial_alpha_offset"] = cfg.dms_initial_alpha_offset
        d["dms_cr"] = cfg.dms_cr
        d["dms_separate_alpha"] = bool(cfg.dms_separate_alpha)
    return d


def config_from_hf(d: dict) -> ModelConfig:
    arch = (d.get("architectures") or ["Qwen3ForCausalLM"])[0]
    if arch not in ("Qwen3ForCausalLM", "Qwen2ForCausalLM", "LlamaForCausalLM"):
        raise ValueError(f"unsupported architecture {arch}")
    if d.get("rope_scaling"):
        print(f"warning: rope_scaling {d['rope_scaling']} is ignored (plain RoPE is used)")
    H = d["num_attention_heads"]
    head_dim = d.get("head_dim") or d["hidden_size"] // H
    att_bias = bool(d.get("attention_bias", False))
    eos = d.get("eos_token_id")
    cfg = ModelConfig(
        vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], intermediate_size=d["intermediate_size"],
        num_hidden_layers=d["num_hidden_layers"], num_attention_heads=H,
        num_key_value_heads=d.get("num_key_value_heads", H), head_dim=head_dim,
        rms_norm_eps=d.get("rms_norm_eps", 1e-6), rope_theta=d.get("rope_theta", 10000.0),
        max_position_embeddings=d.get("max_position_embeddings", 2048),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        qk_norm=(arch == "Qwen3ForCausalLM"),
        qkv_bias=True if arch == "Qwen2ForCausalLM" else att_bias,
        o_bias=att_bias if arch != "Qwen2ForCausalLM" else False,
        mlp_bias=bool(d.get("mlp_bias", False)),
        bos_token_id=d.get("bos_token_id"), eos_token_id=eos, pad_token_id=d.get("pad_token_id"),
        architecture=arch, initializer_range=d.get("initializer_range", 0.02),
    )
    if "dms_window_size" in d or "dms_alpha_scale" in d:
        cfg.dms = True
        cfg.dms_window_size = int(d.get("dms_window_size", 512))
        cfg.dms_alpha_scale = float(d.get("dms_alpha_scale", 100.0))
        cfg.dms_initial_alpha_offset = float(d.get("dms_initial_alpha_offset", 5.0))
        cfg.dms_cr = d.get("dms_cr")
        cfg.dms_separate_alpha = bool(d.get("dms_separate_alpha", False))
    return cfg


# ---------------------------------------------------------------------------------------------
# export / import
# ---------------------------------------------------------------------------------------------

def model_state_for_export(model: CausalLM, dtype=torch.bfloat16) -> Dict[str, torch.Tensor]:
    sd = {}
    for name, t in model.state_dict().items():
        if model.cfg.tie_word_embeddings and name == "lm_head.weight":
            continue
        sd[name] = t.detach().to(dtype) if t.is_floating_point() else t.detach()
    return sd


def export_hf(model: CausalLM, outdir: str, tokenizer_dir: Optional[str] = None, dtype=torch.bfloat16,
              generation: Optional[dict] = None, extra_metadata: Optional[dict] = None):
    """Write config.json, model.safetensors, generation_config.json and (if given) tokenizer files."""
    os.makedirs(outdir, exist_ok=True)
    cfg = model.cfg
    tdn = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[dtype]
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(hf_config_dict(cfg, tdn), f, indent=2)
    meta = {"format": "pt"}
    if extra_metadata:
        meta.update(extra_metadata)
    save_safetensors(model_state_for_export(model, dtype), os.path.join(outdir, "model.safetensors"), meta)
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "do_sample": True,
           "temperature": 0.7, "top_p": 0.9, "top_k": 40, "max_new_tokens": 512}
    if cfg.pad_token_id is not None:
        gen["pad_token_id"] = cfg.pad_token_id
    if generation:
        gen.update(generation)
    with open(os.path.join(outdir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    if tokenizer_dir:
        for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            src = os.path.join(tokenizer_dir, fn)
            if os.path.exists(src) and os.path.abspath(src) != os.path.abspath(os.path.join(outdir, fn)):
                shutil.copy(src, os.path.join(outdir, fn))


def import_hf(path: str, dtype=torch.float32, strict: bool = True) -> CausalLM:
    """Load a HF Qwen3 / Qwen2 / Llama checkpoint directory (config.json + safetensors)."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = config_from_hf(json.load(f))
    sd = load_safetensors_dir(path)
    sd = {k: v for k, v in sd.items() if not k.endswith("rotary_emb.inv_freq")}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    elif "lm_head.weight" not in sd:
        # some exports omit lm_head while tie_word_embeddings is false: tie them then
        cfg.tie_word_embeddings = True
    model = CausalLM(cfg)
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
    if strict and (missing or unexpected):
        raise ValueError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    return model.to(dtype)
