"""Pretraining from scratch and DMS retrofitting.

  # pretrain (next-token cross-entropy) for a step count or a wall-clock budget
  python3 retrofit/train.py pretrain --data DIR --model_config '{"hidden_size":384,...}' \
      --tokenizer DIR --out CKPT_DIR --batch 128 --seq 1024 --lr 1.5e-3 --time_budget 330

  # DMS retrofit of a HF checkpoint directory (ours or a user's Qwen3 / Qwen2 / Llama)
  python3 retrofit/train.py dms --init CKPT_DIR --data DIR --out DMS_DIR --window 64 --target_cr 6 \
      --steps 600 --ramp_steps 450 [--adapter_only] [--fsdp]

Checkpoints are written in HF layout (hf_io.export_hf), so every stage can be loaded by
transformers or by the WebDMS engine.

Distributed: with --fsdp the script expects torchrun (RANK/WORLD_SIZE/LOCAL_RANK); model (and
teacher) are wrapped in torch.distributed.fsdp.FullyShardedDataParallel, one decoder layer per
FSDP unit; every rank draws its own batches.
"""

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import CausalLM, ModelConfig, DecoderLayer, enable_dms, dms_adapter_parameters  # noqa: E402
import hf_io  # noqa: E402


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

class TokenStream:
    """Random windows of seq+1 tokens from a flat uint16 token file."""

    def __init__(self, path, seq, seed=0):
        self.data = np.memmap(path, dtype=np.uint16, mode="r")
        self.seq = seq
        self.rng = np.random.default_rng(seed)
        if len(self.data) <= seq + 1:
            raise ValueError(f"{path}: {len(self.data)} tokens is too short for seq {seq}")

    def batch(self, bsz, device):
        starts = self.rng.integers(0, len(self.data) - self.seq - 1, size=bsz)
        arr = np.stack([np.asarray(self.data[s:s + self.seq + 1], dtype=np.int64) for s in starts])
        t = torch.from_numpy(arr)
        if device.type == "cuda":
            t = t.pin_memory().to(device, non_blocking=True)
        else:
            t = t.to(device)
        return t[:, :-1], t[:, 1:]

    def sequential_batches(self, bsz, device, max_batches):
        """Deterministic non-overlapping windows from the start (for held-out evaluation)."""
        n = (len(self.data) - 1) // self.seq
        idx = 0
        for _ in range(max_batches):
            if idx >= n:
                break
            rows = []
            for _ in range(bsz):
                if idx >= n:
                    break
                s = idx * self.seq
                rows.append(np.asarray(self.data[s:s + self.seq + 1], dtype=np.int64))
                idx += 1
            t = torch.from_numpy(np.stack(rows)).to(device)
            yield t[:, :-1], t[:, 1:]


# ---------------------------------------------------------------------------------------------
# losses and schedules
# ---------------------------------------------------------------------------------------------

def kl_student_teacher(student_logits, teacher_logits, chunk=4096):
    """KL(student || teacher) = sum_v p_s (log p_s - log p_t), mean over tokens (DMS.md section 4)."""
    s = student_logits.reshape(-1, student_logits.shape[-1])
    t = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    total = 0.0
    for i in range(0, s.shape[0], chunk):
        ls = F.log_softmax(s[i:i + chunk].float(), dim=-1)
        lt = F.log_softmax(t[i:i + chunk].float(), dim=-1)
        total = total + (ls.exp() * (ls - lt)).sum()
    return total / s.shape[0]


def dms_target(step, ramp_steps, target_cr):
    """CR rises linearly from 1 to target over ramp_steps; alpha* = 1 - 1/CR."""
    cr = 1.0 + (target_cr - 1.0) * min(1.0, step / max(1, ramp_steps))
    return 1.0 - 1.0 / cr, cr


def hinge_loss(alphas, alpha_star):
    """alphas (B, L, Hkv, T) straight-through decisions; the last position has no key to govern.
    frac_b = mean over layers, heads, positions 1..T-1 (the decisions that apply to keys 0..T-2)."""
    frac = alphas[..., 1:].float().mean(dim=(1, 2, 3))
    return torch.clamp(alpha_star - frac, min=0.0).mean(), frac


