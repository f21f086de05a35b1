"""What every reference script shares: how it skips, fails, finds the pith binary and the test
assets, runs a command, and imports the peers it compares with.

A script that cannot run (a module, the binary or an asset is missing) prints "SKIP: why" and exits
77, which ctest reports as skipped; a mismatch prints "FAIL: what" and exits 1.

    import harness
    torch, transformers = harness.require("torch", "transformers")
    pith = harness.pith_bin()                       # argv[1] or PITH_BIN, else skip
    tok = harness.asset("tokenizers/llama3/tokenizer.json")   # skip when absent
    out = harness.run([pith, "tokenize", ...]).stdout
    p = harness.pith("data", "info", path, ok=False)          # text output, returncode checked by the caller

Also here, for more than one script each: JSON lines through pith (pith_jsonl), stories260K
converted and TinyStories ingested (convert_stories, stories_run_inputs), transformers' model from a
folder (load_causal_lm), tensor comparison and llama_tool calls (check_close, tool_call,
make_tool_model), the compressors written with transformers + peft (set_lora, shift_keys,
compressor_encode, compressor_decode), checks that go on (expect), and the bench_* timing
(bench_parser, median_seconds, bench_json, alternate, print_rates). Imports of optional modules
stay inside the functions that need them.
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

SKIP = 77
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(SKIP)


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)


MISMATCHES = []


def expect(cond, what, show=None):
    """A check that lets the script go on: a mismatch is printed ("MISMATCH: what"; only the first
    `show` when given) and kept in MISMATCHES, for the script to end with exit 1. Returns cond."""
    if not cond:
        MISMATCHES.append(what)
        if show is None or len(MISMATCHES) <= show:
            print(f"MISMATCH: {what}")
    return cond


def require(*modules):
    """Import the named modules (dotted names allowed), or skip naming the one that is missing."""
    got = []
    for name in modules:
        try:
            got.append(importlib.import_module(name))
        except ImportError as e:
            skip(f"{name}: {e}")
    if "transformers" in modules:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    return got[0] if len(got) == 1 else tuple(got)


_pith = None


def pith_bin(from_argv=False):
    """The pith binary, as an absolute path: sys.argv[1] when from_argv and given, else $PITH_BIN;
    skip when neither names an executable. Later calls of pith() run this one."""
    global _pith
    path = sys.argv[1] if from_argv and len(sys.argv) > 1 else os.environ.get("PITH_BIN")
    if not path:
        skip("PITH_BIN unset")
    if not os.access(path, os.X_OK):
        skip(f"{path} is not an executable pith binary (build it, or set PITH_BIN)")
    _pith = os.path.abspath(path)
    return _pith


def tool_arg(name):
    """A helper binary passed as the script's first argument (llama_tool, st_dump, ...); skip when
    it is not given or not built."""
    if len(sys.argv) < 2:
        skip(f"usage: {os.path.basename(sys.argv[0])} PATH_TO_{name}")
    if not os.access(sys.argv[1], os.X_OK):
        skip(f"{sys.argv[1]} is not built (cmake --build BUILD --target {name})")
    return sys.argv[1]


def assets_dir():
    return os.environ.get("PITH_ASSETS", os.path.join(ROOT, "..", "shared", "assets"))


def asset(rel, required=True):
    """$PITH_ASSETS/rel; skip (or None when not required) where it is absent."""
    path = os.path.join(assets_dir(), rel)
    if not os.path.exists(path):
        if required:
            skip(f"test asset {path} is absent")
        return None
    return path


def run(args, ok=True, stdin=None, timeout=600, text=False, **kw):
    """Run a command and capture its output; with ok, fail (with the tails of its stdout and stderr)
    unless it exits 0."""
    args = [str(a) for a in args]
    p = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, text=text, **kw)
    if ok and p.returncode != 0:
        out, err = (p.stdout, p.stderr) if text else (p.stdout.decode(errors="replace"),
                                                      p.stderr.decode(errors="replace"))
        fail(f"{' '.join(args)} exited {p.returncode}:\n{out[-2000:]}\n{err[-2000:]}")
    return p


def pith(*args, ok=True, timeout=None, **kw):
    """`pith ARGS` (the binary pith_bin() found; it is looked up now if it was not), text output, no
    time limit unless given; as run()."""
    return run([_pith or pith_bin(), *args], ok=ok, timeout=timeout, text=True, **kw)


def pith_jsonl(args, items):
    """`pith ARGS` with one JSON value per line on stdin: the parsed output lines, one per item
    (split on line feeds only: a decoded text may hold U+2028)."""
    data = "".join(json.dumps(x) + "\n" for x in items).encode()
    out = run([_pith or pith_bin(), *args], stdin=data).stdout.decode("utf-8").split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(items):
        fail(f"pith {' '.join(args)}: {len(out)} output lines for {len(items)} inputs")
    return [json.loads(line) for line in out]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)
    return path


# ---- stories260K (llama2.c) through `pith convert`, and TinyStories ----

STORIES_PROMPT = "Once upon a time"
STORIES_GREEDY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
                  "One day, she saw a big, red ball. She wanted to play with it, but it was too high.")
"""What llama2.c's run.c prints for stories260K at temperature 0 from STORIES_PROMPT."""


