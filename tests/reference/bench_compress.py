"""Hard compression speed: `pith compress --method llmlingua` next to llmlingua 0.2.2's
PromptCompressor on the same scorer (stories260K, converted by pith convert), the same prompts
(TinyStories, --prompts of about --words words each) and the same rate, on the CPU with the same
threads. llmlingua runs in .venv-peers (scripts/setup-peers) as a process that keeps its model
loaded and compresses every prompt once per round; pith compresses them all in one process per
round. Each side's figure is the compression time alone (pith's per-line time_s summed; the peer's
compress_prompt calls), not loading; rounds alternate; medians; tokens of prompt per second.

--scorer DIR measures another causal scorer (a Hugging Face LLaMA folder both sides load, e.g. a
pith run's base LM) instead of stories260K.

usage: bench_compress.py --pith PATH [--rounds 3] [--threads 1] [--prompts 8] [--words 1200] [--rate 0.5]
                         [--scorer DIR]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import harness


def peer_main(model, prompts_path, rate, threads):
    """In .venv-peers: load llmlingua once, then one round per line read from stdin."""
    import torch
    from llmlingua import PromptCompressor
    from transformers import DynamicCache

    torch.set_num_threads(threads)
    pc = PromptCompressor(model_name=model, device_map="cpu")
    fwd = pc.model.forward

    def forward(*a, past_key_values=None, **kw):  # see llmlingua_parity.py: list caches -> DynamicCache
        if isinstance(past_key_values, (list, tuple)):
            past_key_values = DynamicCache.from_legacy_cache(tuple((k, v) for k, v in past_key_values))
        return fwd(*a, past_key_values=past_key_values, **kw)

    pc.model.forward = forward
    prompts = json.load(open(prompts_path))
    print("ready", flush=True)
    for _ in sys.stdin:
        t0 = time.perf_counter()
        for p in prompts:
            pc.compress_prompt([p], rate=rate)
        print(time.perf_counter() - t0, flush=True)


def main():
    if "--peer" in sys.argv:
        i = sys.argv.index("--peer")
        peer_main(sys.argv[i + 1], sys.argv[i + 2], float(sys.argv[i + 3]), int(sys.argv[i + 4]))
        return
    p = harness.bench_parser(__doc__, rounds=3, steps=1, warmup=0, threads=1)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--words", type=int, default=1200)
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--scorer", help="a causal LM folder to use instead of stories260K")
    a = p.parse_args()
    peer_python = os.path.join(harness.ROOT, ".venv-peers", "bin", "python")
    if not os.path.exists(peer_python):
        harness.skip(".venv-peers is absent (scripts/setup-peers makes it)")
    os.environ["PITH_BIN"] = a.pith  # harness.convert_stories runs this pith
    harness.pith_bin()
    if a.scorer and not os.path.isfile(os.path.join(a.scorer, "config.json")):
        harness.fail(f"--scorer {a.scorer}: no config.json there (a Hugging Face causal LM folder is wanted)")
    if not a.scorer:
        harness.stories_assets()
    with open(harness.asset("data/tinystories/tinystories_val_head.txt"), encoding="utf-8") as f:
        words = f.read().split()
    prompts = [" ".join(words[i * a.words:(i + 1) * a.words]) for i in range(a.prompts)]
    with tempfile.TemporaryDirectory() as tmp:
        if a.scorer:
            model = os.path.abspath(a.scorer)
        else:
            model = os.path.join(tmp, "stories260K")
            harness.convert_stories(model)
        prompts_path = os.path.join(tmp, "prompts.json")
        json.dump(prompts, open(prompts_path, "w"))
        lines = "".join(json.dumps({"prompt": x}) + "\n" for x in prompts)
        env = dict(os.environ, TIKTOKEN_CACHE_DIR=os.path.join(harness.ROOT, ".venv-peers", "tiktoken-cache"),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        peer = subprocess.Popen([peer_python, os.path.abspath(__file__), "--peer", model, prompts_path, str(a.rate),
                                 str(a.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if peer.stdout.readline().strip() != "ready":
            harness.fail("the llmlingua peer did not start")
        tokens = 0

        def pith_round():
            nonlocal tokens
            r = harness.run([a.pith, "compress", "--method", "llmlingua", "--scorer", model, "--rate", a.rate,
                             "--threads", a.threads, "--quiet"], stdin=lines, text=True)
            out = [json.loads(x) for x in r.stdout.splitlines()]
            tokens = sum(o["scorer_tokens"] for o in out)
            return sum(o["time_s"] for o in out)

        def peer_round():
            peer.stdin.write("go\n")
            peer.stdin.flush()
            return float(peer.stdout.readline())

        pith_s, peer_s = harness.alternate(a.rounds, [("pith", pith_round), ("llmlingua", peer_round)])
        peer.stdin.close()
        peer.wait()
    cfg = json.load(open(os.path.join(model, "config.json"))) if a.scorer else None
    shape = (f"{a.scorer}: hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, head dim "
             f"{cfg.get('head_dim') or cfg['hidden_size'] // cfg['num_attention_heads']}") if cfg else "stories260K"
    harness.print_rates(f"llmlingua at rate {a.rate}, {a.prompts} prompts of {tokens // a.prompts} scorer tokens "
                        f"({shape}), {a.threads} thread(s), median of {a.rounds} rounds:", tokens,
                        [("pith compress", pith_s), ("llmlingua 0.2.2", peer_s)])


if __name__ == "__main__":
    main()
