"""pith's evaluation metrics against the implementations people cite.

References:
  - SQuAD v1.1 EM/F1: the official evaluate-v1.1.py logic (normalize_answer, f1_score,
    exact_match_score, metric_max_over_ground_truths, 100 * mean), re-implemented in squad_v11.py from the
    script's rules.
  - the raw (un-normalised, 500xCompressor-style) EM/F1 as pith defines it: strip() equality, and
    the same multiset F1 over str.split() tokens.
  - ROUGE: rouge_score.rouge_scorer.RougeScorer(['rouge1', 'rouge2', 'rougeL'],
    use_stemmer=False), F-measures; score(target=ref, prediction=pred).
  - BLEU: sacrebleu.corpus_bleu(preds, [refs]) and sacrebleu.sentence_bleu(pred, [ref]) with
    their defaults (tokenize='13a', smooth_method='exp', lowercase=False, 4-grams; sentence BLEU
    with use_effective_order=True).

Pairs: sentences of $PITH_ASSETS/data/tinystories/tinystories_val_head.txt (a built-in handful
when the asset is missing, said so), perturbed with a fixed seed: words dropped, swapped,
duplicated, case changed, punctuation added/removed, articles inserted, Unicode quotes, accents,
non-breaking spaces, numbers with '.', ',' and '-', HTML entities; plus hand-picked edge cases.

usage: metrics_parity.py METRICS_TOOL
Exit 0 when every number agrees to 1e-6 (absolute, on the scale each library reports), 1 on a
mismatch (the first printed), 77 when rouge-score or sacrebleu is missing.
"""
import json
import os
import random
import re
import string
import sys

import harness
from squad_v11 import exact_match_score, f1_score, metric_max_over_ground_truths, raw_em, raw_f1

rouge_scorer, sacrebleu = harness.require("rouge_score.rouge_scorer", "sacrebleu")

TOL = 1e-6


# ---- pairs ----
FALLBACK = [
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside in the sunshine with her dog, Max.",
    "One day, they found a big red ball in the park.",
    "\"Wow, look at that!\" said Lily. Max barked happily.",
    "They played until the sun went down, and then they went home.",
]


def load_sentences():
    path = harness.asset(os.path.join("data", "tinystories", "tinystories_val_head.txt"), required=False)
    if not path:
        print(f"note: {os.path.join(harness.assets_dir(), 'data', 'tinystories', 'tinystories_val_head.txt')} "
              f"not found; using {len(FALLBACK)} built-in sentences")
        return FALLBACK
    text = open(path, encoding="utf-8").read()
    sents = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 3]
    return sents


EXTRA_WORDS = ["the", "a", "an", "The", "A", "An", "3.14", "1,000", "2-3", "&amp;", "&lt;b&gt;",
               "café", "ÉCOLE", "naïve", "“quoted”", "don’t", "it's", "U.S.A.", "—", "x_y",
               "ΟΔΟΣ", "İstanbul", "(yes)", "e-mail", "...", "Mr.", "$5", "50%", "C++", "#1",
               "ƁIG", "МОСКВА", "東京。", "ǅemal", "½", "٣", "Straße", "\u212aelvin", "ΑΣ'"]
PUNCT = [".", ",", "!", "?", ";", ":", "'", "\"", "’", "“", "”", "-", "...", ")"]


def perturb(words, rng):
    w = list(words)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        if not w:
            w.append(rng.choice(EXTRA_WORDS))
            continue
        i = rng.randrange(len(w))
        if op == 0:
            del w[i]
        elif op == 1 and len(w) > 1:
            j = min(i + 1, len(w) - 1)
            w[i], w[j] = w[j], w[i]
        elif op == 2:
            w[i] = w[i].upper() if rng.random() < 0.5 else w[i].lower()
        elif op == 3:
            w[i] = w[i].strip(string.punctuation + "“”’")
        elif op == 4:
            w[i] = w[i] + rng.choice(PUNCT)
        elif op == 5:
            w.insert(i, rng.choice(["the", "a", "an", "The", "A"]))
        elif op == 6:
            w.insert(i, rng.choice(EXTRA_WORDS))
        elif op == 7:
            w.insert(i, w[i])
        elif op == 8:
            w[i] = rng.choice(PUNCT) + w[i]
        else:
            w[i] = w[i].capitalize()
    seps = [" "] * max(len(w) - 1, 0)
    for k in range(len(seps)):
        r = rng.random()
        if r < 0.05:
            seps[k] = "  "
        elif r < 0.08:
            seps[k] = "\u00a0"
        elif r < 0.10:
            seps[k] = "\t"
    out = w[0] if w else ""
    for s, x in zip(seps, w[1:]):
        out += s + x
    if rng.random() < 0.1:
        out = " " + out + rng.choice([" ", "\n", "  "])
    return out


