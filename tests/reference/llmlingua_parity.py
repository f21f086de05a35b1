#!/usr/bin/env python3
"""pith compress against llmlingua 0.2.2 (LLMLingua and LongLLMLingua), decision for decision.

Two scorers: stories260K converted by `pith convert` (real weights, max_position_embeddings 512, so
long inputs also take llmlingua's KV-cache eviction path) and a random tiny LLaMA saved by
transformers with the same tok512 tokenizer (larger init so that its scores are not all ties).
Over 40 prompts x settings (one short context that llmlingua keeps whole, long single contexts that
need several 200-token windows, several contexts with a question and an instruction, both
methods, reorder modes, question conditions, contrastive scores on and off, target_token, the
context stage alone, another context budget), per case:
  - the scorer's tokens of the token stage equal transformers' (pith's tokenizer vs HF's),
  - first-pass NLLs agree to 1e-4 relative to max(1, |nll|) (the largest difference is printed),
  - the context ranking (llmlingua's context_idxs[-1]) is the same,
  - the kept ids and the compressed prompt are the same,
  - LongLLMLingua's recovery of a response quoting the contexts gives the same text.
llmlingua's sentence-level filter is left out: it calls nltk.sent_tokenize, whose punkt data cannot
be fetched offline.

llmlingua's list KV caches are wrapped into transformers' DynamicCache in the peer (4.57 refuses
lists after the first cached window; the tensors are the same).

llmlingua needs transformers 4.x: it runs in .venv-peers (scripts/setup-peers), this script calling
itself there with --peer. Skips (exit 77) when .venv-peers, the assets or pith are missing.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

RATES = [0.3, 0.5]


def peer_main(cases_path, out_path):
    """In .venv-peers: run llmlingua on every case, with the traces the parent compares."""
    import torch
    from llmlingua import PromptCompressor
    from transformers import DynamicCache

    torch.set_num_threads(2)
    cases = json.load(open(cases_path))
    out = []
    compressors = {}
    for case in cases:
        model = case["model"]
        if model not in compressors:
            pc = PromptCompressor(model_name=model, device_map="cpu")
            # llmlingua hands the model a list of [k, v] after its first cached window; transformers
            # 4.57 wants a Cache object there (AttributeError: get_seq_length). The same tensors in a
            # DynamicCache: no change to what is computed.
            fwd = pc.model.forward

            def forward(*a, past_key_values=None, _fwd=fwd, **kw):
                if isinstance(past_key_values, (list, tuple)):
                    past_key_values = DynamicCache.from_legacy_cache(tuple((k, v) for k, v in past_key_values))
                return _fwd(*a, past_key_values=past_key_values, **kw)

            pc.model.forward = forward
            compressors[model] = pc
        pc = compressors[model]
        trace = {"first_ids": None, "first_nll": None}
        orig_get_ppl, orig_iter = pc.get_ppl, pc.iterative_compress_prompt
        state = {"in_iter": False}

        def get_ppl(*a, **kw):
            res = orig_get_ppl(*a, **kw)
            if state["in_iter"] and trace["first_nll"] is None:
                ids = kw.get("input_ids", a[2] if len(a) > 2 else None)
                trace["first_ids"] = ids[0].tolist()
                trace["first_nll"] = res[0].tolist()
            return res

        def iterative(*a, **kw):
            state["in_iter"] = True
            ids, mask = orig_iter(*a, **kw)
            state["in_iter"] = False
            trace["kept_ids"] = ids[0].tolist()
            return ids, mask

        pc.get_ppl, pc.iterative_compress_prompt = get_ppl, iterative
        pc.context_idxs = []
        try:
            res = pc.compress_prompt(case["context"], instruction=case.get("instruction", ""),
                                     question=case.get("question", ""), **case["kwargs"])
            out.append({"prompt": res["compressed_prompt"], "rank": pc.context_idxs[-1] if pc.context_idxs else None,
                        "cl100k": [res["origin_tokens"], res["compressed_tokens"]], **trace})
            if "response" in case:
                original = "\n\n".join([case.get("instruction", "")] + case["context"] + [case.get("question", "")])
                out[-1]["recovered"] = pc.recover(original.strip(), res["compressed_prompt"], case["response"])
        except Exception as e:  # noqa: BLE001 - reported as a mismatch by the parent
            out.append({"error": f"{type(e).__name__}: {e}"})
        pc.get_ppl, pc.iterative_compress_prompt = orig_get_ppl, orig_iter
    json.dump(out, open(out_path, "w"))


def make_random_llama(folder, tokenizer_from):
    """A random tiny LLaMA saved by transformers, with stories260K's tokenizer files."""
    import shutil
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(7)
    cfg = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      initializer_range=0.3, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_from, f), os.path.join(folder, f))


def stories(n_chars_each, count, skip=0):
    text = open(harness.asset("data/tinystories/tinystories_val_head.txt")).read()
    parts = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 80][skip:]
    return [p[:n_chars_each] for p in parts[:count]]


