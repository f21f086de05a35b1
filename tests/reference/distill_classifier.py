#!/usr/bin/env python3
"""`pith distill` method classifier (LLMLingua-2's keep/drop token classifier) on tiny inputs:
stories260K converted by `pith convert` is the target, the classifier a random BERT whose WordPiece
vocabulary is counted from the TinyStories texts themselves (HF `tokenizers`, saved by
transformers' BertTokenizerFast).

- target-derived labels: RUN/labels.jsonl of a run equals, text by text, what `pith compress
  --method llmlingua --trace` gives with stories260K on the same texts and settings, mapped onto
  words here (the kept mask over its scorer ids, the ids' character offsets from HF `tokenizers`,
  a word kept when a kept token overlaps it);
- label_file: hand-worked pairs align as worked out below (RUN/labels.jsonl), and a classifier
  trains on them;
- a few training steps, then an interrupted-and-resumed run logs exactly the losses and held-out
  metrics of an uninterrupted one (CPU, bit-exact); RUN/model loads with transformers'
  AutoModelForTokenClassification and gives pith's predictions on held-out rows;
- bad inputs fail with one line naming the file and leave no run folder: a label file that does not
  align (and the same pair skipped with label_skip_unaligned), a classifier folder that is not an
  encoder, a tokenizer that does not fit the classifier's vocabulary, neither labels nor target.

Run by ctest with PITH_BIN and PITH_ASSETS.
"""
import collections
import json
import os
import shutil
import sys
import tempfile

import harness

run = harness.pith

def words(text):
    """The words as data/word_align.h defines them: runs of non-space, non-ASCII-punctuation bytes,
    each ASCII punctuation character alone. (start, end) byte offsets."""
    b = text.encode()
    out, i = [], 0
    punct = set(range(33, 48)) | set(range(58, 65)) | set(range(91, 97)) | set(range(123, 127))
    space = {32, 9, 10, 11, 12, 13}
    while i < len(b):
        if b[i] in space:
            i += 1
            continue
        j = i + 1
        if b[i] not in punct:
            while j < len(b) and b[j] not in space and b[j] not in punct:
                j += 1
        out.append((i, j))
        i = j
    return out


