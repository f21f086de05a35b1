"""500xCompressor training-step speed: `pith bench train-step` next to the same step written the
way users would write it, in transformers + peft (PyTorch eager, same libtorch), CPU, f32.

The step: the encoder (the model with LoRA r on q_proj and v_proj) reads [text; k compress
embeddings]; the K/V of the compress positions become the past_key_values of the same model with
the adapter disabled, which reads the text and is scored on it; backward; AdamW on the LoRA and the
compress embeddings. Without --model, a LLaMA-style model with random weights (dim 512, 8 layers)
is made with transformers and saved to a temporary folder that both load. Rounds alternate.

usage: bench_train_step.py --pith PATH [--model DIR] [--k 16] [--batch 4] [--seq 256] [--rounds 3]
                           [--steps 3] [--warmup 1] [--lora-rank 64] [--threads N]
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
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, DynamicCache
    from transformers.utils import logging as hf_logging
    from peft import LoraConfig, get_peft_model
    hf_logging.disable_progress_bar()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_forward import random_model
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)


def torch_round(a, model_dir, text):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    model = get_peft_model(model, LoraConfig(r=a.lora_rank, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                             lora_dropout=0.0))
    inner = model.base_model.model
    D = inner.config.hidden_size
    compress = torch.nn.Parameter(torch.randn(a.k, D) * 0.02)
    params = [p for p in model.parameters() if p.requires_grad] + [compress]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    B, N = text.shape
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        enc_in = torch.cat([inner.model.embed_tokens(text), compress.expand(B, -1, -1)], dim=1)
        enc = model(inputs_embeds=enc_in, use_cache=True)
        cache = DynamicCache()
        for l, layer in enumerate(enc.past_key_values.layers):
            cache.update(layer.keys[:, :, N:], layer.values[:, :, N:], l)
        with model.disable_adapter():
            logits = model(input_ids=text, past_key_values=cache).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), text.reshape(-1))
        loss.backward()
        opt.step()
        loss.item()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pith_round(a, model_dir):
    cmd = [a.pith, "bench", "train-step", "--json", "--model", model_dir, "--k", str(a.k), "--batch", str(a.batch),
           "--seq", str(a.seq), "--steps", str(a.steps), "--warmup", str(a.warmup), "--lora-rank", str(a.lora_rank),
           "--threads", str(a.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median_step_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pith", required=True)
    p.add_argument("--model")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--lora-rank", type=int, default=64)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = a.model
        if not model_dir:
            model_dir = os.path.join(tmp, "model")
            random_model(model_dir)
        vocab = AutoModelForCausalLM.from_pretrained(model_dir).config.vocab_size
        text = torch.randint(0, vocab, (a.batch, a.seq), generator=torch.Generator().manual_seed(5))
        pith_s, torch_s = [], []
        for r in range(a.rounds):
            pith_s.append(pith_round(a, model_dir))
            torch_s.append(torch_round(a, model_dir, text))
            print(f"round {r + 1}/{a.rounds}: pith {pith_s[-1] * 1e3:.0f} ms/step, "
                  f"transformers+peft {torch_s[-1] * 1e3:.0f} ms/step", flush=True)
    tokens = 2 * a.batch * a.seq  # encoder and decoder tokens
    pt, tt = tokens / statistics.median(pith_s), tokens / statistics.median(torch_s)
    print(f"500x train step: k {a.k}, batch {a.batch}, seq {a.seq}, LoRA r {a.lora_rank} on q,v, {a.threads} threads, "
          f"f32 CPU, libtorch {torch.__version__}")
    print(f"  pith:               {pt:10.0f} tokens/s")
    print(f"  transformers+peft:  {tt:10.0f} tokens/s")
    print(f"  ratio:              {pt / tt:10.2f}x")


if __name__ == "__main__":
    main()
