"""Train a byte-level BPE tokenizer with the Hugging Face `tokenizers` library.

Digits are split one per token (a Digits pre-tokenizer before ByteLevel) so that arithmetic
chains see individual digits. Special tokens get the first ids:
  0 <|endoftext|>  1 <|im_start|>  2 <|im_end|>  3 <think>  4 </think>
Writes tokenizer.json, tokenizer_config.json (ChatML chat template) and special_tokens_map.json.

  python3 retrofit/tokenizer_train.py --corpus .train/corpus.jsonl.gz --vocab 8192 --out DIR
"""

import argparse
import gzip
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def training_texts(corpus_path, n_synth=20000, seed=1234):
    with gzip.open(corpus_path, "rt", encoding="utf-8") as f:
        for line in f:
            j = json.loads(line)
            if j["split"] == "train":
                yield j["text"]
    rng = random.Random(seed)
    for i in range(n_synth):
        task = ("add", "mul", "vartrack")[i % 3]
        yield synth.chatml(synth.gen_example(rng, task, filler=["The sky is blue."]))


def write_tokenizer_config(out, model_max_length=1024):
    added = {}
    for i, t in enumerate(SPECIALS):
        added[str(i)] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                         "single_word": False, "special": t not in ("<think>", "</think>")}
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "split_special_tokens": False,
        "errors": "replace",
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, f, indent=2)


def main():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=".train/corpus.jsonl.gz")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model_max_length", type=int, default=1024)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab, min_frequency=2, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_texts(args.corpus), trainer=trainer)
    path = os.path.join(args.out, "tokenizer.json")
    tok.save(path)
    # <think> / </think> stay added tokens (never split) but are not 'special': they are shown on
    # decode, as in Qwen3's tokenizer
    with open(path) as f:
        tj = json.load(f)
    for t in tj["added_tokens"]:
        if t["content"] in ("<think>", "</think>"):
            t["special"] = False
    with open(path, "w") as f:
        json.dump(tj, f, ensure_ascii=False)
    tok = Tokenizer.from_file(path)
    for i, t in enumerate(SPECIALS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    write_tokenizer_config(args.out, args.model_max_length)
    sample = "<|im_start|>user\nWhat is 123 + 45?<|im_end|>\n<|im_start|>assistant\n<think>\nones: 3 + 5 = 8\n</think>\n\nThe answer is 168.<|im_end|>\n"
    enc = tok.encode(sample)
    assert tok.decode(enc.ids, skip_special_tokens=False) == sample, tok.decode(enc.ids, skip_special_tokens=False)
    print(f"tokenizer: vocab {tok.get_vocab_size()}, sample {len(enc.ids)} tokens: {enc.tokens[:40]}")


if __name__ == "__main__":
    main()
