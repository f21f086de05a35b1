"""Inference forward speed: `pith bench forward` next to transformers on the same model folder.

Without --model, a LLaMA-style model with random weights is made with transformers (dim 512,
8 layers, 8 heads, 4 KV heads, vocab 32000) and saved to a temporary folder that both load. Both
run the forward pass (logits, no gradients) on the same shape of random ids, f32, CPU, same
threads; rounds alternate to spread machine noise; each side's figure is the median over rounds.

usage: bench_forward.py --pith PATH [--model DIR] [--rounds 5] [--steps 5] [--warmup 2]
                        [--batch 4] [--seq 256] [--threads N]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)


def random_model(path):
    cfg = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                      rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)


def torch_round(model, ids, a):
    times = []
    with torch.no_grad():
        for step in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            logits = model(input_ids=ids).logits
            logits[:, -1].sum().item()
            if step >= a.warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pith_round(a, model_dir):
    cmd = [a.pith, "bench", "forward", "--json", "--model", model_dir, "--threads", str(a.threads),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(a.batch), "--seq", str(a.seq)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median_step_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pith", required=True)
    p.add_argument("--model")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = a.model
        if not model_dir:
            model_dir = os.path.join(tmp, "model")
            random_model(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq))
        pith_s, torch_s = [], []
        for r in range(a.rounds):
            pith_s.append(pith_round(a, model_dir))
            torch_s.append(torch_round(model, ids, a))
            print(f"round {r + 1}/{a.rounds}: pith {pith_s[-1] * 1e3:.1f} ms, transformers {torch_s[-1] * 1e3:.1f} ms",
                  flush=True)
    n = sum(x.numel() for x in model.parameters())
    tokens = a.batch * a.seq
    pt, tt = tokens / statistics.median(pith_s), tokens / statistics.median(torch_s)
    print(f"forward: {n / 1e6:.1f}M params, batch {a.batch}, seq {a.seq}, {a.threads} threads, f32 CPU, "
          f"libtorch {torch.__version__}")
    print(f"  pith:          {pt:10.0f} tokens/s")
    print(f"  transformers:  {tt:10.0f} tokens/s")
    print(f"  ratio:         {pt / tt:10.2f}x")


if __name__ == "__main__":
    main()
