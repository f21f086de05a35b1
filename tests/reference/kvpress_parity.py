#!/usr/bin/env python3
"""pith's KV presses (models/press.h, through press_tool) against kvpress 0.5.5: the same kept
positions per layer and KV head.

Two models: a random tiny LLaMA saved by transformers (4 heads, 2 KV heads, initializer_range 0.3
so that scores are spread, not ties) and stories260K converted by `pith convert` (real weights;
8 heads, 4 KV heads). Two contexts of TinyStories token ids (BOS first, ids, not strings) of
different lengths (over 128 tokens, so that snapkv's 64-token window fits and, at ratio 0.5, is
kept whole). Every press at ratios 0.25 and 0.5, kvpress's defaults, plus snapkv with other
window and kernel, expected_attention without covariance or vnorm, and adaptive (AdaKVPress) over
snapkv, knorm and expected_attention.

pith scores both contexts as one batch (right padding: each row over its own tokens) while kvpress
runs each alone (batch size 1): the kept positions must be equal sets, per (layer, context, KV head).
kvpress's kept set is read from the cache it leaves: each kept key matched exactly against the
layer's uncompressed keys (gather copies them); for AdaKVPress, the complement of
module.masked_key_indices (it only masks). observed_attention runs under eager attention (kvpress
asserts it), the others under sdpa (AdaKVPress refuses eager).

Generation: for each press at 0.25 and 0.5 (every kind, and adaptive over snapkv, knorm and
expected_attention) on both models, a question (ids) after each context, 12 greedy tokens. kvpress
runs its pipeline's steps by hand with ids (KVPressTextGenerationPipeline._forward: the context
prefilled through model.model under the press, then generate_answer's loop: the question at
positions context_length + i, argmax, no eos), one context at a time; pith runs both contexts as
ONE batch (press_tool gen: generate_pressed, rows of different context and question lengths) and
must give each row kvpress's tokens exactly. AdaKVPress only masks: at decoding its attention patch
overwrites the masked keys with a searched "fake key" (search_hyperplane) whose attention should
underflow to 0; pith frees those entries. Where the search fails (ValueError) the case is printed,
not compared. A mismatch prints both sequences and the top-2 logit gap of kvpress's model at the
first difference. Plus `pith generate --press snapkv:0.5 --question` (the CLI, text in, --ids-out)
against kvpress on the ids it wrote. Before the peer (so also where it is absent): pith generate
--press refuses bad specs and a window too long for the prompt (exit 2), and ratio 0 gives plain
generation's tokens.

The peer needs transformers 4.x: it runs in .venv-peers (scripts/setup-peers), this script calling
itself there with --peer. Skips (exit 77) when .venv-peers, kvpress, the assets, pith or
press_tool are missing.

usage: kvpress_parity.py PATH_TO_press_tool
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

RATIOS = [0.25, 0.5]


def specs():
    """(pith spec, kvpress class name, its kwargs, adaptive, eager)."""
    out = []
    for r in RATIOS:
        out += [
            (f"knorm:{r}", "KnormPress", {}, False, False),
            (f"streaming_llm:{r}", "StreamingLLMPress", {}, False, False),
            (f"snapkv:{r}", "SnapKVPress", {}, False, False),
            (f"expected_attention:{r}", "ExpectedAttentionPress", {}, False, False),
            (f"tova:{r}", "TOVAPress", {}, False, False),
            (f"observed_attention:{r}", "ObservedAttentionPress", {}, False, True),
            (f"adakv-snapkv:{r}", "SnapKVPress", {}, True, False),
            (f"adakv-knorm:{r}", "KnormPress", {}, True, False),
            (f"adakv-expected_attention:{r}", "ExpectedAttentionPress", {}, True, False),
        ]
    out += [
        ("snapkv:0.5:window=32,kernel=7", "SnapKVPress", {"window_size": 32, "kernel_size": 7}, False, False),
        ("streaming_llm:0.25:n_sink=8", "StreamingLLMPress", {"n_sink": 8}, False, False),
        ("expected_attention:0.5:use_covariance=false,use_vnorm=false,n_sink=2",
         "ExpectedAttentionPress", {"use_covariance": False, "use_vnorm": False, "n_sink": 2}, False, False),
        ("expected_attention:0.25:n_future_positions=64,epsilon=0.01",
         "ExpectedAttentionPress", {"n_future_positions": 64, "epsilon": 0.01}, False, False),
        ("adakv-snapkv:0.5:alpha_safeguard=0.5,window_size=16", "SnapKVPress", {"window_size": 16}, True, False),
    ]
    return out


N_NEW = 12


def gen_specs():
    """Generation parity: every press at both ratios, and AdaKV over snapkv, knorm, expected_attention."""
    return [x for x in specs() if "=" not in x[0]]


def compare_generation(gen_cases, ours, theirs, tied_ctx):
    """Token-for-token equality per (press, model, context); AdaKV cases where kvpress's fake-key search
    failed are printed and left out. A difference where the kept sets themselves differ by tied
    entries (tied_ctx: (model, spec, context) from the kept-set comparison: knorm on repeated tokens,
    whose key norms are equal up to rounding) is printed, both sequences, and counted apart; any other
    difference fails."""
    n_eq = n_rows = 0
    failed_search, tie_diff = [], []
    for c, a, b in zip(gen_cases, ours, theirs):
        mname = os.path.basename(c["model"])
        for ci, (got, want) in enumerate(zip(a["new"], b)):
            if "error" in want:
                failed_search.append(f"{mname} {c['spec']} context {ci}: {want['error']}")
                continue
            n_rows += 1
            w = want["new"]
            if "(pith generate)" in c["spec"] and len(got) < len(w) and got and got[-1] == 2:
                w = w[:len(got)]  # the CLI stops at eos (id 2); kvpress's loop here does not
            if got == w:
                n_eq += 1
                continue
            i = next((j for j in range(min(len(got), len(w))) if got[j] != w[j]), min(len(got), len(w)))
            gap = want["gaps"][i] if i < len(want["gaps"]) else float("nan")
            what = (f"{mname} {c['spec']} context {ci} (L={len(c['contexts'][ci])}): generation differs at token {i} "
                    f"(kvpress's top-2 logit gap there {gap:.3g})\n  pith:    {got}\n  kvpress: {w}")
            if (mname, c["spec"], ci) in tied_ctx:
                tie_diff.append(what)
                print(f"DIFFERS (the kept sets differ by tied entries, see above): {what}")
            else:
                harness.expect(False, what)
    print(f"generation: {n_eq}/{n_rows} (press, model, context) greedy sequences of {N_NEW} tokens equal to kvpress's "
          f"pipeline (pith: both contexts in one batch); {len(tie_diff)} differ after kept sets that differ by ties")
    for f in failed_search:
        print(f"generation not compared (kvpress's AdaKV fake-key search failed): {f}")
    print(f"generation: {len(failed_search)} AdaKV rows without a kvpress reference")


def ratio_of(spec):
    return float(spec.split(":")[1])


def peer_main(cases_path, out_path):
    """In .venv-peers: kvpress on every (model, context, press); the kept sets and the scores."""
    try:
        import kvpress
        import torch
        from transformers import AutoModelForCausalLM, DynamicCache
    except ImportError as e:
        print(f"SKIP: kvpress in .venv-peers: {e}")
        sys.exit(harness.SKIP)
    torch.set_num_threads(1)
    all_cases = json.load(open(cases_path))
    cases = all_cases["keep"]
    models = {}

    def model_for(folder, eager):
        key = (folder, eager)
        if key not in models:
            models[key] = AutoModelForCausalLM.from_pretrained(
                folder, torch_dtype=torch.float32, attn_implementation="eager" if eager else "sdpa").eval()
        return models[key]

    out = []
    for case in cases:
        model = model_for(case["model"], case["eager"])
        scorer = getattr(kvpress, case["cls"])(compression_ratio=case["ratio"], **case["kwargs"])
        press = kvpress.AdaKVPress(scorer) if case["adaptive"] else scorer
        if case["adaptive"] and "alpha_safeguard" in case:
            press.alpha_safeguard = case["alpha_safeguard"]
        layers = model.model.layers
        ctx_kept, ctx_scores, ctx_ms = [], [], []
        for ids in case["contexts"]:
            kept, scores = [None] * len(layers), [None] * len(layers)
            orig_hook, orig_score = press.forward_hook, scorer.score

            def score(module, *a, _orig=orig_score, _scores=scores):
                s = _orig(module, *a)
                _scores[module.layer_idx] = s[0].tolist()  # before AdaKVPress scatters into it
                return s

            scorer.score = score

            def hook(module, inp, kwargs, output, _orig=orig_hook, _kept=kept):
                cache_layer = kwargs["past_key_values"].layers[module.layer_idx]
                before = cache_layer.keys.clone()
                res = _orig(module, inp, kwargs, output)
                after = cache_layer.keys
                if after.shape[2] != before.shape[2]:  # a scorer press gathered the kept keys
                    heads = []
                    for h in range(before.shape[1]):
                        eq = (after[0, h, :, None, :] == before[0, h, None, :, :]).all(-1)  # (kept, L)
                        if not bool((eq.sum(1) == 1).all()):
                            raise RuntimeError("a kept key matches no single uncompressed key")
                        heads.append(sorted(eq.float().argmax(1).tolist()))
                    _kept[module.layer_idx] = heads
                return res

            press.forward_hook = hook
            t0 = time.perf_counter()
            with torch.no_grad(), press(model):
                model(input_ids=torch.tensor([ids]), past_key_values=DynamicCache(), use_cache=True)
            ctx_ms.append((time.perf_counter() - t0) * 1e3)
            del press.forward_hook
            del scorer.score
            L = len(ids)
            for li, layer in enumerate(layers):
                if case["adaptive"]:
                    mk = getattr(layer.self_attn, "masked_key_indices", None)
                    masked = set()
                    if mk is not None:
                        masked = set(zip(mk[1].tolist(), mk[2].tolist()))
                    n_kv = model.config.num_key_value_heads
                    kept[li] = [[j for j in range(L) if (h, j) not in masked] for h in range(n_kv)]
                elif kept[li] is None:  # nothing evicted
                    kept[li] = [list(range(L))] * model.config.num_key_value_heads
            ctx_kept.append(kept)
            ctx_scores.append(scores)
        out.append({"kept": ctx_kept, "scores": ctx_scores, "ms": ctx_ms})
    gen_out = [peer_generate(model_for(c["model"], c["eager"]), c) for c in all_cases["gen"]]
    json.dump({"keep": out, "gen": gen_out}, open(out_path, "w"))


def make_press(case):
    import kvpress
    scorer = getattr(kvpress, case["cls"])(compression_ratio=case["ratio"], **case["kwargs"])
    return kvpress.AdaKVPress(scorer) if case["adaptive"] else scorer


def peer_generate(model, case):
    """kvpress's pipeline steps with ids, per context: _forward's prefill under the press, then
    generate_answer's greedy loop (returning ids, and each step's top-2 logit gap). For AdaKVPress,
    the decoding runs through kvpress's attention patch (its fake keys), as in the pipeline."""
    import torch
    from transformers import DynamicCache
    press = make_press(case)
    res = []
    for ids, q in zip(case["contexts"], case["questions"]):
        cache = DynamicCache()
        try:
            with torch.no_grad():
                with press(model):
                    model.model(input_ids=torch.tensor([ids]), past_key_values=cache)
                L = len(ids)
                pos = torch.arange(L, L + len(q)).unsqueeze(0)
                out = model(input_ids=torch.tensor([q]), past_key_values=cache, position_ids=pos, logits_to_keep=1)
                pos = pos[:, -1:] + 1
                new, gaps = [], []
                for i in range(case["n_new"]):
                    if i:
                        out = model(input_ids=torch.tensor([[new[-1]]]), past_key_values=cache, position_ids=pos + i - 1)
                    lg = out.logits[0, -1].float()
                    top = torch.topk(lg, 2).values
                    new.append(int(lg.argmax()))
                    gaps.append(float(top[0] - top[1]))
            res.append({"new": new, "gaps": gaps})
        except ValueError as e:  # AdaKV's fake-key search (search_hyperplane) can fail
            res.append({"error": str(e)})
    return res