def make_pairs(sents, rng, n_qa=400, n_gen=400):
    qa, gen = [], []
    edge_qa = [("", ["Paris"]), ("the", ["Paris"]), ("a", ["an"]), ("", [""]),
               ("The Eiffel Tower", ["eiffel tower", "Tower"]), ("“Paris”", ["Paris"]),
               ("don’t", ["dont"]), ("the-end", ["end"]), ("ÉCOLE", ["école"]),
               ("ΟΔΟΣ", ["οδος"]), ("New\u00a0York", ["new york"]), ("café the", ["café"]),
               ("1,000 people", ["1000"]), ("the—end", ["end"]), (" Paris\n", ["Paris"])]
    qa.extend(edge_qa)
    for _ in range(n_qa):
        words = rng.choice(sents).split()
        golds = []
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(words))
            j = min(len(words), i + rng.randint(1, 5))
            g = " ".join(words[i:j])
            if rng.random() < 0.3:
                g = perturb(g.split(), rng)
            golds.append(g)
        base = rng.choice(golds).split()
        pred = perturb(base, rng) if rng.random() < 0.7 else " ".join(base)
        if rng.random() < 0.1:
            pred = " ".join(rng.choice(sents).split()[:rng.randint(0, 6)])
        qa.append((pred, golds))
    edge_gen = [("", "the cat"), ("the cat", ""), ("", ""), ("the cat", "the cat"),
                ("Hello, world.", "Hello , world ."), ("3.14, 2-3 &amp;lt;x", "3.14 , 2 - 3 < x"),
                ("a<skipped>b line-\nbreak", "ab linebreak"), ("İstanbul K", "i stanbul k")]
    gen.extend(edge_gen)
    for _ in range(n_gen):
        k = rng.randint(1, 3)
        i = rng.randrange(len(sents))
        ref = " ".join(sents[i:i + k])
        pred = perturb(ref.split(), rng) if rng.random() < 0.85 else ref
        gen.append((pred, ref))
    return qa, gen


def main():
    tool = harness.tool_arg("metrics_tool")
    rng = random.Random(1234)
    qa, gen = make_pairs(load_sentences(), rng)
    lines = [json.dumps({"pred": p, "golds": g}, ensure_ascii=False) for p, g in qa]
    lines += [json.dumps({"pred": p, "ref": r}, ensure_ascii=False) for p, r in gen]
    proc = harness.run([tool], stdin="\n".join(lines) + "\n", text=True, encoding="utf-8")
    out = [json.loads(x) for x in proc.stdout.splitlines()]
    if len(out) != len(lines) + 1:
        harness.fail(f"metrics_tool printed {len(out)} lines, want {len(lines) + 1}")

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    failures = []

    def cmp(what, got, want, ctx):
        if abs(float(got) - float(want)) > TOL:
            failures.append(f"{what}: pith {got!r}, reference {want!r}; {ctx}")

    em_sum = f1_sum = 0.0
    for k, (p, g) in enumerate(qa):
        o = out[k]
        ctx = f"pred={p!r} golds={g!r}"
        em = metric_max_over_ground_truths(exact_match_score, p, g)
        f1 = metric_max_over_ground_truths(f1_score, p, g)
        em_sum += em
        f1_sum += f1
        cmp("squad EM", o["squad_em"], em, ctx)
        cmp("squad F1", o["squad_f1"], f1, ctx)
        cmp("raw EM", o["raw_em"], metric_max_over_ground_truths(raw_em, p, g), ctx)
        cmp("raw F1", o["raw_f1"], metric_max_over_ground_truths(raw_f1, p, g), ctx)
    for k, (p, r) in enumerate(gen):
        o = out[len(qa) + k]
        ctx = f"pred={p!r} ref={r!r}"
        s = scorer.score(r, p)
        cmp("rouge1 F", o["rouge1"], s["rouge1"].fmeasure, ctx)
        cmp("rouge2 F", o["rouge2"], s["rouge2"].fmeasure, ctx)
        cmp("rougeL F", o["rougeL"], s["rougeL"].fmeasure, ctx)
        cmp("sentence_bleu", o["sentence_bleu"], sacrebleu.sentence_bleu(p, [r]).score, ctx)
        cmp("exact", o["exact"], int(p == r), ctx)
    last = out[-1]
    cmp("dataset EM", last["squad_em"], 100.0 * em_sum / len(qa), "all QA pairs")
    cmp("dataset F1", last["squad_f1"], 100.0 * f1_sum / len(qa), "all QA pairs")
    corpus = sacrebleu.corpus_bleu([p for p, _ in gen], [[r for _, r in gen]])
    cmp("corpus_bleu", last["corpus_bleu"], corpus.score, "all generation pairs")
    # corpus BLEU on a few slices too, so the n-gram statistics are compared more than once
    for lo, hi in [(0, 8), (8, 40), (40, 200)]:
        sub = gen[lo:hi]
        sub_lines = [json.dumps({"pred": p, "ref": r}, ensure_ascii=False) for p, r in sub]
        res = harness.run([tool], stdin="\n".join(sub_lines) + "\n", text=True, encoding="utf-8")
        got = json.loads(res.stdout.splitlines()[-1])["corpus_bleu"]
        want = sacrebleu.corpus_bleu([p for p, _ in sub], [[r for _, r in sub]]).score
        cmp(f"corpus_bleu[{lo}:{hi}]", got, want, "slice")

    n_checks = 4 * len(qa) + 5 * len(gen) + 6
    print(f"metrics_parity: {len(qa)} QA pairs, {len(gen)} generation pairs, {n_checks} numbers; "
          f"rouge-score use_stemmer=False, sacrebleu {sacrebleu.__version__} defaults "
          f"(13a, exp, 4-gram); corpus BLEU {corpus.score:.4f} vs pith {last['corpus_bleu']:.4f}; "
          f"{len(failures)} mismatches")
    if failures:
        print(f"MISMATCH: {failures[0]}")
        for f in failures[1:5]:
            print(f"  also: {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
