"""`pith eval --hard`: hard-compression systems and their chains into the soft compressor, in one
table with the baselines, on the tiny world eval_cli.py builds (pith data synth, a random LLaMA
folder, a few pretrain/finetune steps of 500x, exported); the base model is the scorer.

- qa with --hard llmlingua:2,llmlingua:4,longllmlingua:4,llmlingua:k and a compressor: every system
  is in metrics.json and predictions.jsonl, the chains llmlingua@2x+500x, ... too; prompt_tokens
  (mean per example) is the context's for full, 0 for none, k for truncated, compressed and the
  chains, about 1/R of the context for the R-x hard systems (exact budget) and k for @k; the mean
  of the hard systems' per-line prompt_tokens equals metrics.json's; retained_by_system is each
  system's score over full's; the table has tokens, ratio and ret_f1 columns and a row per system.
- regen with --hard llmlingua:2: the hard system and its chain are scored; no `full`.
- --hard-budget llmlingua runs and says so; --compressor none with --hard: no chains.
- The scores of the systems without --hard are the same with it (adding systems changes no row).
- llmlingua2 (a random BERT token classifier made here, numpy weights, its WordPiece vocabulary
  counted from the world's texts; its words weighed by the base model's tokens; with --hard-budget
  llmlingua by cl100k from .venv-peers, that part skipped with a printed reason
  without it) and ehpc (heads from `pith compress ehpc-probe` on the base model): qa with
  ehpc:2,ehpc:4,ehpc:k,llmlingua2:2,llmlingua2:3 and a compressor: every system and chain is in the
  table; each example's kept text (predictions.jsonl "kept") is what `pith compress --method ehpc`
  (--target-tokens: the context's base-model tokens / R, or k; with the question) or `--method
  llmlingua2` (--rate 1/R) keeps of the same context, string for string; prompt_tokens are the kept
  text's tokens; ehpc reads about 1/R of the context (exact budget). regen with ehpc:3,ehpc:k runs.
- Errors, one `pith eval:` line and nothing written: --hard foo:2, ratio 1, ratio x, no ratio,
  a --hard-scorer folder that is not a causal LM (no config.json; a token classifier), --hard-scorer
  without --hard (exit 2); longllmlingua for regen (exit 1); llmlingua2 without --l2-scorer, an
  --l2-scorer that is a causal LM, missing or without config.json, --l2-scorer, --ehpc-heads or
  --hard-scorer without their methods, the classifier given as --hard-scorer, ratio <= 1, ehpc
  without --ehpc-heads (exit 2, naming ehpc-probe); heads for another model (a head or layer out of
  range), a missing or non-JSON heads file (exit 1).

usage: eval_hard_cli.py PATH_TO_pith  (or PITH_BIN). Exit 0, 1 on failure, 77 when numpy is missing.
"""
import json
import os
import shutil
import sys
import tempfile

import harness
from harness import fail

np = harness.require("numpy")
import eval_cli  # noqa: E402  (the random model and the output checks)

run = harness.pith
QA_METRICS = ["em", "f1", "raw_em", "raw_f1"]
K = 3


def evaluate(tmp, label, compressor, data, n, hard, extra=()):
    return eval_cli.run_eval(tmp, label, compressor, data, n, [*(["--hard", hard] if hard else []), *extra])


def check_table(p, m, task):
    metrics = QA_METRICS if task == "qa" else ["rouge1", "rouge2", "rougeL", "bleu", "em"]
    lines = p.stdout.splitlines()
    head = [l.split() for l in lines if l.split()[:1] == ["system"]]
    want = metrics + ["tokens", "ratio"] + (["ret_f1"] if task == "qa" and "full" in m["systems"] else [])
    if not head or head[0][1:] != want:
        fail(f"table header {head[:1]}, want system {want}:\n{p.stdout}")
    for s in m["systems"]:
        row = [l.split() for l in lines if l.split()[:1] == [s]]
        if not row or len(row[0]) != 1 + len(want):
            fail(f"no table row for {s} with {len(want)} columns:\n{p.stdout}")
        tokens = float(row[0][1 + len(metrics)])
        if abs(tokens - m["prompt_tokens"][s]) > 0.051:
            fail(f"{s}: the table says {tokens} tokens, metrics.json {m['prompt_tokens'][s]}")


