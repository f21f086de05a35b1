#!/usr/bin/env python3
"""Tokenizer speed: `pith tokenize` against HF tokenizers' encode_batch on the arXiv abstracts,
single-threaded and on all cores, in MB of text per second (tokenizer loading excluded on both
sides; pith's figure also includes parsing the JSONL input and printing the ids).

usage: bench_tokenizer.py [--pith PATH] [--assets DIR] [--repeat N]
Env PITH_BIN / PITH_ASSETS are used when the flags are absent.
"""
import argparse
import json
import os
import re
import sys
import time

import harness


def hf_worker(kind, path, data_path, repeat):
    """Runs in a subprocess so that RAYON_NUM_THREADS takes effect before tokenizers loads."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    if kind == "json":
        tok = Tokenizer.from_file(path)
    else:  # a GPT-2 folder
        tok = Tokenizer(models.BPE.from_file(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    with open(data_path, encoding="utf-8") as f:
        docs = [json.loads(line)["abstract"] for line in f]
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        tok.encode_batch(docs, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"mb": mb, "seconds": best}))


def run_hf(kind, path, data_path, threads, repeat):
    r = harness.bench_json([sys.executable, __file__, "--hf-worker", kind, path, data_path, repeat],
                           env={"RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true"})
    return r["mb"] / r["seconds"]


def run_pith(pith, tok_path, data_path, threads, repeat):
    best = 0.0
    for _ in range(repeat):
        p = harness.run([pith, "tokenize", "--tokenizer", tok_path, "--jsonl", "--field", "abstract",
                         "--threads", threads, "--stats", data_path], timeout=None, text=True)
        m = re.search(r"\(([0-9.]+) MB/s\)", p.stderr)
        best = max(best, float(m.group(1)))
    return best


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hf-worker":
        return hf_worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pith", default=os.environ.get("PITH_BIN", "build/pith"))
    ap.add_argument("--assets", default=harness.assets_dir())
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = ap.parse_args()
    data = os.path.join(args.assets, "data/arxiv/arxiv_abstracts_4000.jsonl")
    if not os.access(args.pith, os.X_OK) or not os.path.exists(data):
        harness.skip(f"need the pith binary ({args.pith}) and the arXiv abstracts ({data})")
    cores = os.cpu_count() or 1
    cases = [("LLaMA-3", "json", os.path.join(args.assets, "tokenizers/llama3/tokenizer.json")),
             ("GPT-2", "folder", os.path.join(args.assets, "tokenizers/gpt2"))]
    print(f"arXiv abstracts ({os.path.getsize(data) / 1e6:.1f} MB of JSONL), best of {args.repeat}, {cores} cores")
    print(f"{'tokenizer':10s} {'threads':>7s} {'HF MB/s':>9s} {'pith MB/s':>10s} {'pith/HF':>8s}")
    for name, kind, path in cases:
        for threads in sorted({1, cores}):
            hf = run_hf(kind, path, data, threads, args.repeat)
            ours = run_pith(args.pith, path, data, threads, args.repeat)
            print(f"{name:10s} {threads:7d} {hf:9.2f} {ours:10.2f} {ours / hf:8.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