def make_random_llama(folder):
    """A random tiny LLaMA (GQA: 4 heads, 2 KV heads) saved by transformers, weights spread wide."""
    torch, transformers = harness.require("torch", "transformers")
    torch.manual_seed(11)
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                   initializer_range=0.3, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)


def contexts(stories_dir):
    """Two TinyStories contexts as tok512 ids, BOS first: 150 and 197 tokens."""
    tokenizers = harness.require("tokenizers")
    tok = tokenizers.Tokenizer.from_file(os.path.join(stories_dir, "tokenizer.json"))
    text = open(harness.asset("data/tinystories/tinystories_val_head.txt")).read()
    ids = tok.encode(text, add_special_tokens=False).ids
    harness.check(len(ids) > 400, "TinyStories head is too short")
    return [[1] + ids[:149], [1] + ids[200:396]]


def questions(stories_dir):
    """A question-like continuation per context (tok512 ids, no BOS): 8 and 5 tokens."""
    tokenizers = harness.require("tokenizers")
    tok = tokenizers.Tokenizer.from_file(os.path.join(stories_dir, "tokenizer.json"))
    return [tok.encode(" What did the girl see?", add_special_tokens=False).ids[:8],
            tok.encode(" Why was he sad?", add_special_tokens=False).ids[:5]]