# pith options of each llmlingua kwarg set
def pith_flags(method, kw):
    f = ["--method", method]
    if "rate" in kw:
        f += ["--rate", str(kw["rate"])]
    if kw.get("target_token", -1) > 0:
        f += ["--target-tokens", str(kw["target_token"])]
    if "condition_in_question" in kw:
        f += ["--condition-in-question", kw["condition_in_question"]]
    if "condition_compare" in kw:
        f += ["--condition-compare", "on" if kw["condition_compare"] else "off"]
    if "reorder_context" in kw:
        f += ["--reorder-context", kw["reorder_context"]]
    if "dynamic_context_compression_ratio" in kw:
        f += ["--dynamic-ratio", str(kw["dynamic_context_compression_ratio"])]
    if "rank_method" in kw:
        f += ["--rank-method", kw["rank_method"]]
    if "iterative_size" in kw:
        f += ["--iterative-size", str(kw["iterative_size"])]
    if "context_budget" in kw:
        f += ["--context-budget", kw["context_budget"]]
    if kw.get("use_token_level_filter") is False:
        f += ["--no-token-filter"]
    return f


LONG = {"condition_in_question": "after_condition", "reorder_context": "sort",
        "dynamic_context_compression_ratio": 0.3, "condition_compare": True, "context_budget": "+100",
        "rank_method": "longllmlingua"}


def build_cases(models):
    short = stories(300, 3)
    # 1100-1500 tokens each: several windows, and past 512 positions (stories260K's context) the
    # KV-cache eviction path
    longs = ["\n\n".join(stories(2000, 12, skip=10 + 12 * i)) for i in range(3)]
    docs = stories(500, 12, skip=30)
    q1, q2 = "What did the little girl find in the park?", "Why was the cat sad?"
    ins = "Answer the question from the stories."
    specs = []  # (method, prompt, llmlingua kwargs)
    for s in short[:2]:
        specs.append(("llmlingua", {"context": [s]}, {"rate": 0.3}))
    for i, text in enumerate(longs):
        for r in RATES:
            specs.append(("llmlingua", {"context": [text]}, {"rate": r}))
    specs.append(("llmlingua", {"context": [longs[0]]}, {"rate": 0.4, "iterative_size": 100}))
    specs.append(("llmlingua", {"context": docs[:5], "question": q1, "instruction": ins}, {"rate": 0.5}))
    specs.append(("llmlingua", {"context": docs[3:9], "question": q2}, {"rate": 0.3}))
    specs.append(("llmlingua", {"context": docs[:6]}, {"target_token": 150}))
    specs.append(("longllmlingua", {"context": docs[:5], "question": q1, "instruction": ins}, {"rate": 0.5, **LONG}))
    specs.append(("longllmlingua", {"context": docs[4:10], "question": q2}, {"rate": 0.4, **LONG}))
    specs.append(("longllmlingua", {"context": docs[:6], "question": q2},
                  {"rate": 0.5, **LONG, "reorder_context": "two_stage"}))
    specs.append(("longllmlingua", {"context": docs[6:12], "question": q1},
                  {"rate": 0.5, **LONG, "reorder_context": "original", "condition_in_question": "before"}))
    specs.append(("longllmlingua", {"context": docs[:4], "question": q1},
                  {"rate": 0.5, **LONG, "condition_compare": False}))
    specs.append(("longllmlingua", {"context": [longs[1]], "question": q1}, {"rate": 0.4, **LONG}))
    specs.append(("llmlingua", {"context": docs[2:8], "question": q2}, {"rate": 0.4, "use_token_level_filter": False}))
    specs.append(("longllmlingua", {"context": docs[:6], "question": q2}, {"rate": 0.3, **LONG, "context_budget": "*1.5"}))
    cases = []
    # LongLLMLingua's recovery: answers quoting (partly compressed) words of the contexts
    for i, (method, prompt, kw) in enumerate(specs):
        if method == "longllmlingua":
            words = prompt["context"][0].split()
            prompt["response"] = f"I think {' '.join(words[2 + i:12 + i])}, and  then {' '.join(words[20:24])}."
    for model in models:
        for method, prompt, kw in specs:
            cases.append({"model": model, "method": method, **prompt, "kwargs": kw})
    return cases