def make_classifier(folder, texts, seed):
    """A random BertForTokenClassification folder (numpy weights) with a WordPiece tokenizer counted
    from texts (distill_classifier.make_bert). The head is drawn with std 0.25 so that the words'
    keep probabilities are far apart (see llmlingua2_parity.py)."""
    from distill_classifier import make_bert
    vocab = make_bert(texts, folder)
    D, F, L = 32, 64, 2
    cfg = dict(architectures=["BertForTokenClassification"], model_type="bert", vocab_size=vocab, hidden_size=D,
               num_hidden_layers=L, num_attention_heads=2, intermediate_size=F, max_position_embeddings=512,
               type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu", pad_token_id=0,
               id2label={"0": "LABEL_0", "1": "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = np.random.default_rng(seed)
    w = lambda *shape, s=0.02: rng.normal(0, s, shape).astype(np.float32)
    ones, zeros = (lambda n: np.ones(n, np.float32)), (lambda n: np.zeros(n, np.float32))
    e = "bert.embeddings."
    t = {e + "word_embeddings.weight": w(vocab, D), e + "position_embeddings.weight": w(512, D),
         e + "token_type_embeddings.weight": w(2, D), e + "LayerNorm.weight": ones(D), e + "LayerNorm.bias": zeros(D),
         "classifier.weight": w(2, D, s=0.25), "classifier.bias": zeros(2)}
    for i in range(L):
        p = f"bert.encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            t[p + name + ".weight"], t[p + name + ".bias"] = w(D, D), zeros(D)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = w(F, D), zeros(F)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = w(D, F), zeros(D)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[p + ln + ".weight"], t[p + ln + ".bias"] = ones(D), zeros(D)
    eval_cli.save_safetensors(os.path.join(folder, "model.safetensors"), t)


def compress(method, scorer, lines, *args):
    """pith compress on JSON lines: the output lines."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for x in lines:
            f.write(json.dumps(x) + "\n")
    try:
        p = run("compress", "--method", method, "--scorer", scorer, "--input", f.name, "--threads", "1", "--quiet", *args)
    finally:
        os.unlink(f.name)
    return [json.loads(x) for x in p.stdout.splitlines() if x.strip()]


def check_l2_ehpc(tmp, world, tok_dir, model, exp_ft, qa, docs):
    """llmlingua2 and ehpc as eval systems: their kept text is pith compress's for the same context,
    question and budget; their errors. Returns the number of bad invocations checked."""
    tokenizers = harness.require("tokenizers")
    hf = tokenizers.Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    count = lambda s: len(hf.encode(s, add_special_tokens=False).ids)
    # ehpc's heads: the probe on the base model (a short window: the questions are a few tokens), in
    # a copy of its folder with the tokenizer beside it (as pith compress needs a scorer folder)
    scorer = os.path.join(tmp, "model_with_tokenizer")
    shutil.copytree(model, scorer)
    for name in os.listdir(tok_dir):
        shutil.copy(os.path.join(tok_dir, name), scorer)
    run("compress", "ehpc-probe", "--model", scorer, "--data", docs, "--window", "2", "--top", "2", "--threads", "1")
    heads = os.path.join(scorer, "ehpc.json")
    # llmlingua2's classifier, its vocabulary counted from the world's texts
    texts = []
    for name in ("docs.jsonl", "qa.jsonl"):
        with open(os.path.join(world, name)) as f:
            for line in f:
                d = json.loads(line)
                texts += [v for k, v in d.items() if k in ("abstract", "text", "context", "title") and isinstance(v, str)]
    cls = os.path.join(tmp, "tiny-bert-classifier")
    harness.require("transformers")
    make_classifier(cls, texts, 5)
    # The exact budget weighs llmlingua2's words by the base model's tokens: no cl100k needed.
    n = 5
    hard = "ehpc:2,ehpc:4,ehpc:k,llmlingua2:2,llmlingua2:3"
    extra = ["--ehpc-heads", heads, "--l2-scorer", cls]
    out, p, m, preds = evaluate(tmp, "l2_ehpc", exp_ft, qa, n, hard, extra)
    names = [s.replace(":", "@") + ("" if s.endswith("k") else "x") for s in hard.split(",")]
    systems = ["compressed", "full", "none", "truncated"] + names + [s + "+500x" for s in names]
    if list(m["systems"]) != systems:
        fail(f"systems {list(m['systems'])}, want {systems}")
    check_table(p, m, "qa")
    want_hard = {"systems": hard, "scorer": model, "budget": "exact", "ehpc_heads": heads, "l2_scorer": cls}
    if m["hard"] != want_hard:
        fail(f"metrics.json hard: {m['hard']}, want {want_hard}")
    ctx, tok = m["context_tokens"], m["prompt_tokens"]
    for s, r in (("ehpc@2x", 2), ("ehpc@4x", 4)):  # the exact budget, less what re-encoding shifts
        if not abs(tok[s] - ctx / r) <= 0.15 * ctx / r + 1:
            fail(f"prompt_tokens {s} = {tok[s]}: not about {ctx / r:.1f} (the context's {ctx} / {r})")
    if not abs(tok["ehpc@k"] - K) <= 1:
        fail(f"prompt_tokens ehpc@k = {tok['ehpc@k']}, want about k = {K}")
    for s in names:
        if s + "+500x" not in m["systems"] or tok[s + "+500x"] != K:
            fail(f"{s}+500x: no chain, or it reads {tok.get(s + '+500x')} positions, not k = {K}")
    # The kept text of every example against pith compress on the same context (and question).
    rows = {s: [x for x in preds if x["system"] == s] for s in names}
    for s in names:
        if len(rows[s]) != n or any(x["prompt_tokens"] != min(count(x["kept"]), count(x["context"])) for x in rows[s]):
            fail(f"{s}: {len(rows[s])} lines, or prompt_tokens are not the kept text's tokens")
    for s in names:
        method, r = s.split("@")
        r = r[:-1] if r != "k" else "k"
        lines = [{"context": x["context"], "question": x["question"]} for x in rows[s]]
        if method == "ehpc":  # the budget: the context's base-model tokens / R (k: k)
            got = []
            for x, line in zip(rows[s], lines):
                target = K if r == "k" else count(x["context"]) / float(r)
                got += compress("ehpc", scorer, [line], "--target-tokens", repr(target))
            want = [g["compressed_prompt"] for g in got]
            have = [x["kept"] + "\n\n" + x["question"] for x in rows[s]]  # compress keeps the question
        else:  # llmlingua2: rate 1/R of its words weighed by the base model's tokens (no question)
            got = compress("llmlingua2", cls, [{"context": x["context"]} for x in rows[s]], "--rate", repr(1 / float(r)),
                           "--cl100k", os.path.join(tok_dir, "tokenizer.json"))
            want = [g["compressed_prompt"] for g in got]
            have = [x["kept"] for x in rows[s]]
        for i, (a, b) in enumerate(zip(have, want)):
            if a != b:
                fail(f"{s}, example {i}: pith eval kept {a!r}, pith compress {b!r}")
        if all(x["kept"].strip() == x["context"].strip() for x in rows[s]):
            fail(f"{s} kept every context whole")
    print(f"ok: {', '.join(names)} keep what pith compress keeps on {n} examples; context {ctx:.1f} tokens, read "
          + ", ".join(f"{s} {tok[s]:.1f}" for s in names))
    for s, r in (("llmlingua2@2x", 2), ("llmlingua2@3x", 3)):  # a percentile of the same counts: near 1/R
        if not abs(tok[s] - ctx / r) <= 0.3 * ctx / r + 2:
            fail(f"prompt_tokens {s} = {tok[s]}: not near {ctx / r:.1f} (the context's {ctx} / {r})")

    # llmlingua's own budget: words weighed by cl100k, as llmlingua 0.2.2 does
    cl100k = os.path.join(harness.ROOT, ".venv-peers", "tiktoken-cache", "9b5ad71b2ce5302211f9c61530b329a4922fc6a4")
    if not os.path.exists(cl100k):
        print(f"SKIP (llmlingua2 with cl100k): {cl100k} is absent (scripts/setup-peers puts cl100k_base.tiktoken there)")
    else:
        _, _, m2, preds2 = evaluate(tmp, "l2_cl100k", "none", qa, 3, "llmlingua2:2",
                                    ["--model", model, "--tokenizer", tok_dir, "--l2-scorer", cls, "--hard-budget",
                                     "llmlingua", "--cl100k", cl100k])
        rows2 = [x for x in preds2 if x["system"] == "llmlingua2@2x"]
        got = compress("llmlingua2", cls, [{"context": x["context"]} for x in rows2], "--rate", "0.5", "--cl100k", cl100k)
        if len(rows2) != 3 or [x["kept"] for x in rows2] != [g["compressed_prompt"] for g in got]:
            fail(f"llmlingua2 --hard-budget llmlingua: eval kept {[x['kept'] for x in rows2]}, compress {got}")
        print("ok: llmlingua2 with --hard-budget llmlingua keeps what pith compress keeps with cl100k")

    # regen, no compressor: ehpc's window is the context's own end (shortened to the budget at k)
    out, p, m, preds = evaluate(tmp, "ehpc_regen", "none", docs, 3, "ehpc:3,ehpc:k",
                                ["--model", model, "--tokenizer", tok_dir, "--k", "2", "--ehpc-heads", heads])
    if list(m["systems"]) != ["none", "truncated", "ehpc@3x", "ehpc@k"] or not 0 < m["prompt_tokens"]["ehpc@k"] <= 3:
        fail(f"regen ehpc: {list(m['systems'])}, {m['prompt_tokens']}")
    print(f"ok regen: ehpc@3x read {m['prompt_tokens']['ehpc@3x']:.1f} of {m['context_tokens']:.1f}, ehpc@k "
          f"{m['prompt_tokens']['ehpc@k']:.1f}")

    # errors
    bad = os.path.join(tmp, "eval", "bad2")
    bad_heads = os.path.join(tmp, "other_ehpc.json")
    with open(bad_heads, "w") as f:
        json.dump({"format": "pith.ehpc", "version": 1, "layer": 1, "heads": [0, 9], "window": 2, "kernel": 7}, f)
    cases = [
        (["--hard", "llmlingua2:2"], 2, "--hard llmlingua2 needs --l2-scorer DIR"),
        (["--hard", "llmlingua2:2", "--l2-scorer", model], 2, "not a BERT or XLM-R token classifier"),
        (["--hard", "llmlingua2:2", "--l2-scorer", os.path.join(tmp, "nope")], 2, "no such folder"),
        (["--hard", "llmlingua2:2", "--l2-scorer", tok_dir], 2, "no config.json"),
        (["--hard", "llmlingua2:2", "--l2-scorer", cls, "--cl100k", "x"], 2, "--cl100k is for --hard-budget llmlingua"),
        (["--hard", "llmlingua:2", "--l2-scorer", cls], 2, "--l2-scorer is for --hard llmlingua2"),
        (["--hard", "llmlingua2:1", "--l2-scorer", cls], 2, "the ratio must be a number > 1"),
        (["--hard", "ehpc:0.5", "--ehpc-heads", heads], 2, "the ratio must be a number > 1"),
        (["--hard", "ehpc:2"], 2, "pith compress ehpc-probe --model BASE"),
        (["--hard", "llmlingua:2", "--ehpc-heads", heads], 2, "--ehpc-heads is for --hard ehpc"),
        (["--hard", "ehpc:2", "--ehpc-heads", heads, "--hard-scorer", model], 2, "--hard-scorer is for --hard llmlingua"),
        (["--hard", "llmlingua:2", "--hard-scorer", cls], 2, "llmlingua2's classifier goes to --l2-scorer"),
        (["--hard", "ehpc:2", "--ehpc-heads", bad_heads], 1, "head 9 is out of range (the model has heads 0..3)"),
        (["--hard", "ehpc:2", "--ehpc-heads", "7:0"], 1, "layer 7 is out of range"),
        (["--hard", "ehpc:2", "--ehpc-heads", os.path.join(tmp, "nope.json")], 1, "no such file"),
        (["--hard", "ehpc:2", "--ehpc-heads", docs], 1, "not JSON"),
    ]
    for args, code, want in cases:
        p = run("eval", "--compressor", exp_ft, "--data", qa, *args, "--out", bad, "--threads", "1", ok=False)
        err = p.stderr.strip().splitlines()
        if p.returncode != code or len(err) != 1 or not err[0].startswith("pith eval: ") or want not in err[0]:
            fail(f"pith eval {' '.join(args)}: exit {p.returncode} (want {code}, '{want}'), stderr {p.stderr!r}")
        if os.path.exists(bad):
            fail(f"pith eval {' '.join(args)} created {bad}")
    return len(cases)


def main():
    harness.pith_bin(from_argv=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir, model, docs, qa, exp_pre, exp_ft = eval_cli.tiny_500x(tmp, K)

        # ---- qa: one table ----
        n = 6
        hard = "llmlingua:2,llmlingua:4, longllmlingua:4,llmlingua:k"
        out, p, m, preds = evaluate(tmp, "qa", exp_ft, qa, n, hard)
        hard_names = ["llmlingua@2x", "llmlingua@4x", "longllmlingua@4x", "llmlingua@k"]
        chains = [h + "+500x" for h in hard_names]
        systems = ["compressed", "full", "none", "truncated"] + hard_names + chains
        if list(m["systems"]) != systems:
            fail(f"systems {list(m['systems'])}, want {systems}")
        eval_cli.load_eval(out, "qa", n, systems)
        eval_cli.rescore_qa(out, m, preds)
        ctx, tok = m["context_tokens"], m["prompt_tokens"]
        if not ctx > 8:
            fail(f"context_tokens {ctx}: too short a context to compress")
        want = {"full": ctx, "none": 0, "truncated": min(K, ctx), "compressed": K}
        for s, v in want.items():
            if abs(tok[s] - v) > 1e-9:
                fail(f"prompt_tokens {s} = {tok[s]}, want {v}")
        for s in chains:
            if tok[s] != K:
                fail(f"prompt_tokens {s} = {tok[s]}, want the compressor's k = {K}")
        for s, r in (("llmlingua@2x", 2), ("llmlingua@4x", 4), ("longllmlingua@4x", 4)):
            if not abs(tok[s] - ctx / r) <= 0.1 * ctx / r + 1:
                fail(f"prompt_tokens {s} = {tok[s]}: not about {ctx / r:.1f} (the context's {ctx} / {r})")
        if not abs(tok["llmlingua@k"] - K) <= 1:
            fail(f"prompt_tokens llmlingua@k = {tok['llmlingua@k']}, want about k = {K}")
        for s in hard_names + chains:
            rows = [x["prompt_tokens"] for x in preds if x["system"] == s]
            if len(rows) != n or abs(sum(rows) / n - tok[s]) > 1e-9:
                fail(f"{s}: predictions.jsonl's prompt_tokens {rows} do not average to {tok[s]}")
        if any("prompt_tokens" in x for x in preds if x["system"] in want):
            fail("prompt_tokens on a baseline's line")
        full = m["systems"]["full"]
        for s in systems:
            for k, v in m["systems"][s].items():
                w = 100 * v / full[k] if full[k] > 0 else None
                got = m["retained_by_system"][s][k]
                if (w is None) != (got is None) or (w is not None and abs(got - w) > 1e-9):
                    fail(f"retained_by_system {s} {k} = {got}, want {w}")
        if m["retained"] != {k: v for k, v in m["retained_by_system"]["compressed"].items()}:
            fail(f"retained {m['retained']} is not compressed's of retained_by_system")
        if m["hard"] != {"systems": hard, "scorer": model, "budget": "exact"}:
            fail(f"metrics.json hard: {m['hard']}")
        check_table(p, m, "qa")
        # The hard systems read other prompts than full: some prediction differs.
        by = {(x["system"], x["index"]): x["prediction"] for x in preds}
        if all(by[("llmlingua@4x", i)] == by[("full", i)] for _, i in by):
            fail("llmlingua@4x predicts exactly as full on every example")
        print(f"ok qa: {len(systems)} systems in one table; context {ctx:.1f} tokens, read: "
              + ", ".join(f"{s} {tok[s]:.1f}" for s in systems))

        # The systems without --hard score the same as with it.
        _, _, m0, _ = evaluate(tmp, "qa_plain", exp_ft, qa, n, None)
        for s in m0["systems"]:
            if m0["systems"][s] != m["systems"][s]:
                fail(f"{s} scores otherwise beside the hard systems: {m0['systems'][s]} vs {m['systems'][s]}")
        if "hard" in m0:
            fail("metrics.json has 'hard' without --hard")
        print("ok: adding hard systems changes no other row")

        # ---- regen ----
        out, p, m, preds = evaluate(tmp, "regen", exp_pre, docs, 4, "llmlingua:2")
        systems = ["compressed", "none", "truncated", "llmlingua@2x", "llmlingua@2x+500x"]
        if list(m["systems"]) != systems:
            fail(f"regen systems {list(m['systems'])}, want {systems}")
        eval_cli.load_eval(out, "regen", 4, systems)
        eval_cli.rescore_regen(out, m, preds)
        check_table(p, m, "regen")
        if "retained_by_system" in m:
            fail("regen has no full context to retain")
        print(f"ok regen: {systems}, llmlingua@2x read {m['prompt_tokens']['llmlingua@2x']:.1f} of "
              f"{m['context_tokens']:.1f}")

        # ---- llmlingua's budget; no compressor ----
        out, p, m, _ = evaluate(tmp, "own", "none", qa, 3, "llmlingua:4", ["--model", model, "--tokenizer", tok_dir,
                                                                         "--hard-budget", "llmlingua", "--k", "5"])
        if list(m["systems"]) != ["full", "none", "truncated", "llmlingua@4x"] or m["hard"]["budget"] != "llmlingua":
            fail(f"--compressor none --hard-budget llmlingua: {list(m['systems'])}, {m.get('hard')}")
        if "llmlingua's" not in p.stdout:
            fail(f"the table does not say which budget:\n{p.stdout}")
        print(f"ok: llmlingua's own budget at 4x read {m['prompt_tokens']['llmlingua@4x']:.1f} of "
              f"{m['context_tokens']:.1f} tokens; no chains without a compressor")

        # ---- llmlingua2 and ehpc ----
        n_bad = check_l2_ehpc(tmp, os.path.dirname(tok_dir), tok_dir, model, exp_ft, qa, docs)

        # ---- errors ----
        cls = os.path.join(tmp, "classifier")
        os.makedirs(cls)
        with open(os.path.join(cls, "config.json"), "w") as f:
            json.dump({"architectures": ["BertForTokenClassification"], "model_type": "bert"}, f)
        bad = os.path.join(tmp, "eval", "bad")
        cases = [
            (["--hard", "foo:2"], 2, "unknown method 'foo' (llmlingua, longllmlingua, llmlingua2, ehpc)"),
            (["--hard", "llmlingua:1"], 2, "the ratio must be a number > 1"),
            (["--hard", "llmlingua:0.5"], 2, "the ratio must be a number > 1"),
            (["--hard", "llmlingua:x"], 2, "not 'x'"),
            (["--hard", "llmlingua"], 2, "not METHOD:RATIO"),
            (["--hard", "llmlingua:2,llmlingua:2"], 2, "llmlingua@2x twice"),
            (["--hard", "llmlingua:2", "--hard-scorer", tok_dir], 2, "no config.json"),
            (["--hard", "llmlingua:2", "--hard-scorer", cls], 2, "a classifier, not a causal LM"),
            (["--hard", "llmlingua:2", "--hard-scorer", os.path.join(tmp, "nope")], 2, "no such folder"),
            (["--hard-scorer", model], 2, "--hard-scorer is for --hard"),
            (["--hard-budget", "llmlingua"], 2, "--hard-budget is for --hard"),
        ]
        for args, code, want in cases:
            p = run("eval", "--compressor", exp_ft, "--data", qa, *args, "--out", bad, "--threads", "1", ok=False)
            err = p.stderr.strip().splitlines()
            if p.returncode != code or len(err) != 1 or not err[0].startswith("pith eval: ") or want not in err[0]:
                fail(f"pith eval {' '.join(args)}: exit {p.returncode} (want {code}, '{want}'), stderr {p.stderr!r}")
            if os.path.exists(bad):
                fail(f"pith eval {' '.join(args)} created {bad}")
        p = run("eval", "--compressor", exp_pre, "--data", docs, "--hard", "longllmlingua:2", "--out", bad,
                "--threads", "1", "--quiet", ok=False)
        err = p.stderr.strip().splitlines()
        if p.returncode != 1 or len(err) != 1 or "for qa only" not in err[0] or os.path.exists(bad):
            fail(f"longllmlingua for regen: exit {p.returncode}, stderr {p.stderr!r}")
        print(f"errors: {len(cases) + 1 + n_bad} bad invocations rejected in one line each, nothing written")
    print("eval_hard_cli: hard systems and chains beside the baselines and the soft compressor, with their lengths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