def cli_prompt():
    text = open(harness.asset("data/tinystories/tinystories_val_head.txt")).read()
    return text[:700]


def cli_checks(stories_dir, tmp):
    """pith generate --press without the peer: bad specs and a window too long for the prompt are one
    line and exit 2; a press of ratio 0 keeps everything and gives plain generation's tokens."""
    prompt = cli_prompt()
    base = ["generate", "--model", stories_dir, "--max-new-tokens", "8", "--threads", "1"]
    for spec, words in [("nosuch:0.5", "unknown press 'nosuch'"), ("snapkv:1", "outside [0, 1)"),
                        ("snapkv:-0.1", "outside [0, 1)"), ("snapkv:0.5:window_size=0", "window_size"),
                        ("knorm:0.5:bogus=1", "bogus")]:
        r = harness.pith(*base, "--prompt", prompt, "--press", spec, ok=False)
        first = r.stderr.splitlines()[0] if r.stderr else ""
        harness.expect(r.returncode == 2 and words in first and not r.stdout,
                       f"--press {spec}: exit {r.returncode}, stderr {r.stderr!r} (want exit 2, one line naming {words!r})")
    r = harness.pith(*base, "--prompt", "Once upon a time", "--press", "snapkv:0.5", ok=False)
    harness.expect(r.returncode == 2 and "window_size 64" in r.stderr and len(r.stderr.splitlines()) == 1,
                   f"a 64-token window over a short prompt: exit {r.returncode}, stderr {r.stderr!r}")
    plain, zero = os.path.join(tmp, "plain.json"), os.path.join(tmp, "zero.json")
    harness.pith(*base, "--prompt", prompt, "--ids-out", plain)
    r = harness.pith(*base, "--prompt", prompt, "--press", "snapkv:0", "--ids-out", zero)
    a, b = json.load(open(plain)), json.load(open(zero))
    harness.expect(a == b, f"--press snapkv:0 changed the tokens: {a['new']} vs {b['new']}")
    harness.expect("question" not in b, "--ids-out has no question without --question")
    m = re.search(r"kept (\d+) of (\d+) KV entries", r.stderr)
    harness.expect(m and m.group(1) == m.group(2) and int(m.group(1)) > 0,
                   f"--press snapkv:0 keeps every entry: {r.stderr!r}")
    print("pith generate --press: bad specs and a too-long window refused (exit 2, one line); ratio 0 = plain generation")


