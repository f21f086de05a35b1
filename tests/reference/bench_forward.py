"""Inference forward speed: `pith bench forward` next to transformers on the same model folder.

Without --model, a LLaMA-style model with random weights is made with transformers (dim 512,
8 layers, 8 heads, 4 KV heads, vocab 32000) and saved to a temporary folder that both load. Both
run the forward pass (logits, no gradients) on the same shape of random ids, f32, CPU, same
threads; rounds alternate to spread machine noise; each side's figure is the median over rounds.

usage: bench_forward.py --pith PATH [--model DIR] [--rounds 5] [--steps 5] [--warmup 2]
                        [--batch 4] [--seq 256] [--threads N]
"""
import os
import tempfile

import harness
from random_model_folder import random_llama

torch, transformers = harness.require("torch", "transformers")

BENCH_MODEL = dict(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                   num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                   rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False)


def random_model(path):
    """The LLaMA-style model with random weights that the benches use without --model."""
    random_llama(BENCH_MODEL, path)


def torch_round(model, ids, a):
    def step():
        with torch.no_grad():
            model(input_ids=ids).logits[:, -1].sum().item()
    return harness.median_seconds(step, a.warmup, a.steps)


def pith_round(a, model_dir):
    return harness.bench_json([a.pith, "bench", "forward", "--json", "--model", model_dir, "--threads", a.threads,
                               "--steps", a.steps, "--warmup", a.warmup, "--batch", a.batch,
                               "--seq", a.seq])["median_step_s"]


def main():
    p = harness.bench_parser(__doc__, rounds=5, steps=5, warmup=2, threads=torch.get_num_threads())
    p.add_argument("--model")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = a.model
        if not model_dir:
            model_dir = os.path.join(tmp, "model")
            random_model(model_dir)
        model = harness.load_causal_lm(model_dir)
        ids = torch.randint(0, model.config.vocab_size, (a.batch, a.seq))
        pith_s, torch_s = harness.alternate(a.rounds, [("pith", lambda: pith_round(a, model_dir)),
                                                      ("transformers", lambda: torch_round(model, ids, a))])
    n = sum(x.numel() for x in model.parameters())
    harness.print_rates(f"forward: {n / 1e6:.1f}M params, batch {a.batch}, seq {a.seq}, {a.threads} threads, "
                        f"f32 CPU, libtorch {torch.__version__}", a.batch * a.seq,
                        [("pith", pith_s), ("transformers", torch_s)])


if __name__ == "__main__":
    main()
