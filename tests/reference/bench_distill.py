"""Scorer distillation step speed: `pith bench distill-step` (one `pith distill` method kl step)
next to the same step written the way users would write it in PyTorch + transformers (eager, same
libtorch), on CPU in f32.

The step: the target's logits with gradients off; the scorer's with; KL(target || scorer) of the
next-token distributions at temperature T, averaged over tokens, times T^2; backward; gradient
clipping at 1.0; AdamW on every scorer weight. Without --target/--scorer, two LLaMA-style models with
random weights and one vocabulary are saved to a temporary folder that both sides load: the target
the forward bench's (dim 512, 8 layers, 56.4M parameters), the scorer a smaller one (dim 256, 4
layers). Rounds alternate.

usage: bench_distill.py --pith PATH [--target DIR --scorer DIR] [--batch 8] [--seq 256]
                        [--temperature 1] [--rounds 3] [--steps 3] [--warmup 1] [--threads N]
"""
import gc
import os
import statistics
import tempfile

import harness

torch, F, transformers = harness.require("torch", "torch.nn.functional", "transformers")
from bench_forward import BENCH_MODEL  # noqa: E402 (needs transformers, required above)
from random_model_folder import random_llama  # noqa: E402

SCORER = dict(BENCH_MODEL, hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2)


def torch_round(a, text):
    target = transformers.AutoModelForCausalLM.from_pretrained(a.target, dtype=torch.float32).eval()
    scorer = transformers.AutoModelForCausalLM.from_pretrained(a.scorer, dtype=torch.float32)
    for p in target.parameters():
        p.requires_grad_(False)
    params = list(scorer.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    T = a.temperature
    last = []

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            teacher = F.log_softmax(target(input_ids=text).logits.float() / T, dim=-1)
        student = F.log_softmax(scorer(input_ids=text).logits.float() / T, dim=-1)
        loss = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1).mean() * T * T
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        last[:] = [loss.item()]
    return harness.median_seconds(step, a.warmup, a.steps), last[0]


def pith_round(a):
    out = harness.bench_json([a.pith, "bench", "distill-step", "--json", "--target", a.target, "--scorer", a.scorer,
                              "--batch", str(a.batch), "--seq", str(a.seq), "--temperature", str(a.temperature),
                              "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads)])
    return out["median_step_s"], out["loss"]


def main():
    p = harness.bench_parser(__doc__, rounds=3, steps=3, warmup=1, threads=torch.get_num_threads())
    p.add_argument("--target")
    p.add_argument("--scorer")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--temperature", type=float, default=1.0)
    a = p.parse_args()
    if bool(a.target) != bool(a.scorer):
        p.error("give --target and --scorer together, or neither (random models)")
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if not a.target:
            a.target, a.scorer = os.path.join(tmp, "target"), os.path.join(tmp, "scorer")
            random_llama(BENCH_MODEL, a.target)
            random_llama(SCORER, a.scorer)
        vocab = transformers.AutoConfig.from_pretrained(a.target).vocab_size
        # The ids pith draws: uniform [0, 1) from a generator seeded 5, times vocab - 1, truncated.
        g = torch.Generator().manual_seed(5)
        text = (torch.empty(a.batch, a.seq).uniform_(0, 1, generator=g) * (vocab - 1)).long()
        pith_r, torch_r = harness.alternate(a.rounds, [("pith", lambda: pith_round(a)),
                                                       ("PyTorch+transformers", lambda: torch_round(a, text))],
                                            after=gc.collect)
    harness.print_rates(f"distill kl step: batch {a.batch}, seq {a.seq}, T {a.temperature}, full fine-tuning, "
                        f"{a.threads} threads, f32 CPU, libtorch {torch.__version__}", a.batch * a.seq,
                        [("pith", [r[0] for r in pith_r]), ("PyTorch+transformers", [r[0] for r in torch_r])])
    # The same computation on both sides: the same weights, batch and updates give the same loss.
    print(f"  loss after {a.warmup + a.steps} steps: pith {pith_r[-1][1]:.6f}, PyTorch+transformers {torch_r[-1][1]:.6f}")


if __name__ == "__main__":
    main()
