#!/usr/bin/env python3
"""Ingest speed: `pith data ingest --format arxiv` against HF tokenizers' encode_batch on the same texts.

Run it from the repository root after building:

    .venv/bin/python tests/reference/bench_ingest.py --pith build/pith

Input: $PITH_ASSETS/data/arxiv/arxiv_abstracts_4000.jsonl (PITH_ASSETS defaults to ../shared/assets),
tokenizer: $PITH_ASSETS/tokenizers/llama3/tokenizer.json. One thread, then all cores.

pith's figure is the whole ingest (reading and hashing the JSONL, parsing and validating it, the
whitespace normalisation, tokenizing, writing the compressed HDF5 file and renaming it) as pith
reports it, tokenizer loading excluded. HF's figure is encode_batch alone on the already parsed and
normalised abstracts (no JSON, no file written), in a subprocess with RAYON_NUM_THREADS=N
(TOKENIZERS_PARALLELISM=false for one thread). Both in MB of abstract text per second and tokens
per second; the best of --repeat runs each; the ratio is pith / HF.

usage: bench_ingest.py [--pith PATH] [--assets DIR] [--repeat N] [--threads N]
Env PITH_BIN / PITH_ASSETS are used when the flags are absent.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time

import harness


def normalize(s):
    return re.sub(r"[ \t\n\v\f\r]+", " ", s).strip(" ")


def hf_worker(tok_path, data_path, repeat):
    """Runs in a subprocess so that RAYON_NUM_THREADS takes effect before tokenizers loads."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    with open(data_path, encoding="utf-8") as f:
        docs = [t for t in (normalize(json.loads(line)["abstract"]) for line in f if line.strip()) if t]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    best, n_tokens = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        enc = tok.encode_batch(docs, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
        n_tokens = sum(len(e.ids) for e in enc)
    print(json.dumps({"bytes": n_bytes, "tokens": n_tokens, "seconds": best}))


def run_hf(tok_path, data_path, threads, repeat):
    return harness.bench_json([sys.executable, __file__, "--hf-worker", tok_path, data_path, repeat],
                              env={"RAYON_NUM_THREADS": str(threads),
                                   "TOKENIZERS_PARALLELISM": "false" if threads == 1 else "true"})


SUMMARY = re.compile(r"in ([0-9.]+) s with \d+ threads?: .* encoded ([0-9,]+) bytes of text .*, ([0-9,]+) tokens \(")


def run_pith(pith, tok_path, data_path, threads, repeat, tmp):
    best = None
    for _ in range(repeat):
        out = os.path.join(tmp, "bench.h5")
        t0 = time.perf_counter()
        p = harness.run([pith, "data", "ingest", "--tokenizer", tok_path, "--format", "arxiv", "--out", out,
                         "--threads", threads, "--quiet", "--force", data_path], timeout=None, text=True)
        wall = time.perf_counter() - t0
        m = SUMMARY.search(p.stdout)
        if not m:
            sys.exit(f"cannot read pith's summary:\n{p.stdout}")
        r = {"seconds": float(m.group(1)), "bytes": int(m.group(2).replace(",", "")),
             "tokens": int(m.group(3).replace(",", "")), "wall": wall}
        if best is None or r["seconds"] < best["seconds"]:
            best = r
        os.unlink(out)
    return best


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hf-worker":
        return hf_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pith", default=os.environ.get("PITH_BIN", "build/pith"))
    ap.add_argument("--assets", default=harness.assets_dir())
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the 'all threads' count")
    args = ap.parse_args()
    data = os.path.join(args.assets, "data/arxiv/arxiv_abstracts_4000.jsonl")
    tok = os.path.join(args.assets, "tokenizers/llama3/tokenizer.json")
    if not os.access(args.pith, os.X_OK) or not os.path.exists(data) or not os.path.exists(tok):
        harness.skip(f"need the pith binary ({args.pith}), {data} and {tok}")
    print(f"ingest of {data} ({os.path.getsize(data) / 1e6:.1f} MB of JSONL) with the LLaMA-3 tokenizer, "
          f"best of {args.repeat}, {os.cpu_count()} cores")
    print("pith: the whole ingest (JSONL -> validated, tokenized, compressed HDF5); HF: encode_batch on the parsed texts")
    print(f"{'threads':>7s} {'HF MB/s':>8s} {'HF tok/s':>10s} {'pith MB/s':>10s} {'pith tok/s':>11s} {'pith/HF':>8s}"
          f" {'pith wall s':>11s}")
    with tempfile.TemporaryDirectory(prefix="pith_bench_ingest_") as tmp:
        for threads in sorted({1, args.threads}):
            hf = run_hf(tok, data, threads, args.repeat)
            ours = run_pith(args.pith, tok, data, threads, args.repeat, tmp)
            if ours["tokens"] != hf["tokens"] or ours["bytes"] != hf["bytes"]:
                print(f"note: pith encoded {ours['bytes']} bytes / {ours['tokens']} tokens, HF {hf['bytes']} / {hf['tokens']}")
            hf_mb, hf_tok = hf["bytes"] / 1e6 / hf["seconds"], hf["tokens"] / hf["seconds"]
            mb, tok_s = ours["bytes"] / 1e6 / ours["seconds"], ours["tokens"] / ours["seconds"]
            print(f"{threads:7d} {hf_mb:8.2f} {hf_tok:10,.0f} {mb:10.2f} {tok_s:11,.0f} {mb / hf_mb:7.2f}x"
                  f" {ours['wall']:11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
