"""Held-out evaluation of a checkpoint with and without DMS eviction (PyTorch side).

  python3 retrofit/evaluate.py --model DIR [--model DIR2 ...] --data DATA_DIR --out metrics.json

For each model: next-token loss on held-out English text and held-out synthetic chats, with
eviction off and (for DMS checkpoints) with hard DMS decisions, the measured compression
(tokens seen / tokens kept at the end of a sequence, and full / DMS key reads summed over all
query positions), and per task (teacher forcing on the gold prompt + reasoning chain):
  answer_exact  the whole final answer line is predicted token for token (argmax)
  token_acc     argmax accuracy over the completion tokens
Uses the token ids stored in eval_tasks.jsonl, so no tokenizer library is needed.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_io  # noqa: E402
from train import TokenStream, eval_loss, compression_stats  # noqa: E402


def load_tasks(path, per_task=None, max_len=1024):
    tasks = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if len(r["prompt_ids"]) + len(r["completion_ids"]) > max_len:
                continue
            lst = tasks.setdefault(r["task"], [])
            if per_task is None or len(lst) < per_task:
                lst.append(r)
    return tasks


@torch.no_grad()
def task_metrics(model, records, device, dms_mode, bsz=32, amp=True):
    """Teacher-forced answer accuracy; right-padded batches (causal: padding never affects real positions)."""
    model.eval()
    exact, n_ans, tok_ok, tok_n = 0, 0, 0, 0
    kept, seen = 0.0, 0.0
    for i in range(0, len(records), bsz):
        batch = records[i:i + bsz]
        seqs = [r["prompt_ids"] + r["completion_ids"] for r in batch]
        T = max(len(s) for s in seqs)
        x = torch.zeros(len(seqs), T, dtype=torch.long)
        for b, s in enumerate(seqs):
            x[b, :len(s)] = torch.tensor(s)
        x = x.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits, alphas = model(x, dms_mode=dms_mode, return_aux=True)
        pred = logits.argmax(-1).cpu()
        for b, r in enumerate(batch):
            P, C = len(r["prompt_ids"]), len(r["completion_ids"])
            # token at position t is predicted from logits at t-1
            pc = pred[b, P - 1:P + C - 1].tolist()
            ok = [int(p == g) for p, g in zip(pc, r["completion_ids"])]
            tok_ok += sum(ok)
            tok_n += C
            if r.get("answer_ids"):
                A = len(r["answer_ids"])
                n_ans += 1
                exact += int(all(ok[C - 1 - A:C - 1]))
            if alphas is not None and dms_mode == "hard":
                L = P + C
                c = compression_stats(alphas[b:b + 1, ..., :L], model.cfg.dms_window_size)
                kept += c["kept_final"]
                seen += c["seen_final"]
    out = {"answer_exact": exact / max(1, n_ans), "token_acc": tok_ok / max(1, tok_n), "n": len(records)}
    if seen:
        out["cr_final"] = seen / kept
    return out


def evaluate_model(model, data_dir, device, per_task=200, loss_batches=16, modes=None):
    model.to(device)
    res = {}
    modes = modes or (["off", "hard"] if model.cfg.dms else ["off"])
    tasks = load_tasks(os.path.join(data_dir, "eval_tasks.jsonl"), per_task)
    for mode in modes:
        r = {}
        for name in ("val_text", "val_synth"):
            st = TokenStream(os.path.join(data_dir, name + ".bin"), 1024 if model.cfg.max_position_embeddings >= 1024 else model.cfg.max_position_embeddings)
            r[name] = eval_loss(model, st, device, bsz=8, max_batches=loss_batches, dms_mode=mode)
        r["tasks"] = {t: task_metrics(model, recs, device, mode) for t, recs in tasks.items()}
        res[mode] = r
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per_task", type=int, default=200)
    ap.add_argument("--loss_batches", type=int, default=16)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    allres = {}
    for m in args.model:
        t0 = time.time()
        model = hf_io.import_hf(m, dtype=torch.float32)
        allres[m] = evaluate_model(model, args.data, device, args.per_task, args.loss_batches)
        allres[m]["seconds"] = round(time.time() - t0, 1)
        print(f"[eval] {m}: {json.dumps(allres[m])}", flush=True)
    with open(args.out, "w") as f:
        json.dump(allres, f, indent=1)


if __name__ == "__main__":
    main()