def stories_assets():
    """(stories260K.bin, tok512.bin) from the assets; skip when either is absent."""
    return asset("models/stories260K.bin"), asset("models/tok512.bin")


def convert_stories(out, *extra, ok=True):
    """stories260K converted by `pith convert` into the Hugging Face folder OUT; pith's result."""
    ckpt, tok = stories_assets()
    return pith("convert", "--checkpoint", ckpt, "--tokenizer", tok, "--out", out, *extra, ok=ok)


def stories_run_inputs(tmp):
    """TMP/stories260K (converted) and TMP/stories.h5 (TinyStories ingested as blocks with its
    tokenizer): what the compressor training tests start from."""
    model, corpus = os.path.join(tmp, "stories260K"), os.path.join(tmp, "stories.h5")
    convert_stories(model)
    pith("data", "ingest", "--format", "text", "--text-mode", "blocks", "--quiet", "--tokenizer", model,
         "--out", corpus, asset("data/tinystories/tinystories_val_head.txt"))
    return model, corpus


def load_causal_lm(folder, **kw):
    """transformers' AutoModelForCausalLM from a local folder in f32, in eval mode (dtype=, or
    torch_dtype= before transformers 4.56)."""
    import torch
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, **kw)
    return model.eval()


# ---- comparing tensors, and the tools that compute pith's side ----

def rel_diff(ours, ref):
    """max |ours - ref| over max |ref| (at least 1e-6); 0 for empty tensors."""
    ours, ref = ours.detach().float(), ref.detach().float()
    if not ref.numel():
        return 0.0
    return (ours - ref).abs().max().item() / max(1e-6, ref.abs().max().item())


def check_close(what, ours, ref, tol):
    """Fail unless ours and ref have one shape and agree to tol relative (rel_diff); the difference."""
    check(ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} vs the reference's {tuple(ref.shape)}")
    err = rel_diff(ours, ref)
    check(err <= tol, f"{what}: relative difference {err:.3g} > {tol}")
    return err


def tool_call(tool, command, folder, tensors, tmp, meta=None, *extra):
    """`TOOL COMMAND FOLDER [EXTRA...] IN OUT` (llama_tool) with the tensors (and string metadata)
    saved to IN: the tensors it wrote to OUT."""
    from safetensors.torch import load_file, save_file
    inp, outp = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, inp, metadata=meta)
    run([tool, command, folder, *extra, inp, outp], timeout=None, text=True)
    return load_file(outp)


def make_tool_model(tool, folder, config, seed):
    """FOLDER/config.json from a dict, then `llama_tool make FOLDER SEED` writes random weights."""
    os.makedirs(folder)
    write_json(os.path.join(folder, "config.json"), config)
    run([tool, "make", folder, seed], text=True)
    return folder


# ---- the compressors written with transformers + peft ----

def set_lora(model, case, targets):
    """Copy lora.L.P.A / .B from case into a peft model's adapters: {(layer, proj): module}."""
    mods = {}
    for l, layer in enumerate(model.base_model.model.model.layers):
        for p in targets:
            mod = getattr(layer.self_attn if hasattr(layer.self_attn, p) else layer.mlp, p)
            mod.lora_A["default"].weight.data.copy_(case[f"lora.{l}.{p}.A"])
            mod.lora_B["default"].weight.data.copy_(case[f"lora.{l}.{p}.B"])
            mods[(l, p)] = mod
    return mods


def rotate_half(x):
    import torch
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def shift_keys(k, shift, theta, hd):
    """Keys roped at position p moved to p + shift (500x's consistent position policy)."""
    import torch
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = torch.cat([shift * inv, shift * inv])
    return k * torch.cos(ang) + rotate_half(k) * torch.sin(ang)


