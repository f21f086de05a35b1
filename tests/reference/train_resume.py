"""End-to-end `pith pretrain` on the real stories260K and TinyStories: the loss falls, an
interrupted-and-resumed run has exactly the loss curve of an uninterrupted one (CPU, bit-exact) and
one history in metrics.jsonl, SIGTERM saves and exits 143, finetune starts from a pretrain run, and
bad configs fail with clear one-line errors and leave no run folder.

Run by ctest with PITH_BIN (the pith binary) and PITH_ASSETS. With `--device cuda` (scripts/gpu-check)
the runs are on the GPU in bf16, and resume must be bit-exact there too.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import harness

run = harness.pith


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    steps = [r["step"] for r in rows if "loss" in r]
    if len(steps) != len(set(steps)):
        harness.fail(f"{run_dir}/metrics.jsonl logs a step twice: {steps}")
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def sigterm_run(common, out):
    """A long run stopped by SIGTERM once it has logged a step: it saves a checkpoint and exits 143."""
    cmd = [harness.pith_bin(), "pretrain", *common, "max_steps=100000", f"output_dir={out}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, t0 = os.path.join(out, "metrics.jsonl"), time.time()
    while not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        if p.poll() is not None or time.time() - t0 > 120:
            p.kill()
            harness.fail(f"the run ended or logged nothing: {p.communicate()[1]}")
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out_s, err_s = p.communicate(timeout=120)
    if p.returncode != 128 + signal.SIGTERM or "saving a checkpoint" not in out_s:
        harness.fail(f"SIGTERM: exit {p.returncode} (want 143), stdout {out_s[-300:]!r}, stderr {err_s!r}")
    if not os.path.isdir(os.path.join(out, "checkpoints")):
        harness.fail("SIGTERM: no checkpoint saved")
    print("SIGTERM: checkpoint saved, exit 143")


def main():
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    harness.pith_bin()
    harness.stories_assets()
    with tempfile.TemporaryDirectory() as tmp:
        model, corpus = harness.stories_run_inputs(tmp)
        common = [f"model_name_or_path={model}", f"train_file={corpus}", "num_compress_tokens=2", "cutoff_len=32",
                  "per_device_train_batch_size=4", "lora_rank=4", "lora_alpha=8", "lora_dropout=0.1",
                  "learning_rate=3e-3", "warmup_steps=3", "logging_steps=1", "eval_batches=2", "threads=1"]
        if device != "cpu":
            common += [f"device={device}", "bf16=true"]
        full, part = os.path.join(tmp, "full"), os.path.join(tmp, "part")
        run("pretrain", *common, "max_steps=16", f"output_dir={full}")
        run("pretrain", *common, "max_steps=8", "save_steps=4", f"output_dir={part}")
        # What a run killed (kill -9) after step 11 leaves: the steps past its last checkpoint (8)
        # logged, and a line cut short. The resume drops them and logs those steps once, anew.
        with open(os.path.join(part, "metrics.jsonl"), "a") as f:
            for step in (9, 10, 11):
                f.write(json.dumps({"step": step, "loss": 99.0, "grad_norm": 1.0, "lr": 0.001}) + "\n")
            f.write('{"step": 12, "lo')
        run("pretrain", *common, "max_steps=16", f"output_dir={part}", "--resume")
        a, b = losses(full), losses(part)
        if sorted(a) != list(range(1, 17)) or sorted(b) != list(range(1, 17)):
            harness.fail(f"steps logged {sorted(a)} and {sorted(b)}")
        for step in range(1, 17):
            if a[step] != b[step]:
                harness.fail(f"step {step}: loss {a[step]!r} uninterrupted, {b[step]!r} resumed")
        print(f"resume on {device}: 16 losses identical to the bit, each logged once (first {a[1]:.4f}, "
              f"last {a[16]:.4f})")
        first, last = sum(a[s] for s in range(1, 5)) / 4, sum(a[s] for s in range(13, 17)) / 4
        if not last < first:
            harness.fail(f"the loss did not fall: {first:.4f} -> {last:.4f}")

        # Activation checkpointing: the layers run again in the backward pass, the LoRA dropout masks
        # replayed, so the run is the same run (on the CPU to the bit; CUDA's attention backward is not
        # deterministic, so there to 1e-3).
        ckpt = os.path.join(tmp, "ckpt")
        run("pretrain", *common, "max_steps=16", "gradient_checkpointing=true", f"output_dir={ckpt}")
        c = losses(ckpt)
        tol = 0 if device == "cpu" else 1e-3
        for step in range(1, 17):
            if abs(c[step] - a[step]) > tol * abs(a[step]):
                harness.fail(f"step {step}: loss {c[step]!r} with gradient_checkpointing, {a[step]!r} without")
        print(f"gradient_checkpointing on {device}: the 16 losses of the run without it"
              f"{' to the bit' if device == 'cpu' else ' to 1e-3'}")

        # The fused layer kernels (CUDA): the same run to bf16 rounding (the kernels round where the
        # composite ops do; sums in another order).
        if device != "cpu":
            fused = os.path.join(tmp, "fused")
            run("pretrain", *common, "max_steps=16", "fused_kernels=true", f"output_dir={fused}")
            fl = losses(fused)
            worst = max(abs(fl[s] - a[s]) / abs(a[s]) for s in range(1, 17))
            if worst > 2e-2:
                harness.fail(f"fused_kernels: losses {fl} against {a} without (worst {worst:.1e})")
            print(f"fused_kernels on {device}: the 16 losses within {worst:.1e} of the run without them")

        # The LM head's loss 7 tokens at a time (and again in the backward pass): the same run to
        # float rounding (sums in another order), on both methods.
        worst = 0.0
        for method in ("500x", "icae"):
            runs = {}
            for chunk in (0, 7):
                out = os.path.join(tmp, f"chunk_{method}_{chunk}")
                run("pretrain", *common, f"method={method}", "max_steps=8", f"loss_chunk_rows={chunk}",
                    f"output_dir={out}")
                runs[chunk] = losses(out)
            base = runs[0]
            for step in range(1, 9):
                d = abs(runs[7][step] - base[step]) / abs(base[step])
                worst = max(worst, d)
                if d > (1e-5 if device == "cpu" else 2e-3):
                    harness.fail(f"{method} step {step}: loss {runs[7][step]!r} with loss_chunk_rows=7, {base[step]!r} without")
        print(f"loss_chunk_rows=7 on {device}: 500x and ICAE losses within {worst:.1e} of the runs without it")

        # ICAE pretrain, then finetune from it on a QA file made of the same stories.
        icae = os.path.join(tmp, "icae")
        run("pretrain", *common, "method=icae", "max_steps=4", f"output_dir={icae}")
        qa = os.path.join(tmp, "qa.jsonl")
        with open(harness.asset("data/tinystories/tinystories_val_head.txt")) as f:
            stories = [s.strip() for s in f.read().split("\n\n") if len(s.split()) > 12][:60]
        with open(qa, "w") as f:
            for i, s in enumerate(stories):
                words = s.split()
                f.write(json.dumps({"id": f"q{i}", "context": s, "question": "What is the third word?",
                                    "answer": words[2]}) + "\n")
        qa_h5 = os.path.join(tmp, "qa.h5")
        run("data", "ingest", "--format", "qa", "--quiet", "--skip-bad", "--val-fraction", "0.2", "--tokenizer", model,
            "--out", qa_h5, qa)
        ft = os.path.join(tmp, "ft")
        p = run("finetune", *[c for c in common if not c.startswith("train_file")], f"train_file={qa_h5}",
                "method=icae", "max_steps=3", "max_target_len=24", f"init_from={icae}", f"output_dir={ft}")
        if "init_from" not in p.stdout:
            harness.fail(f"finetune did not start from the pretrain run:\n{p.stdout}")
        print("icae pretrain -> finetune ran")

        # Bad configs: one line that says what is wrong.
        bad = [
            (["learning_rte=1"], "unknown key 'learning_rte' (did you mean learning_rate?)"),
            (["method=700x"], "method: '700x' is not one of 500x, icae"),
            (["lr_scheduler_type=cosinus"], "lr_scheduler_type: 'cosinus' is not one of constant, cosine, linear"),
            (["learning_rate=-1"], "learning_rate: -1.0 is out of range (allowed: [0,inf))"),
            (["max_steps=0"], "max_steps: 0 is out of range (allowed: -1 or [1,inf))"),
            (["per_device_train_batch_size=0"], "per_device_train_batch_size: 0 is out of range"),
            (["per_device_train_batch_size=four"], "'four' is not an integer"),
            (["model_name_or_path=/nonexistent"], "/nonexistent"),
        ]
        if device == "cpu":
            bad.append((["fused_kernels=true"], "fused_kernels: the fused kernels are CUDA kernels; device is cpu"))
        for extra, want in bad:
            args = [c for c in common if not any(c.startswith(e.split("=")[0] + "=") for e in extra)]
            out = os.path.join(tmp, "bad")
            p = run("pretrain", *args, *extra, f"output_dir={out}", ok=False)
            if p.returncode == 0 or want not in p.stderr:
                harness.fail(f"{extra}: exit {p.returncode}, stderr {p.stderr!r} lacks {want!r}")
            if os.path.exists(out):
                harness.fail(f"{extra}: the refused run left {out} behind")
        print(f"{len(bad)} bad configs rejected with clear messages, no run folder left")

        if device == "cpu":
            sigterm_run(common, os.path.join(tmp, "term"))


if __name__ == "__main__":
    main()
