"""500xCompressor training-step speed: `pith bench train-step` next to the same step written the
way users would write it, in transformers + peft (PyTorch eager, same libtorch): CPU in f32, or a
CUDA GPU in f32 or bf16 (the model in bf16, LoRA and compress weights in f32 on both sides).

The step: the encoder (the model with LoRA r on q_proj and v_proj) reads [text; k compress
embeddings]; the K/V of the compress positions become the past_key_values of the same model with
the adapter disabled, which reads the text and is scored on it; backward; AdamW on the LoRA and the
compress embeddings. With --config (a config.json), both sides make random weights of that shape on
the device (configs/llama3_8b_config.json: LLaMA-3-8B, no download). With neither --model nor
--config, a LLaMA-style model with random weights (dim 512, 8 layers) is saved to a temporary folder
that both load. Rounds alternate. On CUDA both sides report their peak allocated memory.

With --ab FLAGS the other side is pith itself with those `pith bench train-step` flags (e.g.
"--gradient-checkpointing", "--loss-chunk-rows 512"), the peak is the allocator's on CUDA and the
process's resident memory on the CPU, and the losses must agree (to the bit on the CPU with
--gradient-checkpointing alone; to 1e-5 otherwise). transformers' own checkpointing drops the
encoder's past_key_values in training mode, so the peer cannot run this step with it.

usage: bench_train_step.py --pith PATH [--model DIR | --config FILE.json] [--k 16] [--batch 4]
                           [--seq 256] [--rounds 3] [--steps 3] [--warmup 1] [--lora-rank 64]
                           [--threads N] [--device cpu|cuda] [--bf16] [--peak-tflops X] [--ab FLAGS]
"""
import gc
import os
import statistics
import tempfile

import harness

torch, F, transformers, peft = harness.require("torch", "torch.nn.functional", "transformers", "peft")
from bench_forward import random_model  # noqa: E402 (needs transformers, required above)


def load_model(a, model_dir):
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    if a.config:
        with torch.device(a.device):
            return transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig.from_json_file(a.config),
                                                                 dtype=dtype)
    return transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(a.device)


