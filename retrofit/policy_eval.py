"""Full cache vs DMS vs training-free eviction policies at equal KV budgets (PyTorch side).

Every sequence is processed token by token (the prompt too), through an incremental decoder whose
per-(layer, KV head) cache is a set of valid slots; a policy decides which slots stay valid:

  full       keep everything
  dms        the checkpoint's own decisions (DMS.md sections 2-3): at step t the decision alpha_t
             marks key t-1; a marked key j is dropped once t - j > w
  streaming  StreamingLLM: the first 4 tokens (sinks) + the most recent B - 4
  tova       TOVA: after each step, while over budget, drop the key with the lowest attention weight
             from the current query (weights averaged over the g query heads of the KV head's group)
  h2o        H2O: attention accumulated over all queries so far (averaged over the group); keep the
             B/2 most recent tokens and evict the non-recent key with the lowest accumulated score

The baselines run on --base_model (default: the DMS checkpoint with eviction off), DMS on the retrofitted one;
the budget B of a task is set so that a cache capped at B reads, on average over the steps of the
task's gold sequences, as many keys as DMS read per step on that task (equal average KV reads). Greedy
generation; an answer counts when the gold answer line ("The answer is N.") appears in the output.

  python3 retrofit/policy_eval.py --dms_model DIR --base_model DIR --data DATA_DIR --per_task 50 --out res.json
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_io  # noqa: E402
from model import apply_rope, rope_cos_sin  # noqa: E402


class Cache:
    def __init__(self, L, B, Hkv, S, d, device, dtype):
        self.k = torch.zeros(L, B, Hkv, S, d, device=device, dtype=dtype)
        self.v = torch.zeros(L, B, Hkv, S, d, device=device, dtype=dtype)
        self.valid = torch.zeros(L, B, Hkv, S, dtype=torch.bool, device=device)
        self.marked = torch.zeros(L, B, Hkv, S, dtype=torch.bool, device=device)
        self.score = torch.zeros(L, B, Hkv, S, device=device)  # H2O accumulated attention
        self.reads = torch.zeros((), device=device)  # sum over steps, layers, sequences, heads of keys read
        self.steps = 0


@torch.no_grad()
def step(model, cache, ids_t, t, policy, budget, active):
    """Process token ids_t (B,) at position t for every sequence; returns logits (B, V)."""
    cfg = model.cfg
    H, Hkv, d, g = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.group_size
    Bn = ids_t.shape[0]
    x = model.model.embed_tokens(ids_t)[:, None, :]  # (B,1,D)
    cos, sin = rope_cos_sin(torch.tensor([t], device=ids_t.device), d, cfg.rope_theta, x.dtype)
    dms_on = cfg.dms and policy == "dms"
    for li, layer in enumerate(model.model.layers):
        at = layer.self_attn
        h = layer.input_layernorm(x)
        q = at.q_proj(h).view(Bn, 1, H, d)
        k = at.k_proj(h).view(Bn, 1, Hkv, d)
        v = at.v_proj(h).view(Bn, 1, Hkv, d).transpose(1, 2)
        if at.q_norm is not None:
            q, k = at.q_norm(q), at.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B,H,1,d), (B,Hkv,1,d)
        logit = None
        if cfg.dms:
            if cfg.dms_separate_alpha:
                a = at.dms_proj_alpha(at.dms_proj_alpha_norm(x))[:, 0, :]
                logit = a * cfg.dms_alpha_scale - cfg.dms_initial_alpha_offset
            else:
                logit = q[:, ::g, 0, d - 1] * cfg.dms_alpha_scale - cfg.dms_initial_alpha_offset
                q = q.clone()
                q[:, ::g, :, d - 1] = 0
        q = apply_rope(q, cos, sin)
        if cfg.dms and not cfg.dms_separate_alpha:
            q[:, ::g, :, d - 1] = 0
        k = apply_rope(k, cos, sin)
        cache.k[li, :, :, t] = k[:, :, 0]
        cache.v[li, :, :, t] = v[:, :, 0]
        valid = cache.valid[li]
        valid[:, :, t] = True
        if dms_on:
            alpha = logit > 0  # (B,Hkv): decision at t governs key t-1
            if t >= 1:
                cache.marked[li, :, :, t - 1] = alpha
            j = t - cfg.dms_window_size - 1
            if j >= 0:
                valid[:, :, j] &= ~cache.marked[li, :, :, j]
        elif policy == "streaming" and budget is not None:
            j = t - (budget - 4)  # keep sinks 0..3 and the last budget-4 tokens
            if j >= 4:
                valid[:, :, j] = False
        S = t + 1
        K, V, msk = cache.k[li, :, :, :S], cache.v[li, :, :, :S], valid[:, :, :S]
        qg = q.view(Bn, Hkv, g, 1, d)
        sc = torch.matmul(qg, K[:, :, None].transpose(-1, -2)).float() / math.sqrt(d)  # (B,Hkv,g,1,S)
        sc = sc.masked_fill(~msk[:, :, None, None, :], float("-inf"))
        p = torch.softmax(sc, dim=-1)
        o = torch.matmul(p.to(V.dtype), V[:, :, None]).reshape(Bn, H, 1, d)
        cache.reads = cache.reads + (msk.sum(-1).float() * active[:, None]).sum()
        pa = p[:, :, :, 0, :].mean(2)  # (B,Hkv,S) attention averaged over the group
        if policy in ("tova", "h2o") and budget is not None:
            if policy == "h2o":
                cache.score[li, :, :, :S] += pa
            over = msk.sum(-1) > budget  # (B,Hkv); at most one over after each step
            if policy == "tova":
                s = pa.masked_fill(~msk, float("inf"))
                s[:, :, t] = float("inf")  # never the current token
            else:
                s = cache.score[li, :, :, :S].masked_fill(~msk, float("inf"))
                s[:, :, max(0, S - budget // 2):] = float("inf")  # protect the recent half
            victim = s.argmin(-1, keepdim=True)  # (B,Hkv,1)
            cur = valid.gather(-1, victim)
            valid.scatter_(-1, victim, cur & ~over[..., None])  # no host sync
        o = o.transpose(1, 2).reshape(Bn, 1, H * d)
        x = x + at.o_proj(o)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    cache.steps += 1
    x = model.model.norm(x)
    return model.lm_head(x)[:, 0].float()


@torch.no_grad()
def generate(model, records, policy, budget, device, max_new_extra=12, stop_id=2):
    """Greedy generation for a batch of records (prompt fed token by token). Returns (outputs, mean reads)."""
    cfg = model.cfg
    Bn = len(records)
    prompts = [r["prompt_ids"] for r in records]
    max_new = [len(r["completion_ids"]) + max_new_extra for r in records]
    T = max(len(p) + m for p, m in zip(prompts, max_new))
    T = min(T, cfg.max_position_embeddings)
    dt = next(model.parameters()).dtype
    cache = Cache(cfg.num_hidden_layers, Bn, cfg.num_key_value_heads, T, cfg.head_dim, device, dt)
    outs = [[] for _ in range(Bn)]
    done = [False] * Bn
    nxt = [0] * Bn
    head_steps = 0.0
    for t in range(T):
        ids = []
        active = []
        for b in range(Bn):
            P = len(prompts[b])
            if t < P:
                ids.append(prompts[b][t])
            else:
                ids.append(nxt[b])
            active.append(0.0 if done[b] else 1.0)
        if all(done):
            break
        act = torch.tensor(active, device=device)
        logits = step(model, cache, torch.tensor(ids, device=device), t, policy, budget, act)
        head_steps += float(act.sum()) * cfg.num_hidden_layers * cfg.num_key_value_heads
        nxt = logits.argmax(-1).tolist()
        for b in range(Bn):
            P = len(prompts[b])
            if done[b] or t < P - 1:
                continue
            tok = nxt[b]
            outs[b].append(tok)
            if tok == stop_id or len(outs[b]) >= max_new[b] or t + 1 >= T:
                done[b] = True
    return outs, float(cache.reads) / max(1.0, head_steps)


def budget_for_reads(records, target):
    """Smallest cap B whose mean keys read per step (min(t+1, B) over the gold sequence lengths)
    reaches the mean that DMS read: equal average KV reads."""
    lens = [len(r["prompt_ids"]) + len(r["completion_ids"]) for r in records]
    steps = sum(lens)
    for B in range(4, max(lens) + 1):
        reads = sum(sum(min(t + 1, B) for t in range(T)) for T in lens)
        if reads / steps >= target:
            return max(8, B)
    return max(lens)


def contains(seq, sub):
    n = len(sub)
    return any(seq[i:i + n] == sub for i in range(len(seq) - n + 1))


def run(dms_model, base_model, tasks, device, per_task, bsz, policies, dump=None):
    res = {}
    for task, recs in tasks.items():
        recs = [r for r in recs if r.get("answer_ids")][:per_task]
        if not recs:
            continue
        res[task] = {}
        budget = None
        order = ["dms"] + [p for p in policies if p != "dms"]
        for pol in order:
            model = dms_model if pol == "dms" else base_model
            if model is None:
                continue
            t0 = time.time()
            correct, reads_sum, n = 0, 0.0, 0
            for i in range(0, len(recs), bsz):
                batch = recs[i:i + bsz]
                outs, reads = generate(model, batch, pol, budget, device)
                reads_sum += reads * len(batch)
                n += len(batch)
                correct += sum(int(contains(o, r["answer_ids"])) for o, r in zip(outs, batch))
            mean_reads = reads_sum / max(1, n)
            res[task][pol] = {"accuracy": correct / max(1, n), "n": n, "mean_kv_read_per_step": round(mean_reads, 2),
                              "budget": budget, "seconds": round(time.time() - t0, 1)}
            print(f"[policy] {task} {pol}: {json.dumps(res[task][pol])}", flush=True)
            if pol == "dms":
                budget = budget_for_reads(recs, mean_reads)
            if dump:
                dump(res)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dms_model", required=True)
    ap.add_argument("--base_model", default=None, help="model without DMS for the baselines (default: the DMS model with eviction off)")
    ap.add_argument("--data", required=True, help="directory with eval_tasks.jsonl")
    ap.add_argument("--tasks", default="add,mul,vartrack,needle")
    ap.add_argument("--policies", default="dms,full,streaming,tova,h2o")
    ap.add_argument("--per_task", type=int, default=50)
    ap.add_argument("--bsz", type=int, default=50)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dms = hf_io.import_hf(args.dms_model).to(device).eval()
    base = hf_io.import_hf(args.base_model).to(device).eval() if args.base_model else dms
    wanted = set(args.tasks.split(","))
    tasks = {}
    with open(os.path.join(args.data, "eval_tasks.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["task"] in wanted and len(r["prompt_ids"]) + len(r["completion_ids"]) + 12 <= dms.cfg.max_position_embeddings:
                tasks.setdefault(r["task"], []).append(r)
    def dump(res):
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "results": res}, f, indent=1)

    res = run(dms, base, tasks, device, args.per_task, args.bsz, args.policies.split(","), dump)
    dump(res)


if __name__ == "__main__":
    main()