def make_bert(texts, out):
    """A cased WordPiece tokenizer (BERT's normalizer and pre-tokenizer) whose vocabulary is the
    specials, every character (alone and as ##x) and the most frequent words and pieces of texts."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    transformers = harness.require("transformers")
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False)
    pre = pre_tokenizers.BertPreTokenizer()
    counts, pieces = collections.Counter(), collections.Counter()
    for t in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    for w, n in counts.items():
        for i in range(1, len(w)):
            for j in range(i + 2, min(len(w), i + 5) + 1):
                pieces["##" + w[i:j]] += n
    top = lambda c, k: sorted(c, key=lambda x: (-c[x], x))[:k]
    chars = sorted({c for w in counts for c in w})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    order = list(dict.fromkeys(specials + chars + ["##" + c for c in chars] + top(counts, 1500) + top(pieces, 500)))
    tok = Tokenizer(models.WordPiece({k: i for i, k in enumerate(order)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer, tok.pre_tokenizer = norm, pre
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(specials)
    transformers.BertTokenizerFast(tokenizer_object=tok, do_lower_case=False).save_pretrained(out)
    return len(order)


def make_config(path, vocab, dim=64, layers=2):
    """A BertForTokenClassification config.json (random weights come from pith)."""
    transformers = harness.require("transformers")
    cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=dim, num_hidden_layers=layers, num_attention_heads=2,
                                  intermediate_size=2 * dim, max_position_embeddings=256, num_labels=2,
                                  architectures=["BertForTokenClassification"])
    cfg.to_json_file(path)


def inputs(tmp, dim=64, layers=2):
    """(stories260K folder, TinyStories corpus, BERT tokenizer folder, its config.json)."""
    target, corpus = harness.stories_run_inputs(tmp)
    with open(harness.asset("data/tinystories/tinystories_val_head.txt")) as f:
        texts = [t for t in f.read().split("\n\n") if t.strip()]
    tok = os.path.join(tmp, "bert_tok")
    vocab = make_bert(texts, tok)
    cfg = os.path.join(tmp, "bert_config.json")
    make_config(cfg, vocab, dim, layers)
    return target, corpus, tok, cfg


def world_inputs(tmp, world, dim=64, layers=2):
    """A demo world's (pith data synth) classifier inputs: the BERT tokenizer counted from the
    abstracts of WORLD/docs.jsonl, and a config.json of the given width and depth."""
    with open(os.path.join(world, "docs.jsonl")) as f:
        texts = [json.loads(line)["abstract"] for line in f if line.strip()]
    tok = os.path.join(tmp, "bert_tok")
    vocab = make_bert(texts, tok)
    cfg = os.path.join(tmp, "bert_config.json")
    make_config(cfg, vocab, dim, layers)
    return tok, cfg


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def labels(run_dir):
    with open(os.path.join(run_dir, "labels.jsonl")) as f:
        return [json.loads(line) for line in f]


def check_target_labels(common, target, tmp, name="target_labels", n_texts=12):
    """RUN/labels.jsonl against pith compress --method llmlingua --trace on the same texts."""
    tokenizers = harness.require("tokenizers")
    out = os.path.join(tmp, name)
    run("distill", *common, "max_steps=1", f"output_dir={out}")
    got = labels(out)
    harness.check(len(got) == n_texts, f"{len(got)} labeled texts, wanted {n_texts}")
    inp = os.path.join(tmp, name + "_texts.jsonl")
    with open(inp, "w") as f:
        for g in got:
            f.write(json.dumps({"context": g["original"]}) + "\n")
    p = run("compress", "--method", "llmlingua", "--scorer", target, "--rate", "0.5", "--iterative-size", "16",
            "--trace", "--threads", "1", "--quiet", "--input", inp)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    hf = tokenizers.Tokenizer.from_file(os.path.join(target, "tokenizer.json"))
    n_words = n_kept = 0
    for i, (g, c) in enumerate(zip(got, lines)):
        text = g["original"]
        enc = hf.encode(text, add_special_tokens=False)
        harness.check(enc.ids == c["scorer_ids"], f"text {i}: HF ids differ from pith compress's scorer ids")
        spans = [(len(text[:a].encode()), len(text[:b].encode())) for a, b in enc.offsets]
        kept = [sp for sp, k in zip(spans, c["kept"]) if k == "1"]
        want = "".join("1" if any(a < we and ws < b for a, b in kept) else "0" for ws, we in words(text))
        harness.check(g["keep"] == want, f"text {i}: labels {g['keep']} but pith compress gives {want}")
        n_words += len(want)
        n_kept += want.count("1")
    harness.check(0 < n_kept < n_words, f"degenerate labels: {n_kept} of {n_words} words kept")
    print(f"{name}: {len(got)} texts, {n_words} words ({n_kept} kept) equal pith compress --method llmlingua's")


def check_byte_level_target(cls_args, tmp):
    """Target labels from a byte-level BPE target whose decoder keeps the space add_prefix_space put
    in front (the demo world's tokenizer, `pith data synth`; a random LLaMA over it)."""
    torch, transformers = harness.require("torch", "transformers")
    world = os.path.join(tmp, "world")
    run("data", "synth", "--dir", world, "--docs", "40", "--threads", "1", "--quiet")
    tok_dir = os.path.join(world, "tokenizer")
    n_vocab = len(transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json")))
    target = os.path.join(tmp, "bytelevel_target")
    torch.manual_seed(5)
    cfg = transformers.LlamaConfig(vocab_size=n_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                                   initializer_range=0.3)
    transformers.LlamaForCausalLM(cfg).save_pretrained(target)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, f), target)
    common = cls_args + [f"target_model_name_or_path={target}", f"train_file={os.path.join(world, 'docs.h5')}",
                         "label_num_texts=8", "label_iterative_size=16", "label_rate=0.5", "val_size=0.25",
                         "per_device_train_batch_size=2"]
    check_target_labels(common, target, tmp, "bytelevel_labels", 8)


