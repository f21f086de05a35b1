"""`pith eval --press`: KV presses as systems in one table with the baselines, the soft compressor and
a hard system, with the KV bytes of every system, on the tiny world eval_cli.py builds (pith data
synth, a random LLaMA folder, a few pretrain/finetune steps of 500x, exported).

- qa with --hard llmlingua:2 and --press snapkv:0:window_size=4, snapkv:0.5:window_size=4,kernel_size=3,
  adakv-snapkv:0.5:window_size=4, knorm:0.75, snapkv:0.5:window_size=4:aware: every system is in
  metrics.json, predictions.jsonl and the table (with tokens, ratio, kv_KiB and ret_f1 columns);
  kv_bytes (mean per example) is, with E = layers × 2 × KV heads × head_dim × 4 bytes per entry,
  (1 + the context) × E for full and snapkv@0, 0 for none, k × E for compressed and the chain,
  (1 + the tokens read) × E for truncated and the hard system; each press line's kv_bytes is its
  kept entries': max(1, int(L × (1 − ratio))) × E with L = bos + that example's context (read from
  snapkv@0's line, which keeps all); the aware press keeps more (it also prefilled the question);
  snapkv@0 predicts exactly what full predicts; the press lines average to metrics.json's bytes;
  the table's kv_KiB is metrics.json's / 1024.
- The baselines score the same with and without --press; without it metrics.json has kv_bytes too.
- regen with --press snapkv:0.5:window_size=4 runs beside compressed, none and truncated.
- Errors, one `pith eval:` line, exit 2, nothing written: an unknown press, a ratio outside [0, 1),
  a window longer than every context (naming the record and window_size), a spec twice, :aware for
  regen.

usage: eval_press_cli.py PATH_TO_pith  (or PITH_BIN). Exit 0, 1 on failure, 77 when numpy is missing.
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
K = 3
PRESS = ("snapkv:0:window_size=4,snapkv:0.5:window_size=4,kernel_size=3, adakv-snapkv:0.5:window_size=4,"
         "knorm:0.75,snapkv:0.5:window_size=4:aware")
PRESS_NAMES = {"snapkv@0:window_size=4": 0, "snapkv@0.5:window_size=4,kernel_size=3": 0.5,
               "adakv-snapkv@0.5:window_size=4": 0.5, "knorm@0.75": 0.75}
AWARE = "snapkv@0.5:window_size=4+q"


evaluate = eval_cli.run_eval


def check_table(p, m, task):
    metrics = ["em", "f1", "raw_em", "raw_f1"] if task == "qa" else ["rouge1", "rouge2", "rougeL", "bleu", "em"]
    lines = p.stdout.splitlines()
    head = [l.split() for l in lines if l.split()[:1] == ["system"]]
    want = metrics + ["tokens", "ratio", "kv_KiB"] + (["ret_f1"] if task == "qa" and "full" in m["systems"] else [])
    if not head or head[0][1:] != want:
        fail(f"table header {head[:1]}, want system {want}:\n{p.stdout}")
    for s in m["systems"]:
        row = [l.split() for l in lines if l.split()[:1] == [s]]
        if not row or len(row[0]) != 1 + len(want):
            fail(f"no table row for {s} with {len(want)} columns:\n{p.stdout}")
        kib = float(row[0][1 + len(metrics) + 2])
        if abs(kib - m["kv_bytes"][s] / 1024) > 0.051:
            fail(f"{s}: the table says {kib} KiB, metrics.json {m['kv_bytes'][s]} bytes")


def entry_bytes(model):
    with open(os.path.join(model, "config.json")) as f:
        c = json.load(f)
    hd = c["hidden_size"] // c["num_attention_heads"]
    return c["num_hidden_layers"] * 2 * c["num_key_value_heads"] * hd * 4  # f32


def check_qa(tmp, exp_ft, qa, model, n):
    E = entry_bytes(model)
    out, p, m, preds = evaluate(tmp, "qa", exp_ft, qa, n, ["--hard", "llmlingua:2", "--press", PRESS])
    systems = ["compressed", "full", "none", "truncated", "llmlingua@2x", "llmlingua@2x+500x", *PRESS_NAMES, AWARE]
    if list(m["systems"]) != systems:
        fail(f"systems {list(m['systems'])}, want {systems}")
    eval_cli.load_eval(out, "qa", n, systems)
    eval_cli.rescore_qa(out, m, preds)
    ctx, tok, kv = m["context_tokens"], m["prompt_tokens"], m["kv_bytes"]
    want = {"full": (1 + ctx) * E, "none": 0, "compressed": K * E, "llmlingua@2x+500x": K * E,
            "truncated": (1 + tok["truncated"]) * E, "llmlingua@2x": (1 + tok["llmlingua@2x"]) * E,
            "snapkv@0:window_size=4": (1 + ctx) * E}
    for s, v in want.items():
        if abs(kv[s] - v) > 1e-6 * max(v, 1):
            fail(f"kv_bytes {s} = {kv[s]}, want {v} (context {ctx}, E {E})")
    by = {(x["system"], x["index"]): x for x in preds}
    indices = sorted({x["index"] for x in preds})
    for s in (*PRESS_NAMES, AWARE):
        rows = [by[(s, i)]["kv_bytes"] for i in indices]
        if abs(sum(rows) / n - kv[s]) > 1e-6 * kv[s]:
            fail(f"{s}: predictions.jsonl's kv_bytes {rows} do not average to {kv[s]}")
        if tok[s] != ctx:
            fail(f"prompt_tokens {s} = {tok[s]}: a press reads the whole context ({ctx})")
    for i in indices:
        L = by[("snapkv@0:window_size=4", i)]["kv_bytes"] / E  # bos + the context: all kept at ratio 0
        if L != int(L) or L < 2:
            fail(f"record {i}: snapkv@0 kept {L} entries per layer and head")
        for s, r in PRESS_NAMES.items():
            got, keep = by[(s, i)]["kv_bytes"], max(1, int(L * (1 - r)))
            if got != keep * E:
                fail(f"record {i}: {s} kept {got} bytes, want {keep} entries × {E} (L {L})")
        if not by[(AWARE, i)]["kv_bytes"] > by[("snapkv@0.5:window_size=4,kernel_size=3", i)]["kv_bytes"]:
            fail(f"record {i}: the aware press kept no more than the agnostic one (it also read the question)")
        if by[("snapkv@0:window_size=4", i)]["prediction"] != by[("full", i)]["prediction"]:
            fail(f"record {i}: snapkv@0 predicts {by[('snapkv@0:window_size=4', i)]['prediction']!r}, full "
                 f"{by[('full', i)]['prediction']!r}")
    # knorm keeping a quarter of the cache reads otherwise than full: some prediction differs
    if all(by[("knorm@0.75", i)]["prediction"] == by[("full", i)]["prediction"] for i in indices):
        fail("knorm@0.75 predicts exactly as full on every example")
    if any("kv_bytes" in x for x in preds if x["system"] not in (*PRESS_NAMES, AWARE)):
        fail("kv_bytes on a line that is not a press's")
    if set(m["press"]) != {*PRESS_NAMES, AWARE} or not m["press"][AWARE]["question_aware"] \
            or m["press"]["knorm@0.75"] != {"spec": "knorm:0.75", "question_aware": False}:
        fail(f"metrics.json press: {m['press']}")
    check_table(p, m, "qa")
    print(p.stdout)
    print(f"ok qa: {len(systems)} systems in one table; context {ctx:.1f} tokens, KV bytes: "
          + ", ".join(f"{s} {kv[s]:.0f}" for s in systems))

    _, p0, m0, _ = evaluate(tmp, "qa_plain", exp_ft, qa, n)
    for s in m0["systems"]:
        if m0["systems"][s] != m["systems"][s] or m0["kv_bytes"][s] != kv[s]:
            fail(f"{s} scores otherwise beside the presses: {m0['systems'][s]} vs {m['systems'][s]}")
    if "press" in m0 or "kv_KiB" in p0.stdout:
        fail("metrics.json has 'press', or the table kv_KiB, without --press")
    print("ok: adding press systems changes no other row; kv_bytes without --press too")


def main():
    harness.pith_bin(from_argv=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir, model, docs, qa, exp_pre, exp_ft = eval_cli.tiny_500x(tmp, K)

        check_qa(tmp, exp_ft, qa, model, 6)

        # ---- regen ----
        out, p, m, preds = evaluate(tmp, "regen", exp_pre, docs, 4, ["--press", "snapkv:0.5:window_size=4"])
        systems = ["compressed", "none", "truncated", "snapkv@0.5:window_size=4"]
        if list(m["systems"]) != systems:
            fail(f"regen systems {list(m['systems'])}, want {systems}")
        eval_cli.load_eval(out, "regen", 4, systems)
        eval_cli.rescore_regen(out, m, preds)
        check_table(p, m, "regen")
        E = entry_bytes(model)
        if m["kv_bytes"]["compressed"] != K * E or m["kv_bytes"]["none"] != 0 \
                or not 0 < m["kv_bytes"]["snapkv@0.5:window_size=4"] <= (1 + m["context_tokens"]) * E / 2:
            fail(f"regen kv_bytes {m['kv_bytes']} (context {m['context_tokens']}, E {E})")
        print(f"ok regen: {systems}, kv_bytes {m['kv_bytes']}")

        # ---- errors ----
        bad = os.path.join(tmp, "eval", "bad")
        cases = [
            (exp_ft, qa, ["--press", "foo:0.5"], "unknown press 'foo'"),
            (exp_ft, qa, ["--press", "snapkv:1.5"], "outside [0, 1)"),
            (exp_ft, qa, ["--press", "snapkv:0.5:colour=red"], "colour"),
            (exp_ft, qa, ["--press", "knorm:0.5,knorm:0.5"], "knorm@0.5 twice"),
            (exp_ft, qa, ["--press", "snapkv:0.5:window_size=200"], "window_size 200"),
            (exp_ft, qa, ["--press", "snapkv:0.5:window_size=200"], "--press snapkv:0.5:window_size="),
            (exp_pre, docs, ["--press", "knorm:0.5:aware"], "is for qa"),
        ]
        window_msg = ""
        for comp, data, args, want in cases:
            p = run("eval", "--compressor", comp, "--data", data, *args, "--max-examples", "2", "--out", bad,
                    "--threads", "1", "--quiet", ok=False)
            err = p.stderr.strip().splitlines()
            if p.returncode != 2 or len(err) != 1 or not err[0].startswith("pith eval: ") or want not in err[0]:
                fail(f"pith eval {' '.join(args)}: exit {p.returncode} (want 2, '{want}'), stderr {p.stderr!r}")
            if os.path.exists(bad):
                fail(f"pith eval {' '.join(args)} created {bad}")
            if "window_size=200" in args[1]:
                window_msg = err[0]
        print(f"errors: {len(cases)} bad invocations rejected in one line each (exit 2), nothing written; e.g.\n"
              f"  {window_msg}")
    print("eval_press_cli: KV presses beside the baselines, the soft compressor and hard compression, with KV bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
