"""The PyTorch-eager twin of `pith bench blocks`, and the side-by-side comparison.

Both run forward + backward of the same LLaMA-style blocks (RMSNorm, rotary attention through
scaled_dot_product_attention, SwiGLU MLP; every weight trainable; loss = mean(x^2)) on the same
libtorch, f32, CPU, same thread count. Rounds alternate between the two to spread machine noise;
the figure of each side is the median over its rounds of per-round median step times.

usage: bench_blocks.py --pith PATH [--rounds 5] [--steps 10] [--warmup 3] [--threads N]
                       [--dim 256 --layers 4 --seq 256 --batch 8 --head-dim 64 --hidden 768]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the comparison needs the venv's torch
    print(f"SKIP: {e}")
    sys.exit(77)


def rms_norm(x, w, eps=1e-5):
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def make_weights(a, g):
    def param(*shape, scale):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_()

    sd = a.dim ** -0.5
    layers = []
    for _ in range(a.layers):
        layers.append(dict(
            attn_norm=torch.ones(a.dim, requires_grad=True),
            wq=param(a.dim, a.dim, scale=sd), wk=param(a.dim, a.dim, scale=sd),
            wv=param(a.dim, a.dim, scale=sd), wo=param(a.dim, a.dim, scale=sd),
            mlp_norm=torch.ones(a.dim, requires_grad=True),
            w_gate=param(a.hidden, a.dim, scale=sd), w_up=param(a.hidden, a.dim, scale=sd),
            w_down=param(a.dim, a.hidden, scale=a.hidden ** -0.5)))
    return layers


def block(a, w, x, cos, sin):
    B, T, H, hd = a.batch, a.seq, a.dim // a.head_dim, a.head_dim
    h = rms_norm(x, w["attn_norm"])
    q = F.linear(h, w["wq"]).view(B, T, H, hd).transpose(1, 2)
    k = F.linear(h, w["wk"]).view(B, T, H, hd).transpose(1, 2)
    v = F.linear(h, w["wv"]).view(B, T, H, hd).transpose(1, 2)
    o = F.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v, is_causal=True)
    x = x + F.linear(o.transpose(1, 2).reshape(B, T, a.dim), w["wo"])
    h = rms_norm(x, w["mlp_norm"])
    return x + F.linear(F.silu(F.linear(h, w["w_gate"])) * F.linear(h, w["w_up"]), w["w_down"])


def torch_round(a, layers, x, cos, sin):
    params = [p for w in layers for p in w.values()]
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        y = x
        for w in layers:
            y = block(a, w, y, cos, sin)
        loss = (y * y).mean()
        loss.backward()
        loss.item()
        for p in params:
            p.grad = None
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pith_round(a):
    cmd = [a.pith, "bench", "blocks", "--json", "--threads", str(a.threads), "--steps", str(a.steps),
           "--warmup", str(a.warmup), "--dim", str(a.dim), "--layers", str(a.layers), "--seq", str(a.seq),
           "--batch", str(a.batch), "--head-dim", str(a.head_dim), "--hidden", str(a.hidden)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median_step_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pith", required=True, help="the pith binary")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--hidden", type=int, default=768)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(1234)
    layers = make_weights(a, g)
    x = torch.randn(a.batch, a.seq, a.dim, generator=g)
    pos = torch.arange(a.seq, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-(2 * (torch.arange(a.head_dim) % (a.head_dim // 2))).double() / a.head_dim)
    cos, sin = torch.cos(pos * freq).float(), torch.sin(pos * freq).float()

    pith_s, torch_s = [], []
    for r in range(a.rounds):
        pith_s.append(pith_round(a))
        torch_s.append(torch_round(a, layers, x, cos, sin))
        print(f"round {r + 1}/{a.rounds}: pith {pith_s[-1] * 1e3:.1f} ms/step, "
              f"torch eager {torch_s[-1] * 1e3:.1f} ms/step", flush=True)
    tokens = a.batch * a.seq
    pith_tps, torch_tps = tokens / statistics.median(pith_s), tokens / statistics.median(torch_s)
    print(f"blocks: dim {a.dim}, {a.layers} layers, seq {a.seq}, batch {a.batch}, {a.threads} threads, "
          f"libtorch {torch.__version__}, forward+backward, f32 CPU")
    print(f"  pith (C through the shim): {pith_tps:10.0f} tokens/s")
    print(f"  PyTorch eager:             {torch_tps:10.0f} tokens/s")
    print(f"  ratio pith / eager:        {pith_tps / torch_tps:10.2f}x")


if __name__ == "__main__":
    main()
