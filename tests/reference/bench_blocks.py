"""The PyTorch-eager twin of `pith bench blocks`, and the side-by-side comparison.

Both run forward + backward of the same LLaMA-style blocks (RMSNorm, rotary attention through
scaled_dot_product_attention, SwiGLU MLP; every weight trainable; loss = mean(x^2)) on the same
libtorch, f32, CPU, same thread count. Rounds alternate between the two to spread machine noise;
the figure of each side is the median over its rounds of per-round median step times.

usage: bench_blocks.py --pith PATH [--rounds 5] [--steps 10] [--warmup 3] [--threads N]
                       [--dim 256 --layers 4 --seq 256 --batch 8 --head-dim 64 --hidden 768]
"""
import harness

torch, F = harness.require("torch", "torch.nn.functional")  # the comparison needs the venv's torch


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

    def step():
        y = x
        for w in layers:
            y = block(a, w, y, cos, sin)
        loss = (y * y).mean()
        loss.backward()
        loss.item()
        for p in params:
            p.grad = None
    return harness.median_seconds(step, a.warmup, a.steps)


def pith_round(a):
    return harness.bench_json([a.pith, "bench", "blocks", "--json", "--threads", a.threads, "--steps", a.steps,
                               "--warmup", a.warmup, "--dim", a.dim, "--layers", a.layers, "--seq", a.seq,
                               "--batch", a.batch, "--head-dim", a.head_dim, "--hidden", a.hidden])["median_step_s"]


def main():
    p = harness.bench_parser(__doc__, rounds=5, steps=10, warmup=3, threads=torch.get_num_threads())
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

    pith_s, torch_s = harness.alternate(a.rounds, [("pith", lambda: pith_round(a)),
                                                  ("torch eager", lambda: torch_round(a, layers, x, cos, sin))])
    harness.print_rates(f"blocks: dim {a.dim}, {a.layers} layers, seq {a.seq}, batch {a.batch}, {a.threads} threads, "
                        f"libtorch {torch.__version__}, forward+backward, f32 CPU", a.batch * a.seq,
                        [("pith (C through the shim)", pith_s), ("PyTorch eager", torch_s)])


if __name__ == "__main__":
    main()
