"""`pith demo --quick`: every stage of the demo runs and leaves what the next one reads (world,
base model, four training runs, four exports, four evaluations, results.md); a second run on the
same folder skips every finished stage; bad options fail with a usage message. The numbers of a
quick run mean nothing (a few steps per stage), so only their presence and range are checked.

Run by ctest with PITH_BIN (the pith binary).
"""
import json
import os
import tempfile

import harness

run = harness.pith


def main():
    harness.pith_bin()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "demo")
        p = run("demo", "--quick", "--threads", "1", "--out", out)
        stages = ["world", "lm_sentence", "lm_window", "lm", "500x_pretrain", "500x_finetune", "icae_pretrain", "icae_finetune"]
        for method in ("500x", "icae"):
            stages += [f"{method}_pretrain_export", f"{method}_regen_eval", f"{method}_finetune_export",
                       f"{method}_qa_eval"]
        for s in stages:
            if f"[{s}," not in p.stdout or not os.path.exists(os.path.join(out, ".done", s)):
                harness.fail(f"stage {s} did not run or is not marked done:\n{p.stdout[-3000:]}")
        for path in ["world/qa.h5", "world/docs.h5", "world/qa_sentence.h5", "world/qa_window.h5",
                     "lm/model/config.json", "lm/model/tokenizer.json",
                     "export/500x_finetune/adapter_model.safetensors", "export/icae_pretrain/manifest.json"]:
            if not os.path.exists(os.path.join(out, path)):
                harness.fail(f"{path} missing")
        with open(os.path.join(out, "export/icae_finetune/manifest.json")) as f:
            manifest = json.load(f)
        if manifest["method"] != "icae" or manifest["k"] != 16:
            harness.fail(f"manifest {manifest}")
        systems = {"qa": {"compressed", "full", "none", "truncated", "no_layer0"}, "docs": {"compressed", "none", "truncated"}}
        for method in ("500x", "icae"):
            for data in ("qa", "docs"):
                with open(os.path.join(out, "eval", f"{data}__lm__{method}__k16", "metrics.json")) as f:
                    m = json.load(f)
                want = systems[data] if method == "500x" else {"compressed"}
                if set(m["systems"]) != want:
                    harness.fail(f"{method} {data}: systems {sorted(m['systems'])}, want {sorted(want)}")
                for system, scores in m["systems"].items():
                    for name, v in scores.items():
                        if not 0 <= v <= 100:
                            harness.fail(f"{method} {data} {system} {name} = {v}")
        with open(os.path.join(out, "results.md")) as f:
            table = f.read()
        for row in ("full context", "no context", "without layer 0", "500x compressor", "ICAE", "decoder with no prefix"):
            if row not in table or row not in p.stdout:
                harness.fail(f"results table lacks '{row}':\n{table}")
        print(f"demo --quick: {len(stages)} stages ran; exports, evaluations and results.md are in place")

        p = run("demo", "--quick", "--threads", "1", "--out", out)
        if p.stdout.count("(done in an earlier run: skipped)") != len(stages):
            harness.fail(f"a second run redid finished stages:\n{p.stdout[-3000:]}")
        print("demo --quick: a second run skips every finished stage and prints the table again")

        for bad in (["--k", "0"], ["--docs", "5"], ["--frobnicate"], ["--out"]):
            p = run("demo", *bad, ok=False)
            if p.returncode != 2 or "usage: pith demo" not in p.stderr:
                harness.fail(f"pith demo {bad}: exit {p.returncode}, stderr {p.stderr!r}")
        p = run("demo", "--quick", "--fresh", "--out", out, ok=False)
        if p.returncode != 1 or "exists" not in p.stderr:
            harness.fail(f"--fresh on an existing folder: exit {p.returncode}, {p.stderr!r}")
        print("demo: bad options rejected with a usage message; --fresh refuses an existing folder")


if __name__ == "__main__":
    main()
