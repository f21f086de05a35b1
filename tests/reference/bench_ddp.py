"""Data-parallel step time with and without the gradients' all-reduce overlapped with the backward pass
(`ddp_overlap`), on 2 Gloo ranks launched by torchrun on this machine: `pith lm` on the tiny world's QA
corpus with a random LLaMA of the given shape. Both settings run in one invocation, in alternating
rounds (the order flips each round); a step's time is the interval between rank 0's consecutive step
lines (logging_steps=1, read as they come), the first WARM steps of each run left out; medians.

Usage: bench_ddp.py --pith build/pith [--rounds 4] [--steps 30] [--hidden 256] [--layers 4] ...
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import harness
import tiny_world

WARM = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_times(torchrun, pith, args):
    """torchrun 2 ranks of `pith lm ARGS`: the seconds between rank 0's step lines after WARM."""
    cmd = [torchrun, "--no-python", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
           str(free_port()), pith, "lm", *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    stamps = []
    for line in p.stdout:
        if line.startswith("step "):
            stamps.append(time.perf_counter())
    err = p.stderr.read()
    if p.wait() != 0:
        harness.fail(f"{' '.join(cmd)}: exit {p.returncode}: {err[-800:]}")
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return gaps[WARM:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pith", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2, help="per-device batch")
    ap.add_argument("--cutoff", type=int, default=64, help="context tokens per row")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    o = ap.parse_args()
    os.environ["PITH_BIN"] = os.path.abspath(o.pith)
    pith = harness.pith_bin()
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.access(torchrun, os.X_OK):
        harness.skip(f"{torchrun}: no torchrun in the project's venv")
    with tempfile.TemporaryDirectory() as tmp:
        world, vocab = tiny_world.make_world(tmp, 120)
        heads = max(1, o.hidden // 64)
        shape = tiny_world.write_shape(os.path.join(tmp, "shape.json"), vocab, hidden=o.hidden, layers=o.layers,
                                       heads=heads, kv_heads=heads)
        ffn = 2 * o.hidden  # write_shape: MLP twice the width, tied embeddings
        n_params = vocab * o.hidden + o.layers * (4 * o.hidden * o.hidden + 3 * o.hidden * ffn + 2 * o.hidden) + o.hidden
        common = [f"model_config={shape}", f"tokenizer={os.path.join(world, 'tokenizer')}",
                  f"train_file={os.path.join(world, 'qa.h5')}", f"cutoff_len={o.cutoff}", "max_target_len=48",
                  "learning_rate=1e-3", "warmup_steps=2", "logging_steps=1", "eval_batches=1", f"threads={o.threads}",
                  "seed=5", "save_steps=0", "tensorboard=false", f"per_device_train_batch_size={o.batch}",
                  f"max_steps={o.steps}"]
        times, ratios = {"true": [], "false": []}, []
        for r in range(o.rounds):
            med = {}
            for mode in (("true", "false") if r % 2 == 0 else ("false", "true")):
                gaps = step_times(torchrun, pith, [*common, f"ddp_overlap={mode}",
                                                   f"output_dir={os.path.join(tmp, f'run_{r}_{mode}')}"])
                times[mode] += gaps
                med[mode] = statistics.median(gaps)
                print(f"round {r + 1} ddp_overlap={mode}: median step {med[mode] * 1e3:.1f} ms over {len(gaps)} steps",
                      flush=True)
            ratios.append(med["true"] / med["false"])
    on, off = statistics.median(times["true"]), statistics.median(times["false"])
    print(f"pith lm, 2 Gloo ranks, hidden {o.hidden}, {o.layers} layers, {n_params / 1e6:.2f}M trainable "
          f"parameters ({4 * n_params / 2**20:.1f} MB of f32 gradients all-reduced per step), per-device batch "
          f"{o.batch}, cutoff {o.cutoff}, {o.threads} thread(s) per rank, {o.rounds} rounds x {o.steps} steps")
    print(f"median step: overlap {on * 1e3:.1f} ms, after backward {off * 1e3:.1f} ms: overlap/after = {on / off:.3f}; "
          f"per round {' '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.3f})")
    print("load: " + os.popen("uptime").read().strip())


if __name__ == "__main__":
    main()
