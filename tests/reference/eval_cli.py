"""`pith eval` end to end on a tiny world built here, with no assets: `pith data synth` (documents,
QA pairs and their tokenizer), a random LLaMA written as a Hugging Face folder (numpy; no torch),
a few steps of pith pretrain and finetune (500x under both position policies, and ICAE), exported.

- qa (finetuned) and regen (pretrained) evaluations with --verify (every compressed generation, made
  with a KV cache over the compressed prefix, must be comp_decode's greedy choice without a cache):
  the three files exist and parse, n equals --max-examples, every system is there (regen has no
  `full`), every score lies in [0, 100], the table is printed, progress goes to stderr.
- The scores are recomputed in Python from predictions.jsonl with the official SQuAD v1.1
  normalize_answer / f1 (and the raw variant; regen exact match, and ROUGE / BLEU when rouge-score
  and sacrebleu are installed) and must equal metrics.json to 1e-9 (ROUGE/BLEU 1e-6). A random model
  never answers right, so a second QA corpus is built whose gold answers are taken from (or are
  normalisation variants of) the first run's predictions; evaluating on it regenerates the same
  predictions and gives non-zero EM/F1 to recompute, and a `retained` ratio.
- Evaluating the run folder (exported into OUT/export) gives the same systems as the export folder.
- Errors: a bad flag (exit 2), missing data, a task that does not fit the corpus, an unknown baseline,
  a folder that is neither export nor run: one `pith eval:` line, and no output folder.

usage: eval_cli.py PATH_TO_pith  (or PITH_BIN). Exit 0 on success, 1 on failure, 77 (skip, reason
printed) when numpy or the binary is missing.
"""
import json
import os
import re
import struct
import sys
import tempfile

import harness
from harness import fail
from squad_v11 import exact_match_score, f1_score, metric_max_over_ground_truths, raw_em, raw_f1

np = harness.require("numpy")  # numpy makes the random model

TOL = 1e-9
QA_SYSTEMS = ["compressed", "full", "none", "truncated"]
REGEN_SYSTEMS = ["compressed", "none", "truncated"]


run = harness.pith

# ---- a random model as a Hugging Face folder ----

def save_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_model(folder, vocab, seed):
    D, F, L, H, KV = 32, 64, 2, 4, 2
    hd = D // H
    os.makedirs(folder)
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=vocab, hidden_size=D,
               intermediate_size=F, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=KV,
               max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
               hidden_act="silu", torch_dtype="float32")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = np.random.default_rng(seed)
    w = lambda *shape: rng.normal(0, 0.02, shape).astype(np.float32)
    t = {"model.embed_tokens.weight": w(vocab, D), "model.norm.weight": np.ones(D, np.float32),
         "lm_head.weight": w(vocab, D)}
    for i in range(L):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": np.ones(D, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(D, np.float32),
                  p + "self_attn.q_proj.weight": w(H * hd, D), p + "self_attn.k_proj.weight": w(KV * hd, D),
                  p + "self_attn.v_proj.weight": w(KV * hd, D), p + "self_attn.o_proj.weight": w(D, H * hd),
                  p + "mlp.gate_proj.weight": w(F, D), p + "mlp.up_proj.weight": w(F, D),
                  p + "mlp.down_proj.weight": w(D, F)})
    save_safetensors(os.path.join(folder, "model.safetensors"), t)


# ---- checking one evaluation ----

def load_eval(out, task, n, systems):
    for name in ("predictions.jsonl", "metrics.json", "config.yaml"):
        if not os.path.isfile(os.path.join(out, name)):
            fail(f"{out}: no {name}")
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(out, "predictions.jsonl")) as f:
        preds = [json.loads(line) for line in f]
    with open(os.path.join(out, "config.yaml")) as f:
        cfg = dict(line.split(": ", 1) for line in f.read().splitlines() if line and not line.startswith("#"))
    if metrics["task"] != task or metrics["n"] != n or cfg.get("task") != task or cfg.get("n_examples") != str(n):
        fail(f"{out}: task {metrics['task']} / n {metrics['n']}, want {task} / {n}; config.yaml {cfg}")
    if sorted(metrics["systems"]) != sorted(systems):
        fail(f"{out}: systems {sorted(metrics['systems'])}, want {sorted(systems)}")
    for s, scores in metrics["systems"].items():
        for m, v in scores.items():
            if not (isinstance(v, (int, float)) and 0 <= v <= 100):
                fail(f"{out}: {s} {m} = {v!r}, not in [0, 100]")
    for s in systems:
        rows = [p for p in preds if p["system"] == s]
        if len(rows) != n or len({p["index"] for p in rows}) != n:
            fail(f"{out}: {len(rows)} predictions of {s} over {len({p['index'] for p in rows})} records, want {n}")
        key = "golds" if task == "qa" else "reference"
        if any(key not in p or "prediction" not in p or ("question" in p) != (task == "qa") for p in rows):
            fail(f"{out}: a {s} line lacks a field: {rows[0]}")
    return metrics, preds