def compressor_encode(model, text_ids, text_mask, compress, **kw):
    """The encoder (a peft model, adapter as the caller set it) on [text embeddings; compress], the
    text's padding masked: its output (with the cache) and the final normed hidden states."""
    import torch
    inner = model.base_model.model
    B, k = text_ids.shape[0], compress.shape[0]
    enc_in = torch.cat([inner.model.embed_tokens(text_ids), compress.expand(B, -1, -1)], dim=1)
    enc_mask = torch.cat([text_mask.long(), torch.ones(B, k, dtype=torch.long)], dim=1)
    normed = {}
    # (a forward hook that returns a value replaces the output: keep the first, return None)
    hook = inner.model.norm.register_forward_hook(lambda m, i, o: [normed.setdefault("x", o), None][1])
    try:
        out = model(inputs_embeds=enc_in, attention_mask=enc_mask, use_cache=True, **kw)
    finally:
        hook.remove()
    return out, normed["x"]


def compressor_decode(model, enc, normed, N, k, method, positions, theta, dec_ids, dec_mask, targets, ae=None):
    """The decoder (call it under model.disable_adapter()) after compressor_encode of N text and k
    compress positions. 500x: the compress positions' K/V (keys moved back N positions for the
    consistent policy) as past_key_values; ICAE: the memory states (+ the AE token) as leading input
    embeddings. {"logits" (decoder positions), "loss" (mean CE, -100 ignored), "k.L"/"v.L" (500x) or
    "memory" (ICAE)}."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache
    inner = model.base_model.model
    B = dec_ids.shape[0]
    dec_mask = dec_mask.long()
    res = {}
    if method == "500x":
        cache = DynamicCache()
        for l, layer in enumerate(enc.past_key_values.layers):
            kk, vv = layer.keys[:, :, N:N + k], layer.values[:, :, N:N + k]
            if positions == "consistent":
                kk = shift_keys(kk, -N, theta, kk.shape[-1])
            res[f"k.{l}"], res[f"v.{l}"] = kk, vv
            cache.update(kk, vv, l)
        logits = model(input_ids=dec_ids, past_key_values=cache,
                       attention_mask=torch.cat([torch.ones(B, k, dtype=torch.long), dec_mask], dim=1)).logits
    else:
        res["memory"] = normed[:, N:N + k]
        lead = [res["memory"]] + ([ae.expand(B, -1, -1)] if ae is not None else [])
        lead_len = sum(x.shape[1] for x in lead)
        dec_in = torch.cat(lead + [inner.model.embed_tokens(dec_ids)], dim=1)
        logits = model(inputs_embeds=dec_in, attention_mask=torch.cat(
            [torch.ones(B, lead_len, dtype=torch.long), dec_mask], dim=1)).logits[:, lead_len:]
    res["logits"] = logits
    res["loss"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    return res


# ---- the bench_* scripts: pith next to PyTorch, rounds alternating ----

def bench_parser(doc, rounds, steps, warmup, threads):
    """The options every bench_* comparison takes: --pith, --rounds, --steps, --warmup, --threads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pith", required=True, help="the pith binary")
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--threads", type=int, default=threads)
    return p


def median_seconds(step, warmup, steps):
    """Run step() warmup + steps times: the median wall time of the last steps."""
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_json(cmd, env=None):
    """Run a command that ends its output with a JSON line (`pith bench ... --json`, a Python
    worker): that line, parsed; fail where it exits non-zero. env: extra environment variables."""
    env = dict(os.environ, **env) if env else None
    return json.loads(run(cmd, timeout=None, text=True, env=env).stdout.strip().splitlines()[-1])


def alternate(rounds, sides, after=None):
    """Run each side's round function in turn, rounds times (to spread machine noise), printing a
    line per round; sides is [(label, fn)], fn returning seconds (or a tuple starting with them);
    after() runs after each call. The results, a list per side."""
    got = [[] for _ in sides]
    for r in range(rounds):
        for (_, fn), res in zip(sides, got):
            res.append(fn())
            if after:
                after()
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{label} {(res[-1][0] if isinstance(res[-1], tuple) else res[-1]) * 1e3:.1f} ms/step"
            for (label, _), res in zip(sides, got)), flush=True)
    return got


def print_rates(header, tokens, sides):
    """The header line, then the tokens per second of each side ([(label, per-round seconds)], the
    median of the rounds) and the first side's over the second's."""
    print(header)
    medians = [(label, statistics.median(s)) for label, s in sides]
    for label, s in medians:
        print(f"  {label + ':':27s} {tokens / s:10.0f} tokens/s")
    print(f"  {'ratio (first / second):':27s} {medians[1][1] / medians[0][1]:10.2f}x")
