"""Data-parallel `pith lm` through torch.distributed (Gloo on CPU), launched by torchrun: two ranks
with per-device batch B train 20 steps whose losses (metrics.jsonl) and final weights (RUN/model)
equal a one-process run with batch 2B, to 1e-5, with the gradients' all-reduce overlapped with the
backward pass (the default) and without (ddp_overlap=false); so do the validation losses, computed by
each rank on its share of the val split and all-reduced. Only rank 0 writes. A SIGTERM to one rank stops both
after the same step with one checkpoint, and torchrun --resume ends bit for bit where the
uninterrupted run ended (a SIGTERM to torchrun, which passes it on, too); resumed by one process with batch 2B, it ends there too (1e-5). A rank
killed with SIGKILL makes the other exit non-zero with an error that says so, in under 60 s; a bad
launch environment is refused in one line that names the variable, and a rank that never comes ends
the rendezvous after PITH_DIST_TIMEOUT. With the stories assets, 500x pretraining (LoRA + compress embeddings) is
checked the same way, and with LoRA dropout on 2 ranks a SIGTERM and resume is bit for bit. `pith
bench train-step` under torchrun runs its step on each rank with the all-reduce and reports the
one-process loss with the ranks' tokens/s summed.

Run by ctest with PITH_BIN (the pith binary); skips when the venv has no torchrun or pith was built
without Gloo's headers.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import harness
import tiny_world

B, ACCUM, STEPS = 2, 2, 20
VB = 9  # per-device batch of the validation runs: 40 val rows do not divide into it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def weights(run_dir):
    from safetensors.numpy import load_file

    return load_file(os.path.join(run_dir, "model", "model.safetensors"))


def rank_env(rank, port, **extra):
    env = dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), **extra)
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    return env


def term_one_rank(args, run_dir, steps):
    """Two ranks of args, launched by hand, SIGTERM to rank 1 once rank 0 has logged a step: both must
    stop with 143 after the same step, rank 0 saving the one checkpoint. Returns that step."""
    port = free_port()
    ranks = [subprocess.Popen(args, env=rank_env(r, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    first = ranks[0].stdout.readline()
    while first and not first.startswith("step "):
        first = ranks[0].stdout.readline()
    ranks[1].send_signal(signal.SIGTERM)
    outs = [r.communicate(timeout=120) for r in ranks]
    codes = [r.returncode for r in ranks]
    harness.check(codes == [143, 143], f"both ranks stop on one rank's SIGTERM with 143: {codes} {outs[0][1]} {outs[1][1]}")
    stopped = metrics(run_dir)[-1]["step"]
    ckpts = os.listdir(os.path.join(run_dir, "checkpoints"))
    harness.check(ckpts == [f"step-{stopped:08d}"], f"one checkpoint, at the last logged step {stopped}: {ckpts}")
    harness.check(f"saving a checkpoint at step {stopped}" in outs[0][0], "rank 0 says where it stopped")
    harness.check(stopped < steps, f"the signal came before the end (step {stopped})")
    return stopped


def torchrun_cmd(torchrun, *args):
    return [torchrun, "--no-python", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
            str(free_port()), harness.pith_bin(), *args]


def pretrain(tmp, torchrun):
    """The compressor path: 500x pretraining of stories260K's LoRA and compress embeddings, 2 ranks of
    batch 2 against one process of batch 4 (needs the stories assets; said and left out without)."""
    if not (harness.asset("models/stories260K.bin", required=False) and harness.asset("models/tok512.bin", required=False)):
        print(f"pretrain part left out: no stories260K/tok512 under {harness.assets_dir()}")
        return
    from safetensors.numpy import load_file

    model, corpus = harness.stories_run_inputs(tmp)
    common = [f"model_name_or_path={model}", f"train_file={corpus}", "num_compress_tokens=2", "cutoff_len=32",
              "lora_rank=4", "lora_alpha=8", "lora_dropout=0", "gradient_accumulation_steps=2", "learning_rate=3e-3",
              "warmup_steps=3", "logging_steps=1", "eval_batches=2", "threads=1", "max_steps=10"]
    one, two = os.path.join(tmp, "pt_one"), os.path.join(tmp, "pt_two")
    harness.pith("pretrain", *common, "per_device_train_batch_size=4", f"output_dir={one}")
    harness.run([torchrun, "--no-python", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                 str(free_port()), harness.pith_bin(), "pretrain", *common, "per_device_train_batch_size=2",
                 f"output_dir={two}"], text=True, timeout=300)
    m1, m2 = metrics(one), metrics(two)
    harness.check([m["step"] for m in m1] == [m["step"] for m in m2], "pretrain: the same lines")
    keys = ("loss", "grad_norm", "val_loss", "val_loss_no_prefix")
    harness.check(sum("val_loss_no_prefix" in m for m in m2) == 1, f"pretrain: a final validation line: {m2[-1]}")
    ld = max(abs(a[k] - b[k]) / max(1.0, abs(a[k])) for a, b in zip(m1, m2) for k in keys if k in a)
    harness.check(ld <= 1e-5, f"pretrain: losses, gradient norms or validation losses differ by {ld}")
    ck = os.path.join("checkpoints", "step-00000010", "params.safetensors")
    p1, p2 = load_file(os.path.join(one, ck)), load_file(os.path.join(two, ck))
    wd = max(float(abs(p1[k].astype("float64") - p2[k].astype("float64")).max()) for k in p1)
    harness.check(sorted(p1) == sorted(p2) and wd <= 1e-5, f"pretrain: trainable weights differ by {wd}")
    print(f"pretrain (500x, LoRA + compress embeddings): 2 ranks = 1 process, losses and validation losses "
          f"(with and without the prefix) within {ld:.1e}, "
          f"{len(p1)} trainable tensors within {wd:.1e}")

    # Activation checkpointing on 2 ranks: the overlapped all-reduce's hooks fire inside the backward
    # pass's second run of each layer, and the run is the run without checkpointing.
    ck2 = os.path.join(tmp, "pt_two_ckpt")
    harness.run(torchrun_cmd(torchrun, "pretrain", *common, "per_device_train_batch_size=2",
                             "gradient_checkpointing=true", f"output_dir={ck2}"), text=True, timeout=300)
    mc, pc = metrics(ck2), load_file(os.path.join(ck2, ck))
    harness.check([[m.get(k) for k in keys] for m in mc] == [[m.get(k) for k in keys] for m in m2],
                  "pretrain with gradient_checkpointing on 2 ranks: losses differ from the run without")
    harness.check(all((pc[k] == p2[k]).all() for k in p2), "gradient_checkpointing on 2 ranks: weights differ")
    print("pretrain with gradient_checkpointing on 2 ranks: the run without it, bit for bit")

    # LoRA dropout on 2 ranks: interrupted and resumed, the run draws the masks the uninterrupted one drew.
    drop = [c for c in common if not c.startswith("lora_dropout")] + ["lora_dropout=0.1", "per_device_train_batch_size=2"]
    full, part = os.path.join(tmp, "pt_drop"), os.path.join(tmp, "pt_drop_part")
    harness.run(torchrun_cmd(torchrun, "pretrain", *drop, f"output_dir={full}"), text=True, timeout=300)
    stopped = term_one_rank([harness.pith_bin(), "pretrain", *drop, f"output_dir={part}"], part, 10)
    harness.run(torchrun_cmd(torchrun, "pretrain", *drop, f"output_dir={part}", "--resume"), text=True, timeout=300)
    mf, mp = metrics(full), metrics(part)
    harness.check([m.get("loss") for m in mf] == [m.get("loss") for m in mp], "pretrain with dropout: resumed losses")
    pf, pp = load_file(os.path.join(full, ck)), load_file(os.path.join(part, ck))
    harness.check(all((pf[k] == pp[k]).all() for k in pf), "pretrain with dropout: resumed weights bit for bit")
    harness.check(any(abs(a["loss"] - b["loss"]) > 1e-4 for a, b in zip(m2, mf) if "loss" in a),
                  "dropout changed the losses (the check above can fail)")
    print(f"pretrain with lora_dropout 0.1 on 2 ranks, SIGTERM at step {stopped}, resumed: bit for bit")


def bench_under_torchrun(torchrun, pith, shape):
    """pith bench train-step on 2 Gloo ranks (each the same batch, the gradients all-reduced as the
    trainer does): rank 0 alone reports, world 2, the last step's loss of one process."""
    args = [pith, "bench", "train-step", "--config", shape, "--k", "4", "--batch", "2", "--seq", "16", "--steps", "2",
            "--warmup", "0", "--threads", "1", "--json"]
    one = json.loads(harness.run(args, text=True, timeout=120).stdout)
    p = harness.run([torchrun, "--no-python", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                     str(free_port()), *args], text=True, timeout=300)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    harness.check(len(lines) == 1, f"rank 0 alone reports: {p.stdout[-800:]}")
    two = json.loads(lines[0])
    harness.check(one["world_size"] == 1 and not one["process_group"] and two["world_size"] == 2 and
                  two["process_group"], f"world sizes: {one} {two}")
    harness.check(abs(two["loss"] - one["loss"]) <= 1e-6 * abs(one["loss"]),
                  f"bench train-step on 2 ranks: loss {two['loss']}, one process {one['loss']}")
    print(f"bench train-step on 2 ranks: the one-process loss {one['loss']}, {two['tokens_per_s']:.0f} tokens/s summed")


