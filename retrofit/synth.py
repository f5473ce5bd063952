"""Synthetic chat tasks that need reasoning chains or long context, formatted in ChatML.

Each generator takes a ``random.Random`` and returns a dict
  {"task", "prompt" (the user turn), "think" (worked steps, may be ""), "answer" (final answer string)}.
``chatml(example)`` renders the whole conversation; ``chatml_prompt(example)`` renders everything up
to and including ``<|im_start|>assistant\n`` (what a generation prompt looks like).

Tasks
  add      multi-digit addition, column by column with carries
  mul      multi-digit x 1-2 digit multiplication, digit by digit partial products, then a sum
  vartrack variable tracking: chains of assignments x_i = x_j / x_i = N among filler, "what is x_k?"
  needle   a key/value "needle" hidden in long filler text, retrieved by a question at the end
  define   word definitions (from WordNet glosses), lookup    [need corpus records]
  verse    quote a KJV verse by reference                     [need corpus records]
"""

import random

IM_START, IM_END, EOT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def chatml(ex, system=None):
    s = ""
    if system:
        s += f"{IM_START}system\n{system}{IM_END}\n"
    s += f"{IM_START}user\n{ex['prompt']}{IM_END}\n{IM_START}assistant\n"
    s += assistant_text(ex) + f"{IM_END}\n"
    return s


def assistant_text(ex):
    if ex.get("think"):
        return f"{THINK_OPEN}\n{ex['think']}\n{THINK_CLOSE}\n\n{answer_line(ex)}"
    return answer_line(ex)


def answer_line(ex):
    return ex.get("answer_text") or f"The answer is {ex['answer']}."


def chatml_prompt(ex, system=None):
    s = ""
    if system:
        s += f"{IM_START}system\n{system}{IM_END}\n"
    return s + f"{IM_START}user\n{ex['prompt']}{IM_END}\n{IM_START}assistant\n"


def _num(rng, lo_digits, hi_digits):
    nd = rng.randint(lo_digits, hi_digits)
    if nd == 1:
        return rng.randint(0, 9)
    return rng.randint(10 ** (nd - 1), 10 ** nd - 1)


PLACES = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands", "millions",
          "ten-millions", "hundred-millions", "billions"]


def add_steps(a, b):
    da, db = str(a)[::-1], str(b)[::-1]
    n = max(len(da), len(db))
    carry = 0
    lines = [f"{a} + {b}"]
    digits = []
    for i in range(n):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        place = PLACES[i] if i < len(PLACES) else f"10^{i}"
        c_txt = f" + {carry}" if carry else ""
        lines.append(f"{place}: {x} + {y}{c_txt} = {s}, write {s % 10}, carry {s // 10}")
        digits.append(s % 10)
        carry = s // 10
    if carry:
        lines.append(f"final carry: write {carry}")
        digits.append(carry)
    res = int("".join(str(d) for d in digits[::-1]))
    assert res == a + b
    lines.append(f"result: {res}")
    return lines, res


def gen_add(rng):
    a = _num(rng, 2, 7)
    b = _num(rng, 1, 7)
    lines, res = add_steps(a, b)
    q = rng.choice(["What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}.", "{a} + {b} = ?",
                    "What is the sum of {a} and {b}?"]).format(a=a, b=b)
    return {"task": "add", "prompt": q, "think": "\n".join(lines), "answer": str(res)}


def mul1_steps(a, m):
    """a times a single digit m, digit by digit."""
    da = str(a)[::-1]
    carry = 0
    lines = []
    digits = []
    for i, ch in enumerate(da):
        x = int(ch)
        p = x * m + carry
        c_txt = f" + {carry}" if carry else ""
        lines.append(f"  {m} x {x}{c_txt} = {p}, write {p % 10}, carry {p // 10}")
        digits.append(p % 10)
        carry = p // 10
    if carry:
        lines.append(f"  final carry: write {carry}")
        digits.append(carry)
    res = int("".join(str(d) for d in digits[::-1]))
    assert res == a * m
    return lines, res


def gen_mul(rng):
    a = _num(rng, 2, 4)
    b = _num(rng, 1, 2)
    if b < 2:
        b = rng.randint(2, 9)
    lines = [f"{a} x {b}"]
    partials = []
    for i, ch in enumerate(str(b)[::-1]):
        m = int(ch)
        shift = 10 ** i
        lines.append(f"{a} x {m}{' x ' + str(shift) if shift > 1 else ''}:")
        if m == 0:
            lines.append("  0")
            partials.append(0)
            continue
        sl, r = mul1_steps(a, m)
        lines += sl
        lines.append(f"  = {r}{' then x ' + str(shift) + ' = ' + str(r * shift) if shift > 1 else ''}")
        partials.append(r * shift)
    total = partials[0]
    for p in partials[1:]:
        al, total2 = add_steps(total, p)
        lines += al[:-1]
        lines.append(f"sum: {total2}")
        total = total2
    assert total == a * b
    lines.append(f"result: {total}")
    q = rng.choice(["What is {a} x {b}?", "Compute {a} * {b}.", "Multiply {a} by {b}.", "{a} x {b} = ?",
                    "What is the product of {a} and {b}?"]).format(a=a, b=b)
    return {"task": "mul", "prompt": q, "think": "\n".join(lines), "answer": str(total)}


