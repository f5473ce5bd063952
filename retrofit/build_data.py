"""Tokenize the corpus and generated synthetic chats into flat uint16 token streams.

Inputs: the prep_corpus.py outputs and a trained tokenizer.json.
Outputs (in --out):
  train.bin / val_text.bin / val_synth.bin   uint16 token streams, documents joined by <|endoftext|>
  eval_tasks.jsonl                             held-out task examples (own seed) for accuracy checks
  data_stats.json                              token counts per source / task

  python3 retrofit/build_data.py --data .train --tokenizer DIR --out DIR [--scale 1.0]
"""

import argparse
import gzip
import json
import multiprocessing as mp
import os
import random
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402

# examples per task at --scale 1 (train); eval uses EVAL_N per task with a disjoint seed
TASK_MIX = {"add": 120000, "mul": 90000, "vartrack": 60000, "needle": 40000, "define": 50000, "verse": 25000}
TEXT_REPEAT = 2  # English text is small next to the synthetic tasks: show it twice per epoch
EVAL_N = 200
EVAL_SEED = 987654321

_G = {}


def _init(filler, defs, verses):
    _G["filler"], _G["defs"], _G["verses"] = filler, defs, verses


def _gen_chunk(args):
    task, seed, n = args
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ex = synth.gen_example(rng, task, _G["filler"], _G["defs"], _G["verses"])
        out.append(synth.chatml(ex))
    return out


def load_records(data_dir):
    corpus = [json.loads(l) for l in gzip.open(os.path.join(data_dir, "corpus.jsonl.gz"), "rt", encoding="utf-8")]
    defs = [json.loads(l) for l in gzip.open(os.path.join(data_dir, "defs.jsonl.gz"), "rt", encoding="utf-8")]
    verses = [json.loads(l) for l in gzip.open(os.path.join(data_dir, "verses.jsonl.gz"), "rt", encoding="utf-8")]
    return corpus, defs, verses


def filler_sentences(corpus, split):
    out = []
    for d in corpus:
        if d["src"] in ("brown", "sotu") and d["split"] == split:
            for s in re.split(r"(?<=[.!?])\s+", d["text"].replace("\n", " ")):
                if 30 <= len(s) <= 200 and not re.search(r"\d{3,}", s):
                    out.append(s.strip())
    return out


def encode_docs(tok, docs, eot_id, batch=2000):
    parts = []
    eot = np.asarray([eot_id], dtype=np.uint16)
    for i in range(0, len(docs), batch):
        for e in tok.encode_batch(docs[i:i + batch]):
            parts.append(np.asarray(e.ids, dtype=np.uint16))
            parts.append(eot)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


def main():
    from tokenizers import Tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".train")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    tok = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    assert tok.get_vocab_size() <= 65535
    eot = tok.token_to_id("<|endoftext|>")
    corpus, defs, verses = load_records(args.data)
    stats = {"text": {}, "synth": {}}

    # ---- synthetic train data
    fill_tr = filler_sentences(corpus, "train")
    defs_tr = [(d["word"], d["gloss"]) for d in defs if d["split"] == "train"]
    verses_tr = [(v["ref"], v["text"]) for v in verses if v["split"] == "train"]
    jobs = []
    for ti, (task, n) in enumerate(TASK_MIX.items()):
        n = int(n * args.scale)
        per = 2000
        for k in range(0, n, per):
            jobs.append((task, args.seed * 1000003 + ti * 100019 + k, min(per, n - k)))
    with mp.Pool(args.workers, initializer=_init, initargs=(fill_tr, defs_tr, verses_tr)) as pool:
        chunks = pool.map(_gen_chunk, jobs)
    synth_docs = {}
    for (task, _, _), ch in zip(jobs, chunks):
        synth_docs.setdefault(task, []).extend(ch)
    print(f"[data] generated synthetic in {time.time() - t0:.1f}s", flush=True)

    # ---- train stream: text docs (repeated) + synthetic, shuffled at document level
    text_tr = [d["text"] for d in corpus if d["split"] == "train"]
    all_docs = list(text_tr)
    for task, docs in synth_docs.items():
        all_docs.extend(docs)
    arrays = []
    eot_arr = np.asarray([eot], dtype=np.uint16)
    for i in range(0, len(all_docs), 4000):
        arrays.extend(np.asarray(e.ids, dtype=np.uint16) for e in tok.encode_batch(all_docs[i:i + 4000]))
    order = list(range(len(text_tr))) * (TEXT_REPEAT - 1) + list(range(len(all_docs)))
    rng = random.Random(args.seed)
    rng.shuffle(order)
    parts = []
    for k in order:
        parts.append(arrays[k])
        parts.append(eot_arr)
    train = np.concatenate(parts)
    train.tofile(os.path.join(args.out, "train.bin"))
    del parts, arrays
    # token counts per source (from a sample to stay cheap)
    for src in sorted({d["src"] for d in corpus}):
        docs = [d["text"] for d in corpus if d["src"] == src and d["split"] == "train"]
        stats["text"][src] = int(sum(len(e.ids) for e in tok.encode_batch(docs)))
    for task, docs in synth_docs.items():
        sample = docs[:2000]
        avg = sum(len(e.ids) for e in tok.encode_batch(sample)) / max(1, len(sample))
        stats["synth"][task] = {"examples": len(docs), "avg_tokens": round(avg, 1), "tokens_est": int(avg * len(docs))}
    stats["train_tokens"] = int(train.size)
    print(f"[data] train tokens {train.size / 1e6:.1f}M in {time.time() - t0:.1f}s", flush=True)

    # ---- held-out: text val docs, synthetic val stream and eval tasks (disjoint seeds and records)
    text_va = [d["text"] for d in corpus if d["split"] == "val"]
    val_text = encode_docs(tok, text_va, eot)
    val_text.tofile(os.path.join(args.out, "val_text.bin"))
    fill_va = filler_sentences(corpus, "val")
    defs_va = [(d["word"], d["gloss"]) for d in defs if d["split"] == "val"]
    verses_va = [(v["ref"], v["text"]) for v in verses if v["split"] == "val"]
    erng = random.Random(EVAL_SEED)
    vdocs = []
    with open(os.path.join(args.out, "eval_tasks.jsonl"), "w") as f:
        for task in ("add", "mul", "vartrack", "needle", "define", "verse"):
            for i in range(EVAL_N):
                ex = synth.gen_example(erng, task, fill_va, defs_va, verses_va)
                vdocs.append(synth.chatml(ex))
                prompt = synth.chatml_prompt(ex)
                completion = synth.assistant_text(ex) + synth.IM_END
                p_ids = tok.encode(prompt).ids
                c_ids = tok.encode(completion).ids
                a_ids = tok.encode(synth.answer_line(ex)).ids
                ok = c_ids[-len(a_ids) - 1:-1] == a_ids
                rec = {"task": task, "prompt": prompt, "completion": completion, "answer": ex["answer"],
                       "prompt_ids": p_ids, "completion_ids": c_ids, "answer_ids": a_ids if ok else None}
                f.write(json.dumps(rec) + "\n")
    val_synth = encode_docs(tok, vdocs, eot)
    val_synth.tofile(os.path.join(args.out, "val_synth.bin"))
    stats["val_text_tokens"] = int(val_text.size)
    stats["val_synth_tokens"] = int(val_synth.size)
    with open(os.path.join(args.out, "data_stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    print(f"[data] done in {time.time() - t0:.1f}s: {json.dumps(stats)}", flush=True)


if __name__ == "__main__":
    main()