def close(what, got, want, tol=TOL):
    if not abs(got - want) <= tol:
        fail(f"{what}: metrics.json says {got!r}, recomputed {want!r}")


def rescore_qa(out, metrics, preds):
    worst = 0.0
    for s, scores in metrics["systems"].items():
        rows = [p for p in preds if p["system"] == s]
        em = f1 = rem = rf1 = 0.0
        for p in rows:  # the order evaluate-v1.1.py sums in: the examples in turn
            em += metric_max_over_ground_truths(exact_match_score, p["prediction"], p["golds"])
            f1 += metric_max_over_ground_truths(f1_score, p["prediction"], p["golds"])
            rem += metric_max_over_ground_truths(raw_em, p["prediction"], p["golds"])
            rf1 += metric_max_over_ground_truths(raw_f1, p["prediction"], p["golds"])
        n = len(rows)
        for m, v in (("em", 100.0 * em / n), ("f1", 100.0 * f1 / n), ("raw_em", 100.0 * rem / n),
                     ("raw_f1", 100.0 * rf1 / n)):
            close(f"{out} {s} {m}", scores[m], v)
            worst = max(worst, v)
    full = metrics["systems"]["full"]
    for m, comp in metrics["systems"]["compressed"].items():
        want = 100.0 * comp / full[m] if full[m] > 0 else None
        got = metrics["retained"].get(m)
        if (want is None) != (got is None) or (want is not None and abs(got - want) > TOL):
            fail(f"{out}: retained {m} = {got!r}, want {want!r}")
    return worst


def rescore_regen(out, metrics, preds):
    try:
        from rouge_score import rouge_scorer
        import sacrebleu
    except ImportError:
        rouge_scorer = sacrebleu = None
    for s, scores in metrics["systems"].items():
        rows = [p for p in preds if p["system"] == s]
        close(f"{out} {s} em", scores["em"], 100.0 * sum(p["prediction"] == p["reference"] for p in rows) / len(rows))
        if rouge_scorer:
            sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
            r = [sc.score(p["reference"], p["prediction"]) for p in rows]
            for m in ("rouge1", "rouge2", "rougeL"):
                close(f"{out} {s} {m}", scores[m], 100.0 * sum(x[m].fmeasure for x in r) / len(r), 1e-6)
            bleu = sacrebleu.corpus_bleu([p["prediction"] for p in rows], [[p["reference"] for p in rows]]).score
            close(f"{out} {s} bleu", scores["bleu"], bleu, 1e-6)
    return rouge_scorer is not None


def check_table(p, systems, metric_names):
    lines = p.stdout.splitlines()
    head = [l for l in lines if l.split()[:1] == ["system"]]
    if not head or head[0].split()[1:] != metric_names:
        fail(f"no table header with {metric_names} on stdout:\n{p.stdout}")
    for s in systems:
        row = [l for l in lines if l.split()[:1] == [s]]
        if not row or len(row[0].split()) != 1 + len(metric_names):
            fail(f"no table row for {s} on stdout:\n{p.stdout}")


def evaluate(tmp, label, compressor, data, task, n, extra=(), quiet=False):
    out = os.path.join(tmp, "eval", label)
    p = run("eval", "--compressor", compressor, "--data", data, "--max-examples", str(n), "--threads", "1",
            "--out", out, "--verify", *extra, *(["--quiet"] if quiet else []))
    systems = QA_SYSTEMS if task == "qa" else REGEN_SYSTEMS
    check_table(p, systems, ["em", "f1", "raw_em", "raw_f1"] if task == "qa" else
                ["rouge1", "rouge2", "rougeL", "bleu", "em"])
    if not quiet and not re.search(rf"eval {task} {n}/{n}", p.stderr):
        fail(f"{label}: no progress line on stderr:\n{p.stderr}")
    if not quiet and "comp_decode's greedy choices" not in p.stderr:
        fail(f"{label}: --verify reported nothing:\n{p.stderr}")
    metrics, preds = load_eval(out, task, n, systems)
    return out, metrics, preds