def gen_vartrack(rng, filler=None, n_vars=None, n_filler=None):
    """Variables x1..xn; each either a constant or a copy of an earlier variable. Query one with a chain."""
    n = n_vars or rng.randint(6, 16)
    names = rng.sample(["x", "y", "z", "v", "w", "a", "b", "k", "m", "q"], 1)[0]
    var = [f"{names}{i + 1}" for i in range(n)]
    src = {}
    val = {}
    for i in range(n):
        if i == 0 or rng.random() < 0.35:
            c = rng.randint(0, 999)
            src[var[i]] = None
            val[var[i]] = c
        else:
            j = rng.randrange(i)
            src[var[i]] = var[j]
            val[var[i]] = val[var[j]]
    stmts = [f"{v} = {val[v]}." if src[v] is None else f"{v} = {src[v]}." for v in var]
    # choose a target with a chain of length >= 2 if possible
    cands = [v for v in var if src[v] is not None]
    target = rng.choice(cands) if cands else var[-1]
    chain = [target]
    while src[chain[-1]] is not None:
        chain.append(src[chain[-1]])
    pieces = []
    nf = n_filler if n_filler is not None else rng.randint(0, 12)
    fill = list(filler or [])
    for s in stmts:
        pieces.append(s)
        if fill and nf > 0 and rng.random() < 0.6:
            for _ in range(rng.randint(1, 2)):
                pieces.append(rng.choice(fill))
    text = " ".join(pieces)
    q = f"Read the text and track the variables.\n{text}\nWhat is the value of {target}?"
    think = []
    for a, b in zip(chain, chain[1:]):
        think.append(f"{a} = {b}")
    think.append(f"{chain[-1]} = {val[chain[-1]]}")
    think.append(f"so {target} = {val[target]}")
    return {"task": "vartrack", "prompt": q, "think": "\n".join(think), "answer": str(val[target])}


NEEDLE_KINDS = [
    ("The secret code is {v}.", "What is the secret code?"),
    ("The magic number for {name} is {v}.", "What is the magic number for {name}?"),
    ("Remember this: the vault combination is {v}.", "What is the vault combination?"),
    ("{name}'s locker number is {v}.", "What is {name}'s locker number?"),
]
NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Kate", "Liam",
         "Mona", "Nick", "Olga", "Paul", "Rosa", "Sam", "Tara", "Victor"]


def gen_needle(rng, filler, n_sent=None):
    n = n_sent if n_sent is not None else rng.randint(8, 40)
    sents = [rng.choice(filler) for _ in range(n)]
    kind = rng.choice(NEEDLE_KINDS)
    name = rng.choice(NAMES)
    v = str(rng.randint(1000, 99999))
    needle = kind[0].format(v=v, name=name)
    pos = rng.randint(0, n)
    sents.insert(pos, needle)
    q = "Read the text.\n" + " ".join(sents) + "\n" + kind[1].format(name=name)
    think = f"The text says: {needle}"
    return {"task": "needle", "prompt": q, "think": think, "answer": v}


def gen_define(rng, defs):
    word, gloss = rng.choice(defs)
    q = rng.choice(["What does \"{w}\" mean?", "Define the word {w}.", "What is the meaning of {w}?"]).format(w=word)
    return {"task": "define", "prompt": q, "think": "", "answer": gloss,
            "answer_text": f"{word[0].upper() + word[1:]}: {gloss}."}


def gen_verse(rng, verses):
    ref, text = rng.choice(verses)
    q = rng.choice(["Quote {r} from the King James Bible.", "What does {r} say?", "Recite {r}."]).format(r=ref)
    return {"task": "verse", "prompt": q, "think": "", "answer": text, "answer_text": text}


def gen_example(rng, task, filler=None, defs=None, verses=None):
    if task == "add":
        return gen_add(rng)
    if task == "mul":
        return gen_mul(rng)
    if task == "vartrack":
        return gen_vartrack(rng, filler)
    if task == "needle":
        return gen_needle(rng, filler)
    if task == "define":
        return gen_define(rng, defs)
    if task == "verse":
        return gen_verse(rng, verses)
    raise ValueError(task)