def main():
    pith = harness.pith_bin()
    peer_python = os.path.join(harness.ROOT, ".venv-peers", "bin", "python")
    if not os.path.exists(peer_python):
        harness.skip(".venv-peers is absent (scripts/setup-peers makes it: llmlingua 0.2.2 + transformers 4.57.6)")
    harness.stories_assets()
    tiktoken_cache = os.path.join(harness.ROOT, ".venv-peers", "tiktoken-cache")
    with tempfile.TemporaryDirectory() as tmp:
        stories_dir = os.path.join(tmp, "stories260K")
        harness.convert_stories(stories_dir)
        rand_dir = os.path.join(tmp, "random_llama")
        make_random_llama(rand_dir, stories_dir)
        cases = build_cases([stories_dir, rand_dir])
        cases_path, peer_out = os.path.join(tmp, "cases.json"), os.path.join(tmp, "peer.json")
        json.dump(cases, open(cases_path, "w"))
        env = dict(os.environ, TIKTOKEN_CACHE_DIR=tiktoken_cache, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        peer = subprocess.Popen([peer_python, os.path.abspath(__file__), "--peer", cases_path, peer_out], env=env)

        # pith: one process per (model, flags), prompts as JSON lines
        ours = [None] * len(cases)
        groups = {}
        for i, c in enumerate(cases):
            key = (c["model"], tuple(pith_flags(c["method"], c["kwargs"])))
            groups.setdefault(key, []).append(i)
        for (model, flags), idxs in groups.items():
            lines = [{k: cases[i][k] for k in ("context", "question", "instruction", "response") if k in cases[i]}
                     for i in idxs]
            r = harness.run([pith, "compress", "--scorer", model, "--trace", "--quiet", "--threads", "1", *flags],
                            stdin="".join(json.dumps(x) + "\n" for x in lines), text=True, ok=False)
            if r.returncode != 0:
                harness.fail(f"pith compress {' '.join(flags)}: {r.stderr.strip()}")
            for i, line in zip(idxs, r.stdout.split("\n")):
                ours[i] = json.loads(line)
        if peer.wait() != 0:
            harness.fail("the llmlingua peer failed (its output is above)")
        theirs = json.load(open(peer_out))

        worst_nll, n_nll = 0.0, 0
        for i, (c, a, b) in enumerate(zip(cases, ours, theirs)):
            name = f"case {i} ({os.path.basename(c['model'])}, {c['method']}, {c['kwargs']}, {len(c['context'])} contexts)"
            if "error" in b:
                harness.expect(False, f"{name}: llmlingua failed: {b['error']}")
                continue
            if b["first_ids"] is not None:
                # pith's trace holds the token stage's ids after the question prefix; llmlingua's, all
                ok = harness.expect(b["first_ids"][len(b["first_ids"]) - len(a["scorer_ids"]):] == a["scorer_ids"],
                                    f"{name}: token-stage ids differ (tokenizers disagree)")
                if ok and len(a["first_nll"]) == len(b["first_nll"]):
                    # relative to max(1, |nll|): the random model's NLLs reach ~20
                    d = max((abs(x - y) / max(1.0, abs(y)) for x, y in zip(a["first_nll"], b["first_nll"])),
                            default=0.0)
                    worst_nll, n_nll = max(worst_nll, d), n_nll + len(a["first_nll"])
                    harness.expect(d < 1e-4, f"{name}: first-pass NLL differs by {d:.2e} (relative)")
                else:
                    harness.expect(False, f"{name}: first pass scored {len(a['first_nll'])} vs {len(b['first_nll'])}")
            if b["rank"] is not None:
                harness.expect(a.get("context_rank") == b["rank"],
                               f"{name}: context ranking {a.get('context_rank')} vs llmlingua {b['rank']}")
            if "kept_ids" in b:
                harness.expect(a["kept_ids"] == b["kept_ids"],
                               f"{name}: kept ids differ ({len(a['kept_ids'])} vs {len(b['kept_ids'])} kept)")
            if "recovered" in b:
                harness.expect(a.get("recovered_response") == b["recovered"],
                               f"{name}: recovered response {a.get('recovered_response')!r} vs {b['recovered']!r}")
            harness.expect(a["compressed_prompt"] == b["prompt"],
                           f"{name}: compressed prompts differ:\n  pith:      {a['compressed_prompt'][:160]!r}\n"
                           f"  llmlingua: {b['prompt'][:160]!r}")
        print(f"{len(cases)} cases; first-pass NLL: max |pith - transformers| / max(1, |nll|) = {worst_nll:.2e} "
              f"over {n_nll} tokens")
        print(f"token stage: up to {max(a['scorer_tokens'] for a in ours)} tokens, up to "
              f"{max(a['windows'] for a in ours)} windows")
        harness.check(max(a["windows"] for a in ours) >= 5, "no case took five windows or more")
        # llmlingua's drift: the rate it reports (cl100k tokens) against the one asked for
        drift = {}
        for c, b in zip(cases, theirs):
            if "rate" in c["kwargs"] and "cl100k" in b:
                o, k = b["cl100k"]
                drift.setdefault(c["kwargs"]["rate"], []).append(k / o)
        for rate, got in sorted(drift.items()):
            print(f"llmlingua at rate {rate}: achieved {min(got):.3f} .. {max(got):.3f} (cl100k) over {len(got)} prompts")
        rec = [a["recovered_response"] for a in ours if "recovered_response" in a]
        print(f"{len(rec)} recovered responses, e.g. {rec[0]!r}")
        kept = [a["scorer_kept"] / max(1, a["scorer_tokens"]) for a in ours]
        print(f"kept fraction of scorer tokens: min {min(kept):.3f}, max {max(kept):.3f}")
    if harness.MISMATCHES:
        harness.fail(f"{len(harness.MISMATCHES)} mismatches")
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2], sys.argv[3])
    else:
        main()