def check_keep_labels(common, trained, tmp):
    """label_file of {"original", "keep"} lines (a run's RUN/labels.jsonl) gives those labels back as
    they are; a keep string of the wrong length, or not of 0 and 1, is refused naming FILE:LINE."""
    src = os.path.join(trained, "labels.jsonl")
    out = os.path.join(tmp, "from_keep")
    run("distill", *common, f"label_file={src}", "max_steps=1", f"output_dir={out}")
    with open(src) as a, open(os.path.join(out, "labels.jsonl")) as b:
        harness.check(a.read() == b.read(), "labels.jsonl of a run trained from another's labels.jsonl differs")
    rows = labels(trained)
    for keep, wants in ((rows[1]["keep"] + "1", "keep has"), ("2" + rows[1]["keep"][1:], "not all 0 or 1")):
        bad = os.path.join(tmp, "bad_keep.jsonl")
        with open(bad, "w") as f:
            f.write(json.dumps(rows[0]) + "\n" + json.dumps({"original": rows[1]["original"], "keep": keep}) + "\n")
        dead = os.path.join(tmp, "bad_keep_run")
        p = run("distill", *common, f"label_file={bad}", "max_steps=1", f"output_dir={dead}", ok=False)
        err = p.stderr.strip()
        harness.check(p.returncode != 0 and len(err.splitlines()) == 1 and f"{bad}:2" in err and wants in err,
                      f"a bad keep string: exit {p.returncode}, stderr {err!r}")
        harness.check(not os.path.exists(dead), "the refused run left its folder behind")
    print(f"label_file with keep strings: {len(rows)} texts' labels back as they were; 2 bad keep strings refused")


def check_resume(common, tmp):
    full, part = os.path.join(tmp, "full"), os.path.join(tmp, "part")
    run("distill", *common, "max_steps=8", f"output_dir={full}")
    run("distill", *common, "max_steps=4", f"output_dir={part}")
    run("distill", *common, "max_steps=8", f"output_dir={part}", "--resume")
    la = {r["step"]: r["loss"] for r in metrics(full) if "loss" in r}
    lb = {r["step"]: r["loss"] for r in metrics(part) if "loss" in r}
    harness.check(sorted(la) == list(range(1, 9)) and la == lb, f"losses differ after resume: {la} vs {lb}")
    fa = [r for r in metrics(full) if "val_f1" in r]
    fb = [r for r in metrics(part) if "val_f1" in r]
    harness.check(fa[-1] == fb[-1] and fa[-1]["step"] == 8, f"final held-out metrics differ: {fa[-1]} vs {fb[-1]}")
    harness.check(la[8] < la[1], f"the loss did not fall: {la[1]} -> {la[8]}")
    print(f"resume: 8 losses identical to the bit ({la[1]:.4f} -> {la[8]:.4f}); final held-out F1 {fa[-1]['val_f1']:.4f}")
    return full


def check_transformers(run_dir, cutoff):
    """RUN/model in transformers: the held-out loss and keep F1 pith logged, from the same rows."""
    torch, transformers = harness.require("torch", "transformers")
    model = transformers.AutoModelForTokenClassification.from_pretrained(os.path.join(run_dir, "model")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(os.path.join(run_dir, "model"))
    tp = fp = fn = tn = 0
    loss_sum = n = 0
    for g in labels(run_dir):
        if g["split"] != "val":
            continue
        text, ids, lab = g["original"], [tok.cls_token_id], [-100]
        for (a, b), k in zip(words(text), g["keep"]):
            piece = tok(text.encode()[a:b].decode(), add_special_tokens=False)["input_ids"]
            ids += piece
            lab += [int(k)] * len(piece)
        ids.append(tok.sep_token_id)
        lab.append(-100)
        harness.check(len(ids) <= cutoff, f"a held-out text of {len(ids)} tokens does not fit one row")
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        y = torch.tensor(lab)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, ignore_index=-100, reduction="sum").item()
        pred = logits.argmax(-1)
        for p_, y_ in zip(pred.tolist(), lab):
            if y_ < 0:
                continue
            n += 1
            tp += p_ == 1 and y_ == 1
            fp += p_ == 1 and y_ == 0
            fn += p_ == 0 and y_ == 1
            tn += p_ == 0 and y_ == 0
    prec = tp / (tp + fp) if tp + fp else 0
    rec = tp / (tp + fn) if tp + fn else 0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0
    ms = metrics(run_dir)
    ours = [r for r in ms if "val_f1" in r][-1]
    val_loss = [r for r in ms if "val_loss" in r][-1]["val_loss"]
    harness.check(ours["val_tokens"] == n, f"held-out labeled tokens: pith {ours['val_tokens']}, here {n}")
    harness.check(abs(ours["val_f1"] - f1) < 1e-6, f"held-out F1: pith {ours['val_f1']}, transformers {f1}")
    harness.check(abs(val_loss - loss_sum / n) < 1e-4, f"held-out loss: pith {val_loss}, transformers {loss_sum / n}")
    print(f"RUN/model in transformers: held-out loss {loss_sum / n:.6f} (pith {val_loss:.6f}), F1 {f1:.4f} over {n} tokens")