def torch_round(a, model_dir, text):
    """Median step seconds and peak allocated bytes (-1 on CPU) of the transformers + peft step."""
    if a.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    model = load_model(a, model_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    model = peft.get_peft_model(model, peft.LoraConfig(r=a.lora_rank, lora_alpha=32,
                                                       target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    inner = model.base_model.model
    D = inner.config.hidden_size
    compress = torch.nn.Parameter(torch.randn(a.k, D, device=a.device) * 0.02)
    params = [p for p in model.parameters() if p.requires_grad] + [compress]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    B, N = text.shape

    def step():
        opt.zero_grad(set_to_none=True)
        embeds = inner.model.embed_tokens(text)
        enc_in = torch.cat([embeds, compress.to(embeds.dtype).expand(B, -1, -1)], dim=1)
        enc = model(inputs_embeds=enc_in, use_cache=True)
        cache = transformers.DynamicCache()
        for l, layer in enumerate(enc.past_key_values.layers):
            cache.update(layer.keys[:, :, N:], layer.values[:, :, N:], l)
        with model.disable_adapter():
            logits = model(input_ids=text, past_key_values=cache).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), text.reshape(-1))
        loss.backward()
        opt.step()
        loss.item()
    seconds = harness.median_seconds(step, a.warmup, a.steps)
    return seconds, torch.cuda.max_memory_allocated() if a.device != "cpu" else -1


def pith_round(a, model_dir, extra=()):
    """Median step seconds, peak bytes (allocated on CUDA; resident on the CPU with --ab, else -1), MFU
    (-1 without --peak-tflops) and the last step's loss. extra: more bench train-step flags."""
    cmd = [a.pith, "bench", "train-step", "--json", "--k", str(a.k), "--batch", str(a.batch), "--seq", str(a.seq),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--lora-rank", str(a.lora_rank),
           "--threads", str(a.threads), "--device", a.device, "--peak-tflops", str(a.peak_tflops)]
    cmd += ["--config", a.config] if a.config else ["--model", model_dir]
    cmd += ["--bf16"] if a.bf16 else []
    cmd += list(extra)
    out = harness.bench_json(cmd)
    peak = out.get("peak_allocated_bytes", out.get("peak_rss_bytes", -1) if a.ab else -1)
    return out["median_step_s"], peak, out.get("mfu", -1), out["loss"]


def main():
    p = harness.bench_parser(__doc__, rounds=3, steps=3, warmup=1, threads=torch.get_num_threads())
    p.add_argument("--model")
    p.add_argument("--config")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--lora-rank", type=int, default=64)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="CUDA only: the model in bf16")
    p.add_argument("--peak-tflops", type=float, default=0, help="the device's peak, for MFU")
    p.add_argument("--ab", metavar="FLAGS",
                   help="pith with these bench train-step flags against pith without (not transformers + peft)")
    p.add_argument("--pith-flags", metavar="FLAGS", default="",
                   help="more bench train-step flags for pith's side against transformers + peft (e.g. "
                        "--fused-kernels); with --ab, for both of pith's sides")
    a = p.parse_args()
    if a.model and a.config:
        p.error("--model and --config exclude each other")
    if a.bf16 and a.device == "cpu":
        p.error("--bf16 needs --device cuda (pith trains in f32 on CPU)")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but this torch sees no CUDA device")
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = a.model
        if not model_dir and not a.config:
            model_dir = os.path.join(tmp, "model")
            random_model(model_dir)
        cfg = (transformers.LlamaConfig.from_json_file(a.config) if a.config
               else transformers.LlamaConfig.from_pretrained(model_dir))
        text = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=torch.Generator().manual_seed(5))
        text = text.to(a.device)

        def free():  # the model, before pith's next round needs the device memory
            gc.collect()
            if a.device != "cpu":
                torch.cuda.empty_cache()
        if a.ab:
            both = a.pith_flags.split()
            plain, other = harness.alternate(a.rounds, [("pith", lambda: pith_round(a, model_dir, both)),
                                                        (f"pith {a.ab}",
                                                         lambda: pith_round(a, model_dir, both + a.ab.split()))])
            return ab_report(a, plain, other)
        pith_r, torch_r = harness.alternate(a.rounds, [("pith", lambda: pith_round(a, model_dir, a.pith_flags.split())),
                                                      ("transformers+peft", lambda: torch_round(a, model_dir, text))],
                                            after=free)
    tokens = 2 * a.batch * a.seq  # encoder and decoder tokens
    pith_s, torch_s = statistics.median(x[0] for x in pith_r), statistics.median(x[0] for x in torch_r)
    pt, tt = tokens / pith_s, tokens / torch_s
    where = f"{a.threads} threads, f32 CPU" if a.device == "cpu" else \
        f"{torch.cuda.get_device_name()}, {'bf16' if a.bf16 else 'f32'}"
    print(f"500x train step: k {a.k}, batch {a.batch}, seq {a.seq}, LoRA r {a.lora_rank} on q,v, {where}, "
          f"libtorch {torch.__version__}" + (f"; pith with {a.pith_flags}" if a.pith_flags else ""))
    pith_mfu = statistics.median(x[2] for x in pith_r)
    for name, tok_s, mfu, peak in (("pith", pt, pith_mfu, max(x[1] for x in pith_r)),
                                   ("transformers+peft", tt, pith_mfu * pith_s / torch_s, max(x[1] for x in torch_r))):
        line = f"  {name + ':':19s} {tok_s:10.0f} tokens/s"
        line += f", MFU {100 * mfu:.1f}%" if a.peak_tflops > 0 else ""
        line += f", peak {peak / 2**30:.1f} GiB allocated" if peak >= 0 else ""
        print(line)
    print(f"  ratio:              {pt / tt:10.2f}x")


def ab_report(a, plain, other):
    """--ab: step time and peak memory without and with the flags, and the same losses."""
    exact = a.device == "cpu" and a.ab.split() == ["--gradient-checkpointing"]
    tol = 0 if exact else 1e-5 if a.device == "cpu" else 1e-3  # CUDA's attention backward is not deterministic
    if "--fused-kernels" in a.ab.split() and a.bf16:
        tol = 1e-2  # the fused kernels sum in another order than the composite ops: bf16 rounding
    harness.check(all(abs(p[3] - o[3]) <= tol * abs(p[3]) for p, o in zip(plain, other)),
                  f"the losses differ with {a.ab}: {[x[3] for x in plain]} vs {[x[3] for x in other]}")
    tokens = 2 * a.batch * a.seq
    kind = "allocated" if a.device != "cpu" else "resident (the whole process)"
    print(f"500x train step: k {a.k}, batch {a.batch}, seq {a.seq}, LoRA r {a.lora_rank} on q,v, {a.device}, "
          f"{a.threads} threads; peak memory {kind}" + (f"; both sides with {a.pith_flags}" if a.pith_flags else ""))
    for name, r in (("without", plain), (a.ab, other)):
        s = statistics.median(x[0] for x in r)
        print(f"  {name + ':':28s} {tokens / s:10.0f} tokens/s, peak {max(x[1] for x in r) / 2**20:8.0f} MiB")
    ratio = statistics.median(x[0] for x in other) / statistics.median(x[0] for x in plain)
    print(f"  step time with / without: {ratio:.2f}x; the same loss on every round "
          f"({'to the bit' if tol == 0 else f'to {tol:g}'})")

if __name__ == "__main__":
    main()