def run_eval(tmp, label, compressor, data, n, extra=()):
    """pith eval --quiet of the first n examples into tmp/eval/label: (folder, process, metrics.json,
    predictions.jsonl's lines), with no checks (the hard and press CLI tests make their own)."""
    out = os.path.join(tmp, "eval", label)
    p = run("eval", "--compressor", compressor, "--data", data, "--max-examples", str(n), "--threads", "1",
            "--out", out, "--quiet", *extra)
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    with open(os.path.join(out, "predictions.jsonl")) as f:
        preds = [json.loads(line) for line in f]
    return out, p, m, preds


def gold_variants(j, preds_by, index, original):
    """Gold answers made from the first run's predictions of record `index`, varied by j so the
    scores are partial: an exact prediction, a prefix, and normalisation variants."""
    def words(system):
        return [w for w in preds_by[(system, index)].split() if w.isprintable() and "\ufffd" not in w]
    comp, none = words("compressed"), words("none")
    golds = [original]
    if j % 3 == 0:
        golds += [preds_by[("full", index)], " ".join(comp[:2])]
    elif j % 3 == 1 and comp:
        golds += ["The " + comp[0].upper() + "!", "an " + " ".join(none[:3]) + " ."]
    elif none:
        golds += [" ".join(none) + "?", preds_by[("truncated", index)].strip()]
    return [g for g in golds if g.strip()]


def tiny_world(tmp):
    """A small synthetic world (pith data synth, 60 documents) and a random base model for its
    vocabulary: (tokenizer folder, model folder, docs.h5, qa.h5)."""
    world = os.path.join(tmp, "world")
    run("data", "synth", "--dir", world, "--docs", "60", "--seed", "7", "--threads", "1", "--val-fraction", "0.2",
        "--test-fraction", "0.1", "--quiet")
    tok_dir = os.path.join(world, "tokenizer")
    with open(os.path.join(tok_dir, "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = 1 + max(list(tj["model"]["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])])
    model = os.path.join(tmp, "model")
    make_model(model, vocab, 11)
    docs, qa = os.path.join(world, "docs.h5"), os.path.join(world, "qa.h5")
    return tok_dir, model, docs, qa


def tiny_500x(tmp, k):
    """A small synthetic world, a random base model for its vocabulary, and a 500x compressor of k
    tokens pretrained and finetuned for 2 steps each, both exported: (tokenizer folder, model folder,
    docs.h5, qa.h5, pretrain export, finetune export). For the eval CLI tests that need a compressor
    but not its quality."""
    tok_dir, model, docs, qa = tiny_world(tmp)
    common = [f"model_name_or_path={model}", f"tokenizer={tok_dir}", f"num_compress_tokens={k}", "cutoff_len=64",
              "max_target_len=32", "per_device_train_batch_size=4", "lora_rank=4", "lora_alpha=8",
              "lora_dropout=0.0", "learning_rate=3e-3", "warmup_steps=1", "logging_steps=1", "eval_batches=1",
              "threads=1", "max_steps=2", "method=500x"]
    pre, ft = os.path.join(tmp, "pre"), os.path.join(tmp, "ft")
    run("pretrain", *common, f"train_file={docs}", f"output_dir={pre}")
    run("finetune", *common, f"train_file={qa}", f"init_from={pre}", f"output_dir={ft}")
    exp_pre, exp_ft = pre + "_export", ft + "_export"
    run("export", "--run", pre, "--out", exp_pre)
    run("export", "--run", ft, "--out", exp_ft)
    return tok_dir, model, docs, qa, exp_pre, exp_ft