# ---- label diagnostics (--label-stats): how learnable a run's RUN/labels.jsonl is ----

STOP_WORDS = set("a an the and or but of to in on at for with by from as is was were are be been it its he she they "
                 "them his her their this that these those i you we my your our not no so then there here had has "
                 "have do did does will would can could very too just".split())

def load_labels(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def word_kind(w):
    if len(w) == 1 and not w.isalnum():
        return "punct"
    if w.lower() in STOP_WORDS:
        return "stop"
    if any(c.isdigit() for c in w):
        return "number"
    return "Capital" if w[0].isupper() else "other"


def prf1(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0
    r = tp / (tp + fn) if tp + fn else 0
    return (2 * p * r / (p + r) if p + r else 0), p, r


def labeled_words(g):
    """(word, index, count of words, label) of a labels.jsonl line."""
    b, ws = g["original"].encode(), words(g["original"])
    return [(b[s:e].decode(errors="replace"), i, len(ws), int(y)) for i, ((s, e), y) in enumerate(zip(ws, g["keep"]))]


def label_stats(L, tokenizer_json=None):
    """Keep rates by word kind, by position decile and (with the target's tokenizer.json) by how many
    target tokens follow the word: llmlingua never compresses a text's last partial window."""
    tok = None
    if tokenizer_json:
        tok = harness.require("tokenizers").Tokenizer.from_file(tokenizer_json)
    by_kind, by_dec, by_tail = (collections.defaultdict(lambda: [0, 0]) for _ in range(3))
    for g in L:
        t = g["original"]
        ends = [len(t[:e].encode()) for _, e in tok.encode(t, add_special_tokens=False).offsets] if tok else []
        for (w, i, n, y), (s, _) in zip(labeled_words(g), words(t)):
            for table, key in ((by_kind, word_kind(w)), (by_dec, min(9, i * 10 // n))):
                table[key][0] += y
                table[key][1] += 1
            if tok:
                key = min(sum(1 for x in ends if x > s) // 8, 6)
                by_tail[key][0] += y
                by_tail[key][1] += 1
    tot = sum(v[1] for v in by_kind.values())
    print(f"words {tot}, keep share {sum(v[0] for v in by_kind.values()) / tot:.3f}")
    print("by kind: " + ", ".join(f"{k} {v[0] / v[1]:.2f} ({v[1] / tot:.0%})" for k, v in sorted(by_kind.items())))
    print("by position decile: " + " ".join(f"{v[0] / v[1]:.2f}" for _, v in sorted(by_dec.items())))
    if tok:
        print("by target tokens from the word's start to the text's end (buckets of 8, the last 48+): " +
              " ".join(f"{k * 8}:{v[0] / v[1]:.2f}" for k, v in sorted(by_tail.items())))


def label_baselines(L):
    """Context-free majority votes learned on the train split, scored on the val split (words): per
    word type (unseen: per word kind), per (position decile, words to the end up to 5)."""
    ways = {"word type": lambda w, i, n: w, "position": lambda w, i, n: (i * 10 // n, min(n - i, 5))}
    for name, key in ways.items():
        votes, kinds = collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0])
        for g in L:
            for w, i, n, y in labeled_words(g) if g["split"] == "train" else []:
                for table, k in ((votes, key(w, i, n)), (kinds, word_kind(w))):
                    table[k][0] += y
                    table[k][1] += 1
        tp = fp = fn = tn = 0
        for g in L:
            for w, i, n, y in labeled_words(g) if g["split"] == "val" else []:
                c = votes.get(key(w, i, n)) or kinds[word_kind(w)]
                p = 2 * c[0] >= c[1]
                tp, fp, fn, tn = tp + (p and y), fp + (p and not y), fn + (not p and y), tn + (not p and not y)
        F, P, R = prf1(tp, fp, fn)
        ks = (tp + fn) / (tp + fp + fn + tn)
        print(f"val words, majority per {name}: F1 {F:.3f} (P {P:.3f} R {R:.3f}); keep share {ks:.3f}, "
              f"all-keep F1 {2 * ks / (1 + ks):.3f}")


def label_agreement(A, B):
    """B's labels scored against A's, word by word (the same texts)."""
    tp = fp = fn = tn = 0
    for a, b in zip(A, B):
        harness.check(a["original"] == b["original"], "the two label files hold other texts")
        for x, y in zip(a["keep"], b["keep"]):
            x, y = int(x), int(y)
            tp, fp, fn, tn = tp + (x and y), fp + (y and not x), fn + (x and not y), tn + (not x and not y)
    n = tp + fp + fn + tn
    po, pa, pb = (tp + tn) / n, (tp + fn) / n, (tp + fp) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    F, P, R = prf1(tp, fp, fn)
    print(f"agreement over {n} words: {po:.3f}, kappa {(po - pe) / (1 - pe):.3f}; "
          f"F1 of the second against the first {F:.3f} (P {P:.3f} R {R:.3f})")


PAIRS = [  # (original, compressed, the keep labels worked out by hand)
    ("The cat, the dog and the bird sat.", "cat the bird sat", "1100000110"),  # "the" found backward first
    ("Yes, she said.", "Yes said", "10010"),
    ("Tom had a red ball. Tom liked the ball.", "Tom red ball Tom liked ball", "10011011010"),
]


def check_label_file(cls_args, tmp):
    path = os.path.join(tmp, "pairs.jsonl")
    with open(path, "w") as f:
        for o, c, _ in PAIRS:
            f.write(json.dumps({"original": o, "compressed": c}) + "\n")
    out = os.path.join(tmp, "pairs_run")
    run("distill", *cls_args, f"label_file={path}", "val_size=0.3", "per_device_train_batch_size=2", "max_steps=2",
        f"output_dir={out}")
    got = [g["keep"] for g in labels(out)]
    harness.check(got == [k for _, _, k in PAIRS], f"label_file alignment: {got}")
    bad = os.path.join(tmp, "bad_pairs.jsonl")
    with open(bad, "w") as f:
        for o, c, _ in PAIRS:
            f.write(json.dumps({"original": o, "compressed": c}) + "\n")
        f.write(json.dumps({"original": "the cat sat", "compressed": "a dog ran away"}) + "\n")
    out = os.path.join(tmp, "skip_run")
    p = run("distill", *cls_args, f"label_file={bad}", "val_size=0.3", "per_device_train_batch_size=2",
            "max_steps=2", "label_skip_unaligned=true", f"output_dir={out}")
    harness.check("1 pairs" in p.stdout and len(labels(out)) == 3, f"label_skip_unaligned: {p.stdout[-300:]!r}")
    print(f"label_file: {len(PAIRS)} hand-worked pairs aligned as worked out; a bad pair skipped and counted")
    return bad


def check_refusals(cls_args, target_args, target, bad_pairs, trained, tmp):
    other_tok = os.path.join(tmp, "other_tok")  # the classifier's tokenizer with two pieces swapped
    shutil.copytree(os.path.join(trained, "model"), other_tok)
    j = harness.read_json(os.path.join(other_tok, "tokenizer.json"))
    v = j["model"]["vocab"]
    a, b = (next(k for k, i in v.items() if i == n) for n in (100, 101))
    v[a], v[b] = 101, 100
    harness.write_json(os.path.join(other_tok, "tokenizer.json"), j)
    small = os.path.join(tmp, "small_config.json")
    make_config(small, 50)
    model = os.path.join(trained, "model")
    no_cfg = [x for x in cls_args if not x.startswith("model_config=")]
    cases = [
        (cls_args + [f"label_file={bad_pairs}"], [bad_pairs + ":4", "does not align"]),
        (no_cfg + target_args + [f"model_name_or_path={target}"], [target, "not an encoder"]),
        (no_cfg + target_args + [f"model_name_or_path={model}", f"tokenizer={other_tok}"],
         ["different tokenizers", other_tok, "id 100"]),
        ([x for x in cls_args if not x.startswith("model_config=")] + target_args + [f"model_config={small}"],
         ["vocab_size is 50"]),
        (cls_args, ["label_file", "target_model_name_or_path"]),
        (cls_args + target_args + ["gradient_checkpointing=true"], ["gradient_checkpointing", "method classifier"]),
    ]
    for args, wants in cases:
        out = os.path.join(tmp, "refused")
        p = run("distill", *args, "max_steps=2", f"output_dir={out}", ok=False)
        err = p.stderr.strip()
        harness.check(p.returncode == 1 and len(err.splitlines()) == 1 and all(w in err for w in wants),
                      f"exit {p.returncode}, stderr {err!r} lacks {wants}")
        harness.check(not os.path.exists(out), f"the refused run left {out} behind ({wants})")
    print(f"{len(cases)} bad inputs refused with one line, no run folder left")


def main():
    harness.pith_bin()
    harness.stories_assets()
    harness.require("torch", "transformers", "tokenizers")
    with tempfile.TemporaryDirectory() as tmp:
        target, corpus, tok, cfg = inputs(tmp)
        cls_args = ["method=classifier", f"model_config={cfg}", f"tokenizer={tok}", "cutoff_len=128",
                    "learning_rate=1e-3", "warmup_steps=2", "logging_steps=1", "threads=1", "seed=3"]
        target_args = [f"target_model_name_or_path={target}", f"train_file={corpus}", "label_num_texts=12",
                       "label_iterative_size=16", "label_rate=0.5", "val_size=0.25"]
        common = cls_args + target_args + ["per_device_train_batch_size=3"]
        check_target_labels(common, target, tmp)
        trained = check_resume(common, tmp)
        check_transformers(trained, 128)
        check_keep_labels(cls_args + ["val_size=0.25", "per_device_train_batch_size=3"], trained, tmp)
        check_byte_level_target(cls_args, tmp)
        bad = check_label_file(cls_args, tmp)
        check_refusals(cls_args, target_args, target, bad, trained, tmp)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--inputs":
    # --inputs OUT [DIM LAYERS]: configs/distill_classifier_stories260k.yaml's inputs
    os.makedirs(sys.argv[2], exist_ok=True)
    print(inputs(sys.argv[2], *(int(x) for x in sys.argv[3:5])))
elif __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--label-stats":
    # --label-stats LABELS.jsonl [OTHER.jsonl|-] [TARGET_TOKENIZER.json]: keep rates by word kind and
    # position, a per-word-type majority vote's held-out F1, and the agreement with OTHER's labels
    A = load_labels(sys.argv[2])
    label_stats(A, sys.argv[4] if len(sys.argv) > 4 else None)
    label_baselines(A)
    if len(sys.argv) > 3 and sys.argv[3] != "-":
        label_agreement(A, load_labels(sys.argv[3]))
elif __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--world-inputs":
    # --world-inputs OUT WORLD [DIM LAYERS]: configs/distill_classifier_demo.yaml's tokenizer and config
    os.makedirs(sys.argv[2], exist_ok=True)
    print(world_inputs(sys.argv[2], sys.argv[3], *(int(x) for x in sys.argv[4:6])))
elif __name__ == "__main__":
    main()
