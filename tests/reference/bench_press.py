"""KV-press generation speed: `pith generate --press snapkv:0.5 --question` next to kvpress 0.5.5's
pipeline steps (prefill of the context under SnapKVPress(0.5), the question at positions after the
context, greedy decoding) on the same CPU, threads, model and ids.

The model: a random LLaMA saved by transformers (random_model_folder.random_llama; 6 layers, hidden
512, 8 heads / 4 KV heads, vocabulary 32000 tied: ~34M parameters, f32), the llama2 tokenizer; the
context: --context tokens of TinyStories (BOS first), the question " What happened in the story?".
pith runs first once to write the ids (--ids-out); kvpress then reads exactly those ids.

Each side's figure is the generation alone, not loading: pith's own "prefill + press + question" and
"decode" times from its stderr (one process per round, so its peak RSS is that of a whole `pith
generate` run); the peer (in .venv-peers, scripts/setup-peers) keeps its model loaded and times its
prefill + question + decoding per round. Rounds alternate; medians. Peak memory: each process's peak
RSS (ru_maxrss: pith's per run, the peer's whole life, Python, torch and transformers included), and
the KV bytes each keeps after the press (pith: its compact cache, kv_cache_bytes; kvpress: the
DynamicCache's keys and values after the prefill).

With --rows N > 1, N contexts of different lengths: pith generates them as one batch (generate_pressed,
through tests/press_tool gen, whose figure is generate_pressed's wall time; pith generate itself takes one
prompt), kvpress one after another (it runs batch size 1). A second figure, not the issue's bar.

A second measure, steadier on a loaded machine: the thread CPU seconds of the same generation on each
side (1 thread: the work runs on the calling thread), pith's from press_tool gen (the generate_pressed
call pith generate makes, in a round of its own), the peer's from time.thread_time. The load average
is printed before and after.

usage: bench_press.py --pith PATH [--rounds 3] [--threads 1] [--context 1536] [--new 64] [--press snapkv:0.5]
                      [--model 34m|small]
                      [--rows N [--press-tool PATH]]
"""
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import harness

# --model small: the same vocabulary, hidden 128 and 4 layers (~4.6M parameters, most of them the
# embedding): a model whose steps are short enough that what each side spends around the math shows.
SMALL = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4,
         "num_key_value_heads": 2}