def main():
    pith = harness.pith_bin()
    harness.require("h5py", "safetensors")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.access(torchrun, os.X_OK):
        harness.skip(f"{torchrun}: no torchrun in the project's venv")
    with tempfile.TemporaryDirectory() as tmp:
        world, vocab = tiny_world.make_world(tmp, 120)
        shape = tiny_world.write_shape(os.path.join(tmp, "shape.json"), vocab, hidden=32, layers=2, heads=2, kv_heads=1)
        common = [f"model_config={shape}", f"tokenizer={os.path.join(world, 'tokenizer')}",
                  f"train_file={os.path.join(world, 'qa.h5')}", "cutoff_len=104", "max_target_len=48",
                  "learning_rate=3e-3", "warmup_steps=2", "logging_steps=1", "eval_batches=1", "threads=1", "seed=5",
                  f"gradient_accumulation_steps={ACCUM}", "max_grad_norm=1.0"]
        one, two = os.path.join(tmp, "one"), os.path.join(tmp, "two")

        # The same 20 steps: one process reading 2B rows a micro-batch, two ranks reading B each.
        harness.pith("lm", *common, f"per_device_train_batch_size={2 * B}", f"max_steps={STEPS}", f"output_dir={one}")
        t0 = time.time()
        p = harness.run([torchrun, "--no-python", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                         str(free_port()), pith, "lm", *common, f"per_device_train_batch_size={B}",
                         f"max_steps={STEPS}", f"output_dir={two}"], text=True, timeout=300, ok=False)
        if p.returncode != 0 and "cannot train on several processes" in p.stderr:
            harness.skip("this pith was built without Gloo's headers (Debian libgloo-dev): " +
                         p.stderr.strip().splitlines()[-1])
        harness.check(p.returncode == 0, f"torchrun exited {p.returncode}: {p.stdout[-1500:]} {p.stderr[-1500:]}")
        print(f"torchrun 2 ranks: {time.time() - t0:.1f} s")
        harness.check(f"global batch {2 * B * ACCUM} = {B} per device x {ACCUM} accumulation x 2 ranks" in p.stdout,
                      "the launch states its global batch")
        m1, m2 = metrics(one), metrics(two)
        harness.check([m["step"] for m in m1] == [m["step"] for m in m2], "both runs log the same lines (rank 0 alone writes)")
        worst = 0.0
        for a, b in zip(m1, m2):
            for key in ("loss", "grad_norm", "val_loss"):  # val_loss: the ranks' shares all-reduced
                if key in a:
                    d = abs(a[key] - b[key])
                    worst = max(worst, d)
                    harness.check(d <= 1e-5 * max(1.0, abs(a[key])),
                                  f"step {a['step']} {key}: one process {a[key]}, two ranks {b[key]}")
        print(f"losses, gradient norms: largest difference {worst:.2e} over {len(m1)} lines")
        bench_under_torchrun(torchrun, pith, shape)
        w1, w2 = weights(one), weights(two)
        harness.check(sorted(w1) == sorted(w2), "the same tensors")
        wd = max(float(abs(w1[k].astype("float64") - w2[k].astype("float64")).max()) for k in w1)
        harness.check(wd <= 1e-5, f"final weights differ by {wd} (over 1e-5)")
        print(f"final weights: largest difference {wd:.2e} over {len(w1)} tensors")
        n_train = sum(int(w.size) for w in w1.values())  # pith lm trains every weight it saves
        volume = f"each step all-reduces {4 * n_train / 1e6:.1f} MB of f32 gradients ({n_train} trainable values)"
        harness.check(volume in p.stdout and "during the backward pass (ddp_overlap)" in p.stdout,
                      f"the launch states the all-reduce volume '{volume}' and the overlap: {p.stdout[:600]}")
        harness.check(abs(m1[0]["loss"] - m1[-2]["loss"]) > 1e-3, "training moved the loss (the test can fail)")

        # One process under torchrun joins a group of one (the distributed path alone, hooks and
        # all-reduces included): the one-process run to the bit.
        solo = os.path.join(tmp, "solo")
        p1 = harness.run([torchrun, "--no-python", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
                          "--master_port", str(free_port()), pith, "lm", *common,
                          f"per_device_train_batch_size={2 * B}", f"max_steps={STEPS}", f"output_dir={solo}"],
                         text=True, timeout=300)
        harness.check("each step all-reduces" in p1.stdout, f"torchrun with 1 process formed no group: {p1.stdout[:400]}")
        ws, keys = weights(solo), ("step", "loss", "grad_norm", "val_loss")
        harness.check([[m.get(k) for k in keys] for m in metrics(solo)] == [[m.get(k) for k in keys] for m in m1],
                      "1 process under torchrun: other losses than the plain run's")
        harness.check(all((ws[k] == w1[k]).all() for k in w1), "1 process under torchrun: other weights")
        print("1 process under torchrun (a group of one): the plain run's losses and weights, bit for bit")
        harness.check("val_loss" in m2[-1], f"the 2-rank run logs its validation loss: {m2[-1]}")

        # Validation over all ranks, on the whole val split (eval_batches past its end) in batches of VB per
        # rank (with the tiny world's 40 rows: 5 batches, the last partial, 3 on rank 0 and 2 on rank 1),
        # every 2 steps: each rank's share of the batches, the sums all-reduced, equal the one-process figure. This 2-rank run reduces its gradients after backward (ddp_overlap=false),
        # the one above during it: both paths meet the one-process run.
        import h5py
        with h5py.File(os.path.join(world, "qa.h5"), "r") as f:
            n_val = int((f["split"][:] == 1).sum())
        vargs = [c for c in common if not c.startswith("eval_batches")] + ["eval_batches=1000", "eval_steps=2",
                                                                           "max_steps=4"]
        vone, vtwo = os.path.join(tmp, "val_one"), os.path.join(tmp, "val_two")
        harness.pith("lm", *vargs, f"per_device_train_batch_size={2 * VB}", f"output_dir={vone}")
        harness.run(torchrun_cmd(torchrun, "lm", *vargs, f"per_device_train_batch_size={VB}", "ddp_overlap=false",
                                 f"output_dir={vtwo}"), text=True, timeout=300)
        v1, v2 = metrics(vone), metrics(vtwo)
        harness.check([m["step"] for m in v1] == [m["step"] for m in v2], "validation runs: the same lines")
        vals = [(a["val_loss"], b["val_loss"]) for a, b in zip(v1, v2) if "val_loss" in a]
        harness.check(len(vals) == 2 and all(isinstance(a, float) and isinstance(b, float) for a, b in vals),
                      f"a validation loss at steps 2 and 4 from both runs: {vals}")
        vd = max(abs(a - b) / max(1.0, abs(a)) for a, b in vals)
        harness.check(vd <= 1e-5, f"validation losses: one process {[a for a, _ in vals]}, two ranks {[b for _, b in vals]}")
        ld = max(abs(a[k] - b[k]) / max(1.0, abs(a[k])) for a, b in zip(v1, v2) for k in ("loss", "grad_norm") if k in a)
        harness.check(ld <= 1e-5, f"ddp_overlap=false: losses or gradient norms differ from one process by {ld}")
        nb = -(-n_val // VB)
        print(f"validation on {n_val} rows, {nb} batches of {VB} ({(nb + 1) // 2} on rank 0, {nb // 2} on rank 1, the "
              f"last of {n_val - (nb - 1) * VB} rows): 2 ranks = 1 process (batch {2 * VB}) within {vd:.1e}; "
              f"ddp_overlap=false: losses within {ld:.1e}")

        # SIGTERM to one rank: both stop after the same step, rank 0 saves one checkpoint; resumed by
        # torchrun, the run ends where the uninterrupted two-rank run ended.
        part = os.path.join(tmp, "part")
        stopped = term_one_rank([pith, "lm", *common, f"per_device_train_batch_size={B}", f"max_steps={STEPS}",
                                 f"output_dir={part}"], part, STEPS)
        part1 = os.path.join(tmp, "part1")  # the same checkpoint, resumed below by one process
        shutil.copytree(part, part1)
        harness.run([torchrun, "--no-python", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                     str(free_port()), pith, "lm", *common, f"per_device_train_batch_size={B}", f"max_steps={STEPS}",
                     f"output_dir={part}", "--resume"], text=True, timeout=300)
        mp = metrics(part)
        harness.check([m["step"] for m in mp] == [m["step"] for m in m2], "the resumed history has every step once")
        harness.check(all(a.get("loss") == b.get("loss") for a, b in zip(mp, m2)),
                      "the resumed losses equal the uninterrupted run's")
        wp = weights(part)
        rd = max(float(abs(wp[k].astype("float64") - w2[k].astype("float64")).max()) for k in w2)
        harness.check(rd == 0.0, f"resumed final weights differ from the uninterrupted run's by {rd}")
        print(f"SIGTERM to rank 1 at step {stopped}: both ranks stopped (143), resumed to step {STEPS}: "
              "losses and weights equal the uninterrupted run's bit for bit")

        # SIGTERM to torchrun itself: it passes it on to both ranks, which stop after one step together.
        tt = os.path.join(tmp, "torchrun_term")
        launcher = subprocess.Popen([torchrun, "--no-python", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                                     "--master_port", str(free_port()), pith, "lm", *common,
                                     f"per_device_train_batch_size={B}", "max_steps=100000", f"output_dir={tt}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = launcher.stdout.readline()
        while line and not line.startswith("step "):
            line = launcher.stdout.readline()
        launcher.send_signal(signal.SIGTERM)
        out, _ = launcher.communicate(timeout=120)
        last = metrics(tt)[-1]["step"]
        ckpts = os.listdir(os.path.join(tt, "checkpoints"))
        harness.check(ckpts == [f"step-{last:08d}"] and f"saving a checkpoint at step {last}" in out,
                      f"SIGTERM to torchrun: one checkpoint at the last step {last}: {ckpts}, {out[-300:]!r}")
        print(f"SIGTERM to torchrun: both ranks stopped after step {last}, one checkpoint")

        # Another world size: one process with batch 2B resumes the 2-rank checkpoint, the same global
        # batches follow, and it ends where the uninterrupted 2-rank run ended.
        p = harness.pith("lm", *common, f"per_device_train_batch_size={2 * B}", f"max_steps={STEPS}",
                         f"output_dir={part1}", "--resume")
        harness.check(f"at step {stopped}" in p.stdout and "resuming" in p.stdout, f"it resumed: {p.stdout[:300]}")
        m1r, w1r = metrics(part1), weights(part1)
        harness.check([m["step"] for m in m1r] == [m["step"] for m in m2], "one history after the 1-process resume")
        ld = max(abs(a["loss"] - b["loss"]) for a, b in zip(m1r, m2) if "loss" in a)
        harness.check(ld <= 1e-5, f"the 1-process resume's losses differ from the 2-rank run's by {ld}")
        wd1 = max(float(abs(w1r[k].astype("float64") - w2[k].astype("float64")).max()) for k in w2)
        harness.check(wd1 <= 1e-5, f"the 1-process resume's final weights differ by {wd1}")
        print(f"2-rank checkpoint at step {stopped} resumed by 1 process (batch {2 * B}): losses within {ld:.1e}, "
              f"final weights within {wd1:.1e} of the uninterrupted 2-rank run")

        pretrain(tmp, torchrun)

        # A rank that dies: the other must not hang. Launched by hand (torchrun would end it itself).
        port, killed = free_port(), os.path.join(tmp, "killed")
        args = [pith, "lm", *common, f"per_device_train_batch_size={B}", "max_steps=100000", f"output_dir={killed}"]
        env0 = rank_env(0, port, PITH_DIST_TIMEOUT="30")
        r0 = subprocess.Popen(args, env=env0, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        r1 = subprocess.Popen(args, env=rank_env(1, port, PITH_DIST_TIMEOUT="30"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while time.time() < deadline:  # until rank 0 has logged a step: both are training
                line = r0.stdout.readline()
                if not line or line.startswith("step "):
                    break
            harness.check(r0.poll() is None and r1.poll() is None, "both ranks train before the kill")
            r1.send_signal(signal.SIGKILL)
            t_kill = time.time()
            try:
                _, err = r0.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                harness.fail("rank 0 still runs 60 s after rank 1 was killed")
            took = time.time() - t_kill
        finally:
            for r in (r0, r1):
                if r.poll() is None:
                    r.kill()
                    r.wait()
        print(f"rank 1 killed: rank 0 exited {r0.returncode} after {took:.1f} s: {err.strip().splitlines()[-1]}")
        harness.check(r0.returncode not in (0, None), "rank 0 fails when rank 1 dies")
        harness.check("rank 0 of 2" in err, f"the error names the rank: {err!r}")

        # A rank that never comes: the rendezvous gives up after PITH_DIST_TIMEOUT.
        t0 = time.time()
        p = harness.pith("lm", *common, "max_steps=1", f"output_dir={os.path.join(tmp, 'alone')}", ok=False,
                         env=rank_env(0, free_port(), PITH_DIST_TIMEOUT="3"), timeout=60)
        took = time.time() - t0
        harness.check(p.returncode != 0 and "joining the process group" in p.stderr and took < 30,
                      f"rank 0 alone: exit {p.returncode} after {took:.1f} s: {p.stderr[-300:]!r}")
        print(f"rank 1 never started: rank 0 gave up after {took:.1f} s (PITH_DIST_TIMEOUT=3)")

        # A bad launch environment is refused before anything loads, naming the variable.
        for env, want in (({"MASTER_ADDR": None}, "MASTER_ADDR: not set"),
                          ({"RANK": "2"}, "RANK: '2' is not an integer in [0, 1]"),
                          ({"MASTER_PORT": "http"}, "MASTER_PORT: 'http' is not an integer")):
            e = rank_env(0, 1234)
            for k, v in env.items():
                if v is None:
                    e.pop(k)
                else:
                    e[k] = v
            p = harness.pith("lm", *common, "max_steps=1", f"output_dir={os.path.join(tmp, 'bad')}", ok=False, env=e)
            harness.check(p.returncode != 0 and want in p.stderr, f"{env}: wanted '{want}', got {p.stderr!r}")
            harness.check(not os.path.exists(os.path.join(tmp, "bad")), "a refused launch leaves no run folder")
    print("ok")


if __name__ == "__main__":
    main()