def lr_at(step, total, warmup, peak, final_frac=0.1, schedule="cosine"):
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(params_named, lr, wd, betas=(0.9, 0.95), fused=False):
    decay, no_decay = [], []
    for n, p in params_named:
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embed" not in n else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    kw = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **kw)


# ---------------------------------------------------------------------------------------------
# evaluation helpers (used by train.py and evaluate.py)
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def eval_loss(model, stream, device, bsz=8, max_batches=16, dms_mode="off", amp=True):
    """Mean next-token CE on held-out windows; with dms_mode='hard' also the measured compression."""
    model.eval()
    tot, n = 0.0, 0
    kept_final, seen_final, reads_dms, reads_full = 0.0, 0.0, 0.0, 0.0
    frac_sum, frac_n = 0.0, 0
    for x, y in stream.sequential_batches(bsz, device, max_batches):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits, alphas = model(x, dms_mode=dms_mode, return_aux=True)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum")
        tot += loss.item()
        n += y.numel()
        if alphas is not None and dms_mode == "hard":
            c = compression_stats(alphas, model.cfg.dms_window_size)
            kept_final += c["kept_final"]
            seen_final += c["seen_final"]
            reads_dms += c["reads_dms"]
            reads_full += c["reads_full"]
            frac_sum += alphas[..., 1:].float().mean().item()
            frac_n += 1
    out = {"loss": tot / max(1, n), "tokens": n}
    if seen_final:
        out["cr_final"] = seen_final / kept_final  # tokens seen / tokens kept at the end of each window
        out["cr_reads"] = reads_full / reads_dms  # sum over positions of (i+1) / visible keys
        out["alpha_frac"] = frac_sum / frac_n
    model.train()
    return out


def compression_stats(alphas, window):
    """alphas: (B, L, Hkv, T) hard decisions (decision at t governs key t-1).

    kept_final: per (seq, layer, head), keys still held after the last token = those within the
    window of the last query or never marked; reads: visible keys summed over all query positions.
    """
    a = alphas.float()
    B, L, H, T = a.shape
    shifted = torch.zeros_like(a)
    shifted[..., :-1] = a[..., 1:]
    j = torch.arange(T, device=a.device)
    in_win_last = (T - 1 - j) <= window
    kept = ((shifted < 0.5) | in_win_last).float().sum(-1)  # (B,L,H)
    # visible keys for query i: min(i, w)+1 recent ones plus the unmarked keys older than the window
    unmarked = (shifted < 0.5).float()
    cum = torch.cumsum(unmarked, dim=-1)  # cum[k] = unmarked keys 0..k
    i = torch.arange(T, device=a.device)
    older = torch.where(i - window - 1 >= 0, cum[..., (i - window - 1).clamp(min=0)], torch.zeros_like(cum))
    visible = torch.minimum(i, torch.full_like(i, window)).float() + 1 + older
    return {"kept_final": kept.sum().item(), "seen_final": float(B * L * H * T),
            "reads_dms": visible.sum().item(), "reads_full": float(B * L * H) * float((i + 1).sum().item())}


# ---------------------------------------------------------------------------------------------
# distributed
# ---------------------------------------------------------------------------------------------

def setup_distributed(use_fsdp):
    if not use_fsdp:
        return 0, 1, None
    import torch.distributed as dist
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return rank, world, local


def wrap_fsdp(model, mixed_bf16=True, frozen=False):
    """Shard with PyTorch FSDP, one decoder layer per unit (no home-made sharding)."""
    import functools
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, MixedPrecision
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={DecoderLayer})
    mp = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.bfloat16) if mixed_bf16 else None
    dev = torch.cuda.current_device() if torch.cuda.is_available() else None
    # use_orig_params keeps parameter names (needed for the adapter-only filter and weight decay groups)
    return FSDP(model, auto_wrap_policy=policy, mixed_precision=mp, device_id=dev, use_orig_params=True,
                sync_module_states=True)