MODEL = {"vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 6,
         "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 4096,
         "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}
QUESTION = " What happened in the story?"


def peer_main(model_dir, rows_path, threads, ratio, n_new):
    """In .venv-peers: load the model once, then per line read from stdin one generation per row, one
    row after another (kvpress runs batch size 1)."""
    import torch
    from kvpress import SnapKVPress
    from transformers import AutoModelForCausalLM, DynamicCache

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    rows = [(torch.tensor([c]), torch.tensor([q])) for c, q in json.load(open(rows_path))]
    press = SnapKVPress(compression_ratio=ratio)
    print("ready", flush=True)
    for _ in sys.stdin:
        prefill_s = decode_s = cpu_s = 0.0
        kv, news = 0, []
        for ctx, q in rows:
            with torch.no_grad():
                c0 = time.thread_time()
                t0 = time.perf_counter()
                cache = DynamicCache()
                with press(model):  # kvpress's pipeline: the context through model.model under the press
                    model.model(input_ids=ctx, past_key_values=cache)
                kv += sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
                L = ctx.shape[1]
                pos = torch.arange(L, L + q.shape[1]).unsqueeze(0)
                out = model(input_ids=q, past_key_values=cache, position_ids=pos, logits_to_keep=1)
                t1 = time.perf_counter()
                pos = pos[:, -1:] + 1
                new = [out.logits[0, -1].argmax()]
                for i in range(n_new - 1):  # generate_answer's loop (without its eos stop: every side decodes n_new)
                    out = model(input_ids=new[-1].view(1, 1), past_key_values=cache, position_ids=pos + i)
                    new.append(out.logits[0, -1].argmax())
                t2 = time.perf_counter()
                cpu_s += time.thread_time() - c0
            prefill_s += t1 - t0
            decode_s += t2 - t1
            news.append([int(x) for x in new])
        print(json.dumps({"prefill_s": prefill_s, "decode_s": decode_s, "cpu_s": cpu_s, "kv_bytes": kv, "new": news,
                          "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)


def main():
    if "--peer" in sys.argv:
        i = sys.argv.index("--peer")
        peer_main(sys.argv[i + 1], sys.argv[i + 2], int(sys.argv[i + 3]), float(sys.argv[i + 4]), int(sys.argv[i + 5]))
        return
    p = harness.bench_parser(__doc__, rounds=3, steps=1, warmup=0, threads=1)
    p.add_argument("--context", type=int, help="context tokens (BOS included; default 1536, 400 for stories260k)")
    p.add_argument("--new", type=int, default=64, help="new tokens (the first after the question, then decode steps)")
    p.add_argument("--press", default="snapkv:0.5", help="snapkv:RATIO (the peer runs SnapKVPress)")
    p.add_argument("--rows", type=int, default=1,
                   help="> 1: that many contexts of different lengths (the context cut at both ends by 40·i and 64·i "
                        "tokens), pith as one batch (generate_pressed through press_tool gen, 1 thread), kvpress one "
                        "after another")
    p.add_argument("--model", choices=("34m", "small", "stories260k"), default="34m",
                   help="34m (default): the model above; small: hidden 128, 4 layers, 4 heads / 2 KV heads; "
                        "stories260k: the real stories260K of the assets, converted by pith convert (its own "
                        "512-token vocabulary and tokenizer, 512 positions)")
    p.add_argument("--press-tool", help="press_tool for --rows (default: tests/press_tool beside --pith)")
    a = p.parse_args()
    if a.context is None:
        a.context = 400 if a.model == "stories260k" else 1536
    m = re.fullmatch(r"snapkv:([0-9.]+)", a.press)
    if not m:
        harness.fail(f"--press {a.press!r}: this bench compares snapkv:RATIO only")
    ratio = float(m.group(1))
    peer_python = os.path.join(harness.ROOT, ".venv-peers", "bin", "python")
    if not os.path.exists(peer_python):
        harness.skip(".venv-peers is absent (scripts/setup-peers makes it)")
    os.environ["PITH_BIN"] = a.pith
    harness.pith_bin()
    tok = harness.asset("tokenizers/llama2/tokenizer.bin")
    words = open(harness.asset("data/tinystories/tinystories_val_head.txt"), encoding="utf-8").read().split()
    from random_model_folder import random_llama

    with tempfile.TemporaryDirectory() as tmp:
        if a.model == "stories260k":
            model = os.path.join(tmp, "stories260K")
            harness.convert_stories(model)
            shape = json.load(open(os.path.join(model, "config.json")))
            tok = model  # the converted folder's own tokenizer
            if a.context + 8 + a.new > shape["max_position_embeddings"]:
                harness.fail(f"--context {a.context} + the question + {a.new} new tokens exceed stories260K's "
                             f"{shape['max_position_embeddings']} positions")
        else:
            model = os.path.join(tmp, "random_llama")
            shape = dict(MODEL, **SMALL) if a.model == "small" else MODEL
            random_llama(shape, model)
        n_params = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)
                       if f.endswith(".safetensors")) // 4
        # A prompt of about --context tokens: words until pith's tokenizer gives enough, cut to the count.
        ids_path = os.path.join(tmp, "ids.json")
        # (stories260K's 512-token vocabulary splits a word into about 2.5 tokens, llama2's into 1.1)
        text = " ".join(words[:int(a.context * (0.3 if a.model == "stories260k" else 0.9))])

        def pith_cmd(prompt):
            return [a.pith, "generate", "--model", model, "--tokenizer", tok, "--prompt", prompt, "--question",
                    QUESTION, "--press", a.press, "--max-new-tokens", str(a.new), "--threads", str(a.threads),
                    "--ids-out", ids_path]

        for _ in range(20):
            harness.run(pith_cmd(text) + ["--max-new-tokens", "1"], text=True)
            n = len(json.load(open(ids_path))["prompt"])
            if n >= a.context:
                break
            text = " ".join(words[:int(len(text.split()) * a.context / n) + 8])
        # Cut the text at the word where the count is reached (pith's tokenizer again decides).
        ws = text.split()
        lo, hi = 1, len(ws)
        while lo < hi:  # the fewest words that reach --context tokens
            mid = (lo + hi) // 2
            harness.run(pith_cmd(" ".join(ws[:mid])) + ["--max-new-tokens", "1"], text=True)
            if len(json.load(open(ids_path))["prompt"]) >= a.context:
                hi = mid
            else:
                lo = mid + 1
        prompt = " ".join(ws[:lo])
        harness.run(pith_cmd(prompt), text=True)
        ids = json.load(open(ids_path))
        rows = [[ids["prompt"][:1] + ids["prompt"][1 + 40 * i:len(ids["prompt"]) - 64 * i], ids["question"]]
                for i in range(a.rows)]
        rows_path = os.path.join(tmp, "rows.json")
        json.dump(rows, open(rows_path, "w"))
        press_tool = a.press_tool or os.path.join(os.path.dirname(os.path.abspath(a.pith)), "tests", "press_tool")
        if not os.path.exists(press_tool):
            harness.fail(f"press_tool is absent ({press_tool}; give --press-tool)")
        if a.rows > 1 and a.threads != 1:
            harness.fail("--rows needs --threads 1 (press_tool runs one thread)")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        peer = subprocess.Popen([peer_python, os.path.abspath(__file__), "--peer", model, rows_path, str(a.threads),
                                 str(ratio), str(a.new)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env)
        if peer.stdout.readline().strip() != "ready":
            harness.fail("the kvpress peer did not start")
        info = {}

        def pith_batch_round():
            out_path = os.path.join(tmp, "gen.json")
            cmd = [press_tool, "gen", model, a.press, str(a.new)] + [",".join(map(str, c)) + "|" + ",".join(map(str, q))
                                                                      for c, q in rows]
            with open(out_path, "w") as out:
                proc = subprocess.Popen(cmd, stdout=out)
                _, status, ru = os.wait4(proc.pid, 0)
            if status != 0:
                harness.fail("press_tool gen failed (its output is above)")
            r = json.loads(open(out_path).read().splitlines()[-1])
            if a.rows > 1:
                info["pith"] = {"prefill_s": float("nan"), "decode_s": float("nan"), "kv_bytes": r["kv_bytes"],
                                "kv_dense": None, "maxrss_kb": ru.ru_maxrss, "new": r["new"]}
            info["pith_cpu_new"] = r["new"]
            return (r["gen_s"], r["cpu_s"])

        def pith_round():
            err_path = os.path.join(tmp, "stderr.txt")
            with open(err_path, "w") as err:
                proc = subprocess.Popen(pith_cmd(prompt), stdout=subprocess.DEVNULL, stderr=err)
                _, status, ru = os.wait4(proc.pid, 0)
            msg = open(err_path).read()
            if status != 0:
                harness.fail(f"pith generate failed: {msg}")
            t = re.search(r"prefill \+ press \+ question ([0-9.]+) s, decode ([0-9.]+) s", msg)
            kv = re.search(r"the cache holds (\d+) bytes \(K/V (\d+) \+ their index (\d+)\) vs (\d+) uncompressed", msg)
            if not t or not kv:
                harness.fail(f"pith generate's stderr lacks its times or KV bytes: {msg}")
            info["pith"] = {"prefill_s": float(t.group(1)), "decode_s": float(t.group(2)), "kv_bytes": int(kv.group(1)),
                            "kv_dense": int(kv.group(4)), "maxrss_kb": ru.ru_maxrss,
                            "new": [json.load(open(ids_path))["new"]]}
            return (float(t.group(1)) + float(t.group(2)),)

        def peer_round():
            peer.stdin.write("go\n")
            peer.stdin.flush()
            r = json.loads(peer.stdout.readline())
            info["kvpress"] = r
            return (r["prefill_s"] + r["decode_s"], r["cpu_s"])

        load_before = os.getloadavg()
        if a.rows == 1:  # pith generate (wall), press_tool gen (CPU), kvpress (both)
            pith_s, cpu_s, peer_s = harness.alternate(a.rounds, [("pith", pith_round), ("pith-cpu", pith_batch_round),
                                                                 ("kvpress", peer_round)])
        else:
            pith_s, peer_s = harness.alternate(a.rounds, [("pith", pith_batch_round), ("kvpress", peer_round)])
            cpu_s = pith_s
        load_after = os.getloadavg()
        peer.stdin.close()
        peer.wait()
    mp, mk = statistics.median(x[0] for x in pith_s), statistics.median(x[0] for x in peer_s)
    cp, ck = statistics.median(x[1] for x in cpu_s), statistics.median(x[1] for x in peer_s)
    ip, ik = info["pith"], info["kvpress"]
    lens = [len(c) for c, _ in rows]
    what = "stories260K" if a.model == "stories260k" else "a random LLaMA"
    print(f"{a.press} on {what} of {n_params / 1e6:.1f}M parameters (f32, {shape['num_hidden_layers']} layers, "
          f"{shape['num_key_value_heads']} KV heads of {shape['hidden_size'] // shape['num_attention_heads']}), "
          f"{a.rows} context(s) of {lens} tokens + question {len(ids['question'])}, {a.new} new tokens (greedy), "
          f"{a.threads} thread(s), median of {a.rounds} rounds (prefill + press + question, then decoding):")
    if a.rows == 1:
        print(f"  pith generate:  {mp:7.3f} s (last round: prefill {ip['prefill_s']:.3f} s, decode "
              f"{ip['decode_s']:.3f} s; {len(ip['new'][0])} new)")
    else:
        print(f"  pith (one batch of {a.rows} rows, generate_pressed through press_tool gen): {mp:7.3f} s")
    print(f"  kvpress 0.5.5:  {mk:7.3f} s (last round: prefill {ik['prefill_s']:.3f} s, decode {ik['decode_s']:.3f} s"
          f"{', the rows one after another' if a.rows > 1 else ''})")
    print(f"  speed ratio (kvpress time / pith time): {mk / mp:.2f}x")
    print(f"  thread CPU time, median: pith {cp:.3f} s (generate_pressed through press_tool gen), kvpress {ck:.3f} s; "
          f"ratio {ck / cp:.2f}x")
    print(f"  load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; after: "
          f"{', '.join(f'{x:.1f}' for x in load_after)} ({os.cpu_count()} CPUs)")
    dense = f"; dense would be {ip['kv_dense']}" if ip["kv_dense"] else ""
    print(f"  KV kept after the press: pith {ip['kv_bytes']} bytes (kept K/V + the compact layers' index{dense}), kvpress "
          f"{ik['kv_bytes']} bytes (DynamicCache K/V{', summed over the rows' if a.rows > 1 else ''})")
    print(f"  peak RSS: pith {ip['maxrss_kb'] / 1024:.0f} MiB (its whole process), kvpress "
          f"{ik['maxrss_kb'] / 1024:.0f} MiB (its process: python, torch, transformers, the model)")
    same = all(g == w[:len(g)] for g, w in zip(ip["new"], ik["new"])) and \
        all(g == w[:len(g)] for g, w in zip(info["pith_cpu_new"], ik["new"]))
    print(f"  same greedy tokens on both sides: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