def main():
    harness.pith_bin(from_argv=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir, model, docs, qa = tiny_world(tmp)
        world = os.path.dirname(tok_dir)
        common = [f"model_name_or_path={model}", f"tokenizer={tok_dir}", "num_compress_tokens=3", "cutoff_len=32",
                  "max_target_len=32", "per_device_train_batch_size=4", "lora_rank=4", "lora_alpha=8",
                  "lora_dropout=0.0", "learning_rate=3e-3", "warmup_steps=1", "logging_steps=1", "eval_batches=1",
                  "threads=1", "max_steps=3"]

        first = None
        for method, policy in [("500x", "consistent"), ("500x", "reference"), ("icae", "reference")]:
            tag = f"{method}_{policy}"
            pre, ft = os.path.join(tmp, f"pre_{tag}"), os.path.join(tmp, f"ft_{tag}")
            run("pretrain", *common, f"method={method}", f"position_policy={policy}", f"train_file={docs}",
                f"output_dir={pre}")
            run("finetune", *common, f"method={method}", f"position_policy={policy}", f"train_file={qa}",
                f"init_from={pre}", f"output_dir={ft}")
            exp_pre, exp_ft = pre + "_export", ft + "_export"
            run("export", "--run", pre, "--out", exp_pre)
            run("export", "--run", ft, "--out", exp_ft)

            out, m, preds = evaluate(tmp, f"qa_{tag}", exp_ft, qa, "qa", 6)
            rescore_qa(out, m, preds)
            if m["compressor"]["method"] != method or m["compressor"]["k"] != 3 or m["split"] != "val":
                fail(f"{out}: compressor {m['compressor']}, split {m['split']}")
            out, m, preds = evaluate(tmp, f"regen_{tag}", exp_pre, docs, "regen", 4, quiet=True)
            full_checks = rescore_regen(out, m, preds)
            refs = {p["reference"] for p in preds}
            if len(refs) != 4 or any(not r for r in refs):
                fail(f"{out}: references {refs}")
            print(f"ok {method} positions={policy}: qa and regen evaluated, cached generation = comp_decode, "
                  f"scores recomputed ({'with' if full_checks else 'without'} rouge-score/sacrebleu)")
            if first is None:
                first = (exp_ft, ft, {(p["system"], p["index"]): p["prediction"] for p in preds_of(tmp, tag)})

        # Non-zero QA scores: golds taken from the first run's predictions, in a second QA corpus.
        exp_ft, ft, preds_by = first
        with open(os.path.join(world, "qa.jsonl")) as f:
            records = [json.loads(line) for line in f]
        evaluated = sorted({i for _, i in preds_by})
        lines = []
        for i, r in enumerate(records):
            answers = [a["text"] for a in r["answers"]]
            if i in evaluated:
                answers = gold_variants(evaluated.index(i), preds_by, i, answers[0])
            lines.append(json.dumps({"id": r["id"], "context": r["context"], "question": r["question"],
                                     "answers": answers}))
        qa2_jsonl, qa2 = os.path.join(tmp, "qa2.jsonl"), os.path.join(tmp, "qa2.h5")
        with open(qa2_jsonl, "w") as f:
            f.write("\n".join(lines) + "\n")
        run("data", "ingest", "--format", "qa", "--tokenizer", tok_dir, "--out", qa2, "--threads", "1", "--quiet",
            "--val-fraction", "0.2", "--test-fraction", "0.1", qa2_jsonl)
        out_exp, m_exp, preds = evaluate(tmp, "qa2_export", exp_ft, qa2, "qa", 6)
        again = {(p["system"], p["index"]): p["prediction"] for p in preds}
        if again != preds_by:
            fail("the same contexts and questions gave other predictions on the second corpus")
        best = rescore_qa(out_exp, m_exp, preds)
        if not best > 0 or not any(v is not None for v in m_exp["retained"].values()):
            fail(f"{out_exp}: the crafted golds gave no non-zero score / retained ratio: {m_exp}")
        print(f"SQuAD v1.1 EM/F1 and raw EM/F1 recomputed from predictions.jsonl (best {best:.2f}), "
              f"retained {m_exp['retained']}")

        # The run folder: exported into OUT/export, the same scores; again into the same OUT.
        for _ in range(2):
            out_run, m_run, _ = evaluate(tmp, "qa2_run", ft, qa2, "qa", 6, quiet=True)
            if m_run["systems"] != m_exp["systems"]:
                fail(f"the run folder and its export score differently:\n{m_run['systems']}\n{m_exp['systems']}")
            if not os.path.isfile(os.path.join(out_run, "export", "manifest.json")):
                fail(f"{out_run}: no export/ of the run")
        # Default output folder, and a run without a compressor.
        p = run("eval", "--compressor", exp_ft, "--data", qa2, "--max-examples", "2", "--threads", "1", "--quiet",
                "--baselines", "none", cwd=tmp)
        default = os.path.join(tmp, "runs", "eval", "qa2__model__500x__k3")
        m, _ = load_eval(default, "qa", 2, ["compressed", "none"])
        out = os.path.join(tmp, "eval", "nocomp")
        run("eval", "--compressor", "none", "--model", model, "--tokenizer", tok_dir, "--data", qa2, "--k", "5",
            "--max-examples", "2", "--threads", "1", "--quiet", "--out", out)
        m, _ = load_eval(out, "qa", 2, ["full", "none", "truncated"])
        if m["compressor"] != {"method": "none", "k": 5}:
            fail(f"{out}: compressor {m['compressor']}")
        print("a run folder scores as its export; default runs/eval/NAME; --compressor none runs the baselines")

        # Errors: one line, the right exit code, no output folder.
        bad = os.path.join(tmp, "eval", "bad")
        cases = [
            (["--compressor", exp_ft, "--data", qa, "--bogus"], 2, "unknown option"),
            (["--compressor", exp_ft], 2, "--data"),
            (["--compressor", exp_ft, "--data", os.path.join(tmp, "nope.h5")], 1, "nope.h5"),
            (["--compressor", exp_ft, "--data", os.path.join(world, "qa.jsonl")], 1, "not a pith corpus"),
            (["--compressor", exp_ft, "--data", docs, "--task", "qa"], 1, "does not apply"),
            (["--compressor", exp_ft, "--data", qa, "--baselines", "full,oracle"], 2, "unknown baseline 'oracle'"),
            (["--compressor", exp_ft, "--data", qa, "--bf16"], 2, "--bf16 needs --device cuda"),
            (["--compressor", exp_ft, "--data", qa, "--fused-kernels"], 2, "--fused-kernels needs --device cuda"),
            (["--compressor", exp_ft, "--data", qa, "--device", "cuda", "--bf16", "--verify"], 2, "--verify checks in f32"),
            (["--compressor", world, "--data", qa], 1, "neither an export folder"),
        ]
        for args, code, want in cases:
            p = run("eval", *args, "--out", bad, "--threads", "1", ok=False)
            err = p.stderr.strip().splitlines()
            if p.returncode != code or len(err) != 1 or not err[0].startswith("pith eval: ") or want not in err[0]:
                fail(f"pith eval {' '.join(args)}: exit {p.returncode} (want {code}), stderr {p.stderr!r}")
            if os.path.exists(bad):
                fail(f"pith eval {' '.join(args)} created {bad}")
        print(f"errors: {len(cases)} bad invocations rejected in one line each, nothing written")
        # Another tokenizer: a warning that the corpus was made by another one, then the refusal
        # (GPT-2's bos/pad id is beyond this model's vocabulary). Uses the GPT-2 tokenizer asset.
        gpt2 = os.path.join(harness.assets_dir(), "tokenizers", "gpt2")
        if os.path.isdir(gpt2):
            p = run("eval", "--compressor", exp_ft, "--data", qa, "--tokenizer", gpt2, "--out", bad, "--threads", "1",
                    ok=False)
            err = p.stderr.strip().splitlines()
            if (p.returncode != 1 or len(err) != 2 or "was tokenized by another tokenizer" not in err[0]
                    or "is beyond the model's" not in err[1] or os.path.exists(bad)):
                fail(f"pith eval --tokenizer {gpt2}: exit {p.returncode}, stderr {p.stderr!r}")
            print("another tokenizer: warned about, and refused for its special ids")
        else:
            print(f"another tokenizer: skipped ({gpt2} absent)")
    print("eval_cli: pith eval scores match the official SQuAD rules; every system, file and error checked")
    return 0


def preds_of(tmp, tag):
    with open(os.path.join(tmp, "eval", f"qa_{tag}", "predictions.jsonl")) as f:
        return [json.loads(line) for line in f]


if __name__ == "__main__":
    sys.exit(main())