def full_state_model(wrapped, cfg, rank):
    """Gather a full (unsharded) CPU copy of an FSDP model on rank 0 for export."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, StateDictType, FullStateDictConfig
    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
        sd = wrapped.state_dict()
    if rank != 0:
        return None
    m = CausalLM(copy.deepcopy(cfg))
    if cfg.dms_separate_alpha:
        pass  # the modules already exist because cfg.dms_separate_alpha is set
    m.load_state_dict(sd, strict=False)
    return m


# ---------------------------------------------------------------------------------------------
# pretraining
# ---------------------------------------------------------------------------------------------

def cmd_pretrain(args):
    rank, world, _ = setup_distributed(args.fsdp)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed + rank)
    cfg = ModelConfig.from_dict(json.loads(args.model_config))
    if args.tokenizer:
        tk = os.path.join(args.tokenizer, "tokenizer.json")
        with open(tk) as f:
            vocab = json.load(f)
        nv = len(vocab["model"]["vocab"]) + sum(1 for t in vocab["added_tokens"] if t["content"] not in vocab["model"]["vocab"])
        ids = {t["content"]: t["id"] for t in vocab["added_tokens"]}
        cfg.vocab_size = max(cfg.vocab_size, nv)
        cfg.bos_token_id = ids.get("<|endoftext|>", cfg.bos_token_id)
        cfg.eos_token_id = ids.get("<|im_end|>", cfg.eos_token_id)
        cfg.pad_token_id = ids.get("<|endoftext|>", cfg.pad_token_id)
    cfg.max_position_embeddings = max(cfg.max_position_embeddings, args.seq)
    model = CausalLM(cfg).to(device)
    nparams = model.num_parameters()
    if rank == 0:
        print(f"[pretrain] params {nparams / 1e6:.2f}M config {json.dumps(cfg.to_dict())}", flush=True)
    fwd = model
    if args.fsdp:
        fwd = model = wrap_fsdp(model)
    opt = make_optimizer(list(model.named_parameters()), args.lr, args.wd, fused=device.type == "cuda")
    if args.compile and device.type == "cuda":
        fwd = torch.compile(model)
    train = TokenStream(os.path.join(args.data, "train.bin"), args.seq, seed=args.seed + 17 * rank)
    val_text = TokenStream(os.path.join(args.data, "val_text.bin"), args.seq, seed=0)
    val_synth = TokenStream(os.path.join(args.data, "val_synth.bin"), args.seq, seed=0)
    amp = device.type == "cuda"
    total = args.steps
    t0 = time.time()
    step = 0
    log = []
    tokens = 0
    step_time = None
    compiled_ok = True
    while step < total:
        lr = lr_at(step, total, args.warmup, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = train.batch(args.batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            try:
                logits = fwd(x)
            except Exception as e:  # torch.compile trouble: fall back to eager once
                if fwd is model or not compiled_ok:
                    raise
                print(f"[pretrain] compile failed ({type(e).__name__}: {e}); eager from now on", flush=True)
                compiled_ok = False
                fwd = model
                logits = fwd(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) if not args.fsdp else model.clip_grad_norm_(1.0)
        opt.step()
        step += 1
        tokens += x.numel() * world
        if step == 30 and args.time_budget:
            # fix the schedule length from the measured step time (the first steps include compile time)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_a = time.time()
            for _ in range(10):
                x, y = train.batch(args.batch, device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    l2 = F.cross_entropy(fwd(x).reshape(-1, cfg.vocab_size), y.reshape(-1))
                opt.zero_grad(set_to_none=True)
                l2.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) if not args.fsdp else model.clip_grad_norm_(1.0)
                opt.step()
                step += 1
                tokens += x.numel() * world
            if device.type == "cuda":
                torch.cuda.synchronize()
            step_time = (time.time() - t_a) / 10
            remaining = args.time_budget - (time.time() - t0)
            total = min(args.steps, step + max(10, int(remaining / step_time)))
            if rank == 0:
                print(f"[pretrain] step time {step_time * 1000:.1f} ms, {args.batch * args.seq * world / step_time / 1e6:.2f}M tok/s -> total steps {total}", flush=True)
        if rank == 0 and (step % args.log_every == 0 or step == total):
            rec = {"step": step, "loss": round(loss.item(), 4), "lr": lr, "gnorm": round(float(gn), 3),
                   "tokens": tokens, "elapsed": round(time.time() - t0, 1)}
            if step % args.eval_every == 0 or step == total:
                rec["val_text"] = round(eval_loss(model, val_text, device, max_batches=args.eval_batches)["loss"], 4)
                rec["val_synth"] = round(eval_loss(model, val_synth, device, max_batches=args.eval_batches)["loss"], 4)
            log.append(rec)
            print("[pretrain] " + json.dumps(rec), flush=True)
    if rank == 0:
        export_model = model
        if args.fsdp:
            export_model = full_state_model(model, cfg, rank)
        summary = {"params": nparams, "steps": step, "tokens": tokens, "seconds": round(time.time() - t0, 1),
                   "final": log[-1] if log else None, "step_time_ms": step_time and round(step_time * 1000, 2),
                   "batch": args.batch, "seq": args.seq, "lr": args.lr}
        hf_io.export_hf(export_model, args.out, args.tokenizer, dtype=torch.bfloat16 if args.export_bf16 else torch.float32)
        with open(os.path.join(args.out, "train_log.json"), "w") as f:
            json.dump({"summary": summary, "log": log}, f, indent=1)
        print(f"[pretrain] done {json.dumps(summary)}", flush=True)


# ---------------------------------------------------------------------------------------------
# DMS retrofit
# ---------------------------------------------------------------------------------------------

def cmd_dms(args):
    rank, world, _ = setup_distributed(args.fsdp)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed + rank)
    base = hf_io.import_hf(args.init, dtype=torch.float32)
    teacher = copy.deepcopy(base)  # original model, eviction off, frozen
    teacher.requires_grad_(False)
    teacher.eval()
    student = enable_dms(base, args.window, cr=args.target_cr, separate_alpha=args.separate_alpha or args.adapter_only)
    if args.adapter_only:
        student.requires_grad_(False)
        for p in dms_adapter_parameters(student):
            p.requires_grad_(True)
    student.to(device)
    teacher.to(device)
    if args.teacher_bf16:
        teacher.to(torch.bfloat16)
    if args.gradient_checkpointing:
        student.gradient_checkpointing = True
    cfg = student.cfg
    s_fwd, t_fwd = student, teacher
    if args.fsdp:
        s_fwd = student = wrap_fsdp(student)
        t_fwd = teacher = wrap_fsdp(teacher, frozen=True)
    opt = make_optimizer([(n, p) for n, p in student.named_parameters() if p.requires_grad], args.lr, args.wd,
                         fused=device.type == "cuda")
    train = TokenStream(os.path.join(args.data, "train.bin"), args.seq, seed=args.seed + 1000 + 17 * rank)
    amp = device.type == "cuda"
    t0 = time.time()
    log = []
    total_steps, ramp_steps = args.steps, args.ramp_steps
    if args.ramp_frac:
        ramp_steps = int(args.ramp_frac * total_steps)
    t_probe = None
    step = 0
    while step < total_steps:
        if args.time_budget and step == 5:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_probe = time.time()
        if args.time_budget and step == 15 and t_probe is not None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            st = (time.time() - t_probe) / 10
            fit = 15 + int((args.time_budget - (time.time() - t0)) / st)
            total_steps = min(args.steps, fit)
            if args.ramp_frac:
                ramp_steps = int(args.ramp_frac * total_steps)
            else:
                ramp_steps = min(ramp_steps, int(0.8 * total_steps))
            if rank == 0:
                print(f"[dms] step time {st * 1000:.1f} ms -> {total_steps} steps, CR ramp over {ramp_steps}", flush=True)
        alpha_star, cr = dms_target(step, ramp_steps, args.target_cr)
        lr = lr_at(step, args.steps, args.warmup, args.lr, schedule="constant")
        for g in opt.param_groups:
            g["lr"] = lr
        x, _ = train.batch(args.batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            with torch.no_grad():
                t_logits = t_fwd(x, dms_mode="off")
            s_logits, alphas = s_fwd(x, dms_mode="train", return_aux=True)
            kl = kl_student_teacher(s_logits, t_logits)
            hinge, frac = hinge_loss(alphas, alpha_star)
            loss = kl + args.hinge_weight * hinge
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in student.parameters() if p.requires_grad]
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0) if not args.fsdp else student.clip_grad_norm_(1.0)
        opt.step()
        if rank == 0 and ((step + 1) % args.log_every == 0 or step + 1 == total_steps or step == 0):
            rec = {"step": step + 1, "loss": round(loss.item(), 4), "kl": round(kl.item(), 4), "hinge": round(hinge.item(), 4),
                   "frac": round(frac.mean().item(), 4), "target_frac": round(alpha_star, 4), "target_cr": round(cr, 3),
                   "lr": lr, "gnorm": round(float(gn), 3), "elapsed": round(time.time() - t0, 1)}
            log.append(rec)
            print("[dms] " + json.dumps(rec), flush=True)
        step += 1
        if args.time_budget and time.time() - t0 > args.time_budget * 1.15:
            print(f"[dms] time budget exceeded at step {step}", flush=True)
            break
    if rank == 0:
        export_model = student if not args.fsdp else full_state_model(student, cfg, rank)
        hf_io.export_hf(export_model, args.out, args.tokenizer or args.init,
                        dtype=torch.bfloat16 if args.export_bf16 else torch.float32)
        with open(os.path.join(args.out, "dms_log.json"), "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "func"}, "steps": step, "ramp_steps": ramp_steps,
                       "log": log, "seconds": round(time.time() - t0, 1)}, f, indent=1)
        print(f"[dms] done in {time.time() - t0:.1f}s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("--data", required=True)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--model_config", default="{}")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--time_budget", type=float, default=0.0, help="seconds; sets the step count after a timing probe")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--fsdp", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log_every", type=int, default=50)
    p.add_argument("--eval_every", type=int, default=500)
    p.add_argument("--eval_batches", type=int, default=8)
    p.add_argument("--export_bf16", action="store_true")
    p.set_defaults(func=cmd_pretrain)

    d = sub.add_parser("dms")
    d.add_argument("--init", required=True, help="HF checkpoint directory (Qwen3 / Qwen2 / Llama layout)")
    d.add_argument("--data", required=True)
    d.add_argument("--tokenizer", default=None, help="directory with tokenizer files (default: --init)")
    d.add_argument("--out", required=True)
    d.add_argument("--window", type=int, default=64)
    d.add_argument("--target_cr", type=float, default=6.0)
    d.add_argument("--steps", type=int, default=600)
    d.add_argument("--ramp_steps", type=int, default=450)
    d.add_argument("--ramp_frac", type=float, default=None, help="CR ramp as a fraction of the (time-fitted) steps")
    d.add_argument("--batch", type=int, default=16)
    d.add_argument("--seq", type=int, default=1024)
    d.add_argument("--lr", type=float, default=1e-4)
    d.add_argument("--wd", type=float, default=0.0)
    d.add_argument("--warmup", type=int, default=10)
    d.add_argument("--hinge_weight", type=float, default=1.0)
    d.add_argument("--adapter_only", action="store_true", help="train only the dms_separate_alpha adapter")
    d.add_argument("--separate_alpha", action="store_true", help="use the adapter variant, all weights trained")
    d.add_argument("--teacher_bf16", action="store_true")
    d.add_argument("--gradient_checkpointing", action="store_true")
    d.add_argument("--fsdp", action="store_true")
    d.add_argument("--time_budget", type=float, default=0.0)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--log_every", type=int, default=25)
    d.add_argument("--export_bf16", action="store_true")
    d.set_defaults(func=cmd_dms)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
