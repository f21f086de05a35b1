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
- Errors, one `pith eval:` line and nothing written: --hard foo:2, ratio 1, ratio x, no ratio,
  a --hard-scorer folder that is not a causal LM (no config.json; a token classifier), --hard-scorer
  without --hard (exit 2); longllmlingua for regen (exit 1).

usage: eval_hard_cli.py PATH_TO_pith  (or PITH_BIN). Exit 0, 1 on failure, 77 when numpy is missing.
"""
import json
import os
import sys
import tempfile

import harness
from harness import fail

np = harness.require("numpy")
import eval_cli  # noqa: E402  (the random model and the output checks)

run = harness.pith
QA_METRICS = ["em", "f1", "raw_em", "raw_f1"]
K = 3


def evaluate(tmp, label, compressor, data, n, hard, extra=(), task="qa"):
    out = os.path.join(tmp, "eval", label)
    p = run("eval", "--compressor", compressor, "--data", data, "--max-examples", str(n), "--threads", "1",
            "--out", out, "--quiet", *(["--hard", hard] if hard else []), *extra)
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    with open(os.path.join(out, "predictions.jsonl")) as f:
        preds = [json.loads(line) for line in f]
    return out, p, m, preds


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


def main():
    harness.pith_bin(from_argv=True)
    with tempfile.TemporaryDirectory() as tmp:
        world = os.path.join(tmp, "world")
        run("data", "synth", "--dir", world, "--docs", "60", "--seed", "7", "--threads", "1", "--val-fraction", "0.2",
            "--test-fraction", "0.1", "--quiet")
        tok_dir = os.path.join(world, "tokenizer")
        with open(os.path.join(tok_dir, "tokenizer.json")) as f:
            tj = json.load(f)
        vocab = 1 + max(list(tj["model"]["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])])
        model = os.path.join(tmp, "model")
        eval_cli.make_model(model, vocab, 11)
        docs, qa = os.path.join(world, "docs.h5"), os.path.join(world, "qa.h5")
        common = [f"model_name_or_path={model}", f"tokenizer={tok_dir}", f"num_compress_tokens={K}", "cutoff_len=64",
                  "max_target_len=32", "per_device_train_batch_size=4", "lora_rank=4", "lora_alpha=8",
                  "lora_dropout=0.0", "learning_rate=3e-3", "warmup_steps=1", "logging_steps=1", "eval_batches=1",
                  "threads=1", "max_steps=2", "method=500x"]
        pre, ft = os.path.join(tmp, "pre"), os.path.join(tmp, "ft")
        run("pretrain", *common, f"train_file={docs}", f"output_dir={pre}")
        run("finetune", *common, f"train_file={qa}", f"init_from={pre}", f"output_dir={ft}")
        exp_pre, exp_ft = pre + "_export", ft + "_export"
        run("export", "--run", pre, "--out", exp_pre)
        run("export", "--run", ft, "--out", exp_ft)

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
        out, p, m, preds = evaluate(tmp, "regen", exp_pre, docs, 4, "llmlingua:2", task="regen")
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

        # ---- errors ----
        cls = os.path.join(tmp, "classifier")
        os.makedirs(cls)
        with open(os.path.join(cls, "config.json"), "w") as f:
            json.dump({"architectures": ["BertForTokenClassification"], "model_type": "bert"}, f)
        bad = os.path.join(tmp, "eval", "bad")
        cases = [
            (["--hard", "foo:2"], 2, "unknown method 'foo' (llmlingua, longllmlingua)"),
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
        print(f"errors: {len(cases) + 1} bad invocations rejected in one line each, nothing written")
    print("eval_hard_cli: hard systems and chains beside the baselines and the soft compressor, with their lengths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