def main():
    tool = harness.tool_arg("press_tool")
    harness.pith_bin()
    harness.stories_assets()
    with tempfile.TemporaryDirectory() as tmp:
        stories_dir = os.path.join(tmp, "stories260K")
        harness.convert_stories(stories_dir)
        cli_checks(stories_dir, tmp)
        peer_python = os.path.join(harness.ROOT, ".venv-peers", "bin", "python")
        if not os.path.exists(peer_python):
            if harness.MISMATCHES:
                harness.fail(f"{len(harness.MISMATCHES)} mismatches")
            harness.skip(".venv-peers is absent (scripts/setup-peers makes it: kvpress 0.5.5 + transformers 4.57.6)")
        rand_dir = os.path.join(tmp, "random_llama")
        make_random_llama(rand_dir)
        ctxs = contexts(stories_dir)
        cases = []
        for model in (rand_dir, stories_dir):
            for spec, cls, kw, adaptive, eager in specs():
                c = {"model": model, "spec": spec, "cls": cls, "kwargs": kw, "adaptive": adaptive, "eager": eager,
                     "ratio": ratio_of(spec), "contexts": ctxs}
                if "alpha_safeguard=" in spec:
                    c["alpha_safeguard"] = float(spec.split("alpha_safeguard=")[1].split(",")[0])
                cases.append(c)
        qs = questions(stories_dir)
        gen_cases = [{"model": model, "spec": spec, "cls": cls, "kwargs": kw, "adaptive": adaptive, "eager": eager,
                      "ratio": ratio_of(spec), "contexts": ctxs, "questions": qs, "n_new": N_NEW}
                     for model in (rand_dir, stories_dir) for spec, cls, kw, adaptive, eager in gen_specs()]
        # The CLI: text in (a TinyStories paragraph, a question), its ids back through --ids-out.
        cli_ids = os.path.join(tmp, "cli_ids.json")
        cli = harness.run([harness.pith_bin(), "generate", "--model", stories_dir, "--prompt", cli_prompt(),
                           "--question", " Where did Lily go?", "--press", "snapkv:0.5", "--max-new-tokens",
                           str(N_NEW), "--threads", "1", "--ids-out", cli_ids], text=True)
        cli_out = json.load(open(cli_ids))
        harness.check("question" in cli_out and cli_out["question"], "--ids-out holds the question's ids")
        harness.check("kept" in cli.stderr and "bytes" in cli.stderr and "decode" in cli.stderr,
                      f"pith generate --press reports the KV kept and the times on stderr: {cli.stderr!r}")
        gen_cases.append({"model": stories_dir, "spec": "snapkv:0.5 (pith generate)", "cls": "SnapKVPress", "kwargs": {},
                          "adaptive": False, "eager": False, "ratio": 0.5, "contexts": [cli_out["prompt"]],
                          "questions": [cli_out["question"]], "n_new": N_NEW})
        cases_path, peer_out = os.path.join(tmp, "cases.json"), os.path.join(tmp, "peer.json")
        json.dump({"keep": cases, "gen": gen_cases}, open(cases_path, "w"))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        peer = subprocess.Popen([peer_python, os.path.abspath(__file__), "--peer", cases_path, peer_out], env=env)

        rows = [",".join(map(str, ids)) for ids in ctxs]
        ours = []
        for model in (rand_dir, stories_dir):  # one press_tool call per model, a line per press
            mine = [c["spec"] for c in cases if c["model"] == model]
            r = harness.run([tool, "keep", model, ";".join(mine), *rows], text=True)
            ours += [json.loads(line) for line in r.stdout.splitlines()]
            harness.check(len(ours) == len([c for c in cases if c["model"] in (rand_dir, model)]),
                          "press_tool printed a line per press")
        gen_rows = [",".join(map(str, c)) + "|" + ",".join(map(str, q)) for c, q in zip(ctxs, qs)]
        ours_gen = []
        for model in (rand_dir, stories_dir):  # one batch of both rows per press
            mine = [c["spec"] for c in gen_cases if c["model"] == model and "(" not in c["spec"]]
            r = harness.run([tool, "gen", model, ";".join(mine), str(N_NEW), *gen_rows], text=True)
            ours_gen += [json.loads(line) for line in r.stdout.splitlines()]
        ours_gen.append({"new": [cli_out["new"]]})
        harness.check(len(ours_gen) == len(gen_cases), "press_tool gen printed a line per press")
        rc = peer.wait()
        if rc == harness.SKIP:
            harness.skip("kvpress is not importable in .venv-peers (scripts/setup-peers installs it)")
        if rc != 0:
            harness.fail("the kvpress peer failed (its output is above)")
        peer_res = json.load(open(peer_out))
        theirs, theirs_gen = peer_res["keep"], peer_res["gen"]

        summary = {}
        n_ties, tied, tied_ctx = 0, set(), set()
        for c, a, b in zip(cases, ours, theirs):
            mname = os.path.basename(c["model"])
            agree = total = 0
            for ci, ids in enumerate(ctxs):
                L = len(ids)
                n_kept = max(1, int(L * (1 - c["ratio"])))
                for li, heads in enumerate(b["kept"][ci]):
                    got_l = [a["keep"][li][ci][h] for h in range(len(heads))]
                    total += len(heads)
                    agree += sum(g == w for g, w in zip(got_l, heads))
                    if c["adaptive"]:  # per-head counts vary but sum to the layer's budget
                        harness.expect(sum(map(len, got_l)) == n_kept * len(heads),
                                       f"{mname} {c['spec']}: layer {li} keeps {sum(map(len, got_l))} over its "
                                       f"heads, not {n_kept * len(heads)}")
                    else:
                        harness.expect(all(len(g) == n_kept for g in got_l),
                                       f"{mname} {c['spec']}: counts {[len(g) for g in got_l]}, not {n_kept} each")
                    if got_l == heads:
                        continue
                    # Different sets are accepted only as a tie: the entries one side keeps and the other
                    # drops all have kvpress's score to 1e-5 relative (a token repeated in the context has
                    # one key norm at every position, up to rounding).
                    # (AdaKV's budgets are over the layer's heads together: there a tie may cross heads.)
                    sc = b["scores"][ci][li]
                    groups = [range(len(heads))] if c["adaptive"] else [[h] for h in range(len(heads))]
                    for hs in groups:
                        got = {(h, j) for h in hs for j in got_l[h]}
                        want = {(h, j) for h in hs for j in heads[h]}
                        if got == want:
                            continue
                        diff = [sc[h][j] for h, j in got ^ want]
                        scale = max(abs(x) for x in diff)
                        tie = max(diff) - min(diff) <= 1e-5 * scale
                        n_ties += tie
                        if tie:
                            tied.add(f"{mname} {c['spec']}")
                            tied_ctx.add((mname, c["spec"], ci))
                        harness.expect(tie, f"{mname} {c['spec']}: context {ci} (L={L}) layer {li} heads {list(hs)}: "
                                       f"only pith keeps {sorted(got - want)[:6]}, only kvpress {sorted(want - got)[:6]}; "
                                       f"kvpress's scores there span {max(diff) - min(diff):.3g} (largest |score| "
                                       f"among them {scale:.3g})", show=20)
            summary[(mname, c["spec"])] = (agree, total)
        for (mname, spec), (agree, total) in summary.items():
            print(f"{mname:14s} {spec:70s} {agree:3d}/{total} (layer, context, kv head) sets equal")
        varied = [c["spec"] for c, a in zip(cases, ours) if c["adaptive"] and
                  any(len({len(h) for h in layer[ci]}) > 1 for layer in a["keep"] for ci in range(len(ctxs)))]
        harness.check(varied, "adaptive presses never gave heads different counts: per-head budgets untested")
        print(f"{n_ties} (layer, context, head or AdaKV layer) selections differ only by swapping tied entries (equal kvpress scores), in: {sorted(tied)}")
        print(f"{len(cases)} cases x {len(ctxs)} contexts (L = {[len(x) for x in ctxs]}); adaptive with per-head "
              f"counts that differ: {len(varied)} cases")
        compare_generation(gen_cases, ours_gen, theirs_gen, tied_ctx)
        ms = [x for b in theirs for x in b["ms"]]
        print(f"kvpress prefill with a press (one context, stories260K or the random model): median "
              f"{sorted(ms)[len(ms) // 2]:.1f} ms")
    if harness.MISMATCHES:
        harness.fail(f"{len(harness.MISMATCHES)} mismatches")
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2], sys.argv[3])
    else:
        main()
