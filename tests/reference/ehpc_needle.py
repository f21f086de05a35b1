#!/usr/bin/env python3
"""EHPC's needle task built from a pith world (`pith data synth`, or `pith demo`'s world/), run
through pith: `pith compress ehpc-probe --probes` finds the heads on dev probes, `pith compress
--method ehpc` at 4x (a quarter of the context's scorer tokens, as `pith eval --hard ehpc:4`)
compresses fresh test probes, and the needle sentence is counted as kept when every one of its
tokens is.

A probe is one held-out question of the world and the sentence of its document that answers it
(qa_sentence.jsonl; only sentences that name the document's subject, so the sentence alone
answers), put at a sentence boundary at depth 0.1 .. 0.9 of a haystack of other documents of the
same split (whole documents from random ones, cut at a sentence end to --haystack-tokens context
tokens). The haystack leaves out the sentences that answer the same kind of question in their own
document (a needle-in-a-haystack needle is the only answer there; --distractors keeps them). The
question is the world's QA prompt as the base LM was trained on it: [bos] context "Question: " q
" Answer: " (one string whose tokens are those pieces' tokens, checked per probe).

Settings are chosen on dev probes (val split, --dev-seed): for each --windows W the probe picks the
layer, each --tops N takes its first N heads, and each --kernels K is scored; the best (W, N, K),
the first of equals, is then reported on test probes
(test split, --test-seed), which nothing was chosen on. The factor is the chosen heads' mean needle
attention over the median head's, on the test probes.

By hand (the demo's world and base LM; the model folder is copied, ehpc.json is written there):

    tests/reference/ehpc_needle.py --world DEMO/world --model DEMO/lm/model --work needle --qa

With no --world (CI): a tiny world (pith data synth) and a random LLaMA, checking the mechanics
against transformers: the probes are what is described above, ehpc-probe --probes scores every
head as transformers' eager attention does, and each kept verdict of pith compress equals
avg_pool1d + top-k over transformers' attention (the kept tokens, and so the verdict) where the
budget's edge is not a near-tie; bad
--probes lines get one-line errors.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import struct
import sys
import tempfile

import harness

QUESTION_PREFIX, ANSWER_PREFIX = "Question: ", " Answer: "  # data/task.h


def sentences(text):
    return [s for s in re.split(r"(?<=\.) ", text) if s]


def split_of(doc_id, val_fraction, test_fraction):
    """data/README.md's split rule (the one docs.h5 records in split_rule)."""
    b = struct.unpack(">Q", hashlib.sha256(doc_id.encode()).digest()[:8])[0] % 1000000
    if b < round(test_fraction * 1000000):
        return "test"
    return "val" if b < round((test_fraction + val_fraction) * 1000000) else "train"


class World:
    def __init__(self, folder, h5py):
        with h5py.File(os.path.join(folder, "docs.h5"), "r") as f:
            val, test = float(f.attrs["val_fraction"]), float(f.attrs["test_fraction"])
        self.docs = [json.loads(x) for x in open(os.path.join(folder, "docs.jsonl"))]
        self.split = {d["id"]: split_of(d["id"], val, test) for d in self.docs}
        self.by_id = {d["id"]: d for d in self.docs}
        self.qa = [json.loads(x) for x in open(os.path.join(folder, "qa_sentence.jsonl"))]
        self.answers = {}  # doc id -> kind -> the sentences that answer that kind
        for q in self.qa:
            self.answers.setdefault(q["id"], {}).setdefault(q["kind"], set()).add(q["context"])


def subject(doc, question):
    """The document's subject named in the question: a capitalised word of both the question and the title."""
    title = set(re.findall(r"[A-Za-z0-9]+", doc["title"]))
    names = [w for w in re.findall(r"[A-Z][A-Za-z0-9]+", question) if w in title]
    return names[0] if names else None


def build(world, enc, split, n, hay_tokens, seed, distractors=False):
    """n probes {context, question, needle, answer, kind, depth, doc} of one split."""
    rng = random.Random(seed)
    docs = [d for d in world.docs if world.split[d["id"]] == split]
    cands = []
    for q in world.qa:
        if world.split[q["id"]] != split:
            continue
        name = subject(world.by_id[q["id"]], q["question"])
        if name and name in q["context"]:
            cands.append(q)
    if len(docs) < 3 or not cands:
        raise SystemExit(f"the {split} split has {len(docs)} documents and {len(cands)} usable questions")
    out = []
    while len(out) < n:
        q = rng.choice(cands)
        needle, room = q["context"], hay_tokens - len(enc(q["context"]))
        hay, order = [], rng.sample(docs, len(docs))
        for d in order:
            if d["id"] == q["id"]:
                continue
            skip = set() if distractors else world.answers.get(d["id"], {}).get(q["kind"], set())
            for s in sentences(d["abstract"]):
                if s not in skip:
                    hay.append(s)
            if len(enc(" ".join(hay))) >= room:
                break
        while len(hay) > 1 and len(enc(" ".join(hay))) > room:
            hay.pop()
        depth = (len(out) % 9 + 1) / 10
        at = round(depth * len(hay))
        ctx = " ".join(hay[:at] + [needle] + hay[at:])
        question = QUESTION_PREFIX + " " + q["question"] + ANSWER_PREFIX  # see check_question
        out.append(dict(context=ctx, question=question, needle=needle, answer=q["answers"][0]["text"], kind=q["kind"],
                        depth=at / len(hay), doc=q["id"], question_text=q["question"]))
    return out


def check_question(enc, p):
    """The question string's tokens are the training prompt's pieces' tokens."""
    want = enc(QUESTION_PREFIX) + enc(p["question_text"]) + enc(ANSWER_PREFIX)
    return enc(p["question"]) == want


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def needle_span(enc, p):
    at = p["context"].index(p["needle"])
    return len(enc(p["context"][:at])), len(enc(p["context"][:at + len(p["needle"])]))


def compress(model, probes, enc, window, kernel, tmp, tag, heads=None):
    """pith compress --method ehpc at 4x for each probe: (kept verdicts, target tokens, outputs)."""
    groups = {}
    for i, p in enumerate(probes):
        kc = round(len(enc(p["context"])) / 4)
        groups.setdefault(kc, []).append(i)
    outs = [None] * len(probes)
    for kc, idx in sorted(groups.items()):
        src, dst = os.path.join(tmp, f"{tag}_{kc}.jsonl"), os.path.join(tmp, f"{tag}_{kc}.out.jsonl")
        write_jsonl(src, [{"context": probes[i]["context"], "question": probes[i]["question"]} for i in idx])
        harness.pith("compress", "--method", "ehpc", "--scorer", model, "--target-tokens", str(kc), "--window",
                     str(window), "--kernel", str(kernel), "--input", src, "--output", dst, "--quiet", "--threads", "2",
                     *(["--heads", heads] if heads else []))
        for i, line in zip(idx, open(dst)):
            outs[i] = json.loads(line)
    kept = []
    for p, o in zip(probes, outs):
        s0, s1 = needle_span(enc, p)
        harness.check(len(o["kept"]) == len(enc(p["context"])), "the kept mask is not over the context's tokens")
        harness.check(o["kept"].count("1") == o["scorer_kept"], "the kept mask does not hold scorer_kept ones")
        kept.append(o["kept"][s0:s1] == "1" * (s1 - s0))  # "kept" is a string of 0/1 per token
    return kept, outs


def probe(model, probes_file, window, top=8):
    harness.pith("compress", "ehpc-probe", "--model", model, "--probes", probes_file, "--window", str(window),
                 "--top", str(top), "--threads", "2")
    return harness.read_json(os.path.join(model, "ehpc.json"))


def factor(head_scores, layer, heads):
    flat = [v for row in head_scores for v in row]
    return statistics.mean(head_scores[layer][h] for h in heads) / statistics.median(flat)


def measure(args, enc, world, tmp):
    model = os.path.join(tmp, "model")
    shutil.copytree(args.model, model)
    dev = build(world, enc, "val", args.dev, args.haystack_tokens, args.dev_seed, args.distractors)
    test = build(world, enc, "test", args.test, args.haystack_tokens, args.test_seed, args.distractors)
    for p in dev + test:
        harness.check(check_question(enc, p), f"{p['question']!r}: not the training prompt's tokens")
    dev_f, test_f = os.path.join(tmp, "dev.jsonl"), os.path.join(tmp, "test.jsonl")
    write_jsonl(dev_f, dev)
    write_jsonl(test_f, test)
    ctx = [len(enc(p["context"])) for p in test]
    print(f"haystack: {args.haystack_tokens} context tokens at most (test mean {statistics.mean(ctx):.1f}), "
          f"{'with' if args.distractors else 'without'} same-kind distractors; {len(dev)} dev, {len(test)} test probes")
    best = None
    for w in args.windows:
        man = probe(model, dev_f, w)  # the head scores; each --tops takes the best layer's first heads
        for t in args.tops:
            heads = man["heads"][:t]
            spec = f"{man['layer']}:" + ",".join(map(str, heads))
            for k in args.kernels:
                kept, _ = compress(model, dev, enc, w, k, tmp, f"dev_w{w}_t{t}_k{k}", spec)
                rate = sum(kept) / len(kept)
                print(f"  dev window {w} top {t} kernel {k}: heads {spec}, factor "
                      f"{factor(man['head_scores'], man['layer'], heads):.2f}x, needle kept {sum(kept)}/{len(kept)} = "
                      f"{rate:.0%}", flush=True)
                if best is None or rate > best[0]:
                    best = (rate, w, t, k)
    _, w, t, k = best
    man = probe(model, dev_f, w, t)  # the chosen heads, kept in ehpc.json for the test
    kept, outs = compress(model, test, enc, w, k, tmp, "test")
    # the chosen heads' factor on the test probes (their scores from a scratch copy's probe)
    scratch = os.path.join(tmp, "scratch")
    shutil.copytree(model, scratch)
    tman = probe(scratch, test_f, w)
    f = factor(tman["head_scores"], man["layer"], man["heads"])
    by_depth = {}
    for p, ok in zip(test, kept):
        by_depth.setdefault(round(p["depth"], 1), []).append(ok)
    print(f"chosen on dev: window {w}, top {t}, kernel {k}: layer {man['layer']}, heads {man['heads']}")
    print(f"test: factor over the median head {f:.2f}x (dev {man['factor_over_median']:.2f}x); "
          f"needle sentence kept at 4x: {sum(kept)}/{len(kept)} = {sum(kept) / len(kept):.0%}")
    print("  by depth: " + ", ".join(f"{d:.1f} {sum(v)}/{len(v)}" for d, v in sorted(by_depth.items())))
    answer_kept = sum(p["answer"] in o["compressed_prompt"] for p, o in zip(test, outs))
    print(f"  the answer word in the compressed prompt: {answer_kept}/{len(test)}")
    qa = from_kept = None
    if args.qa:  # how often the base LM itself answers from the whole haystack: the heads' ceiling, roughly
        torch, transformers = harness.require("torch", "transformers")
        lm = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32,
                                                               attn_implementation="eager").eval()
        qa, both, from_kept, on_needle, on_answer, top_in_needle = 0, 0, 0, 0.0, 0.0, 0
        for p, ok, o in zip(test, kept, outs):
            ctx, b, ans = enc(p["context"]), len(args.bos), enc(p["answer"])[0]
            with torch.no_grad():
                out = lm(torch.tensor([args.bos + ctx + enc(p["question"])]), output_attentions=True)
                # the needle-in-a-haystack score proper: the answer from the 4x-compressed context
                short = [t for t, k in zip(ctx, o["kept"]) if k == "1"]
                from_kept += int(lm(torch.tensor([args.bos + short + enc(p["question"])])).logits[0, -1].argmax()) == ans
            right = int(out.logits[0, -1].argmax()) == ans
            qa, both = qa + right, both + (right and ok)
            # where the chosen heads' needle attention goes: the answer token's share of it
            s0, s1 = needle_span(enc, p)
            a = out.attentions[man["layer"]][0, man["heads"], -w:, :].mean(1).sum(0)
            on_needle += a[b + s0:b + s1].sum().item()
            on_answer += sum(a[b + i].item() for i in range(s0, s1) if ctx[i] == ans)
            # what keeping whole sentences by these heads' best token could do at most
            top_in_needle += s0 <= int(a[b:b + len(ctx)].argmax()) < s1
        print(f"  the base LM's greedy first answer token is the answer's on {qa}/{len(test)} test probes; the "
              f"needle kept in {both} of those, {sum(kept) - both} of the other {len(test) - qa}; from the 4x-compressed "
              f"context it answers {from_kept}/{len(test)}")
        print(f"  the chosen heads' attention on the needle: {on_needle / len(test):.3f} a probe, "
              f"{on_answer / max(on_needle, 1e-12):.0%} of it on the answer token; their highest-scored context token "
              f"is in the needle on {top_in_needle}/{len(test)} probes")
    if args.out:
        harness.write_json(args.out, dict(qa=qa, qa_compressed=from_kept, window=w, top=t, kernel=k, layer=man["layer"],
                                          heads=man["heads"], factor=f, kept=sum(kept), n=len(kept),
                                          haystack_tokens=args.haystack_tokens, distractors=args.distractors,
                                          dev_seed=args.dev_seed, test_seed=args.test_seed))


# ---------------------------------------------------------------- CI: a tiny world, a random model

def self_test(torch, transformers, tokenizers, h5py, tmp):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import eval_cli  # its tiny world (pith data synth)

    tok_dir, _, _, _ = eval_cli.tiny_world(tmp)
    world_dir = os.path.dirname(tok_dir)
    tok = tokenizers.Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids
    # A random LLaMA whose attention is not near uniform (larger weights than eval_cli's), so that
    # the top-k has margins to check.
    torch.manual_seed(3)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   initializer_range=0.3, tie_word_embeddings=False, bos_token_id=None,
                                   eos_token_id=None, pad_token_id=None)
    model_dir = os.path.join(tmp, "model")
    transformers.LlamaForCausalLM(cfg).save_pretrained(model_dir)
    for f in os.listdir(tok_dir):
        shutil.copy(os.path.join(tok_dir, f), model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    world = World(world_dir, h5py)
    bos = tok.token_to_id("<|bos|>")

    # 1. the probes
    probes = build(world, enc, "val", 12, 90, 5)
    for i, p in enumerate(probes):
        harness.check(p["context"].count(p["needle"]) == 1, f"probe {i}: the needle is not there once")
        harness.check(len(enc(p["context"])) <= 90, f"probe {i}: {len(enc(p['context']))} context tokens")
        harness.check(check_question(enc, p), f"probe {i}: the question is not the training prompt's tokens")
        harness.check(world.split[p["doc"]] == "val", f"probe {i}: its document is not in val")
        others = p["context"].replace(p["needle"], "")
        harness.check(world.by_id[p["doc"]]["title"] not in others, f"probe {i}: its own document is in the haystack")
        for d in world.docs:
            if d["id"] != p["doc"]:
                for s in world.answers.get(d["id"], {}).get(p["kind"], ()):
                    harness.check(s not in others, f"probe {i}: a same-kind sentence {s!r} in the haystack")
        harness.check(subject(world.by_id[p["doc"]], p["question_text"]) in p["needle"], f"probe {i}: no subject")
    harness.check(build(world, enc, "val", 12, 90, 5) == probes, "the probes are not reproducible from the seed")
    print(f"{len(probes)} probes: needle once, <= 90 context tokens, training prompt tokens, no same-kind sentence")

    # 2. ehpc-probe --probes scores every head as transformers does
    W = 4
    pf = os.path.join(tmp, "probes.jsonl")
    write_jsonl(pf, probes)
    man = probe(model_dir, pf, W)
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    S = torch.zeros(L, H, dtype=torch.float64)
    atts = []
    for p in probes:
        s0, s1 = needle_span(enc, p)
        ids = [bos] + enc(p["context"]) + enc(p["question"])
        with torch.no_grad():
            att = model(torch.tensor([ids]), output_attentions=True).attentions
        atts.append(att)
        for l in range(L):
            S[l] += att[l][0, :, -W:, 1 + s0:1 + s1].mean(1).sum(-1).double()
    S /= len(probes)
    d = (torch.tensor(man["head_scores"], dtype=torch.float64) - S).abs().max().item()
    harness.check(d < 1e-5, f"head scores differ from transformers' by {d:.3g}")
    harness.check(man["layer"] == int(S.sum(1).argmax()), f"layer {man['layer']}")
    harness.check(man["probe"]["probes"] == len(probes) and man["probe"]["probes_sha256"], "probe record")
    print(f"ehpc-probe --probes: head scores equal transformers' (max diff {d:.2g}); layer {man['layer']}, "
          f"heads {man['heads']}")

    # 3. pith compress's verdicts = avg_pool1d + top-k over transformers' attention
    K = 5
    kept, outs = compress(model_dir, probes, enc, W, K, tmp, "ci")
    checked = 0
    for i, (p, att, ok) in enumerate(zip(probes, atts, kept)):
        nc = len(enc(p["context"]))
        a = att[man["layer"]][0, man["heads"], -W:, :].mean(1).sum(0)
        n = a.shape[0]
        pooled = torch.nn.functional.avg_pool1d(a[1:n - W][None, None], K, 1, K // 2)[0, 0][:nc]
        kc = round(nc / 4)
        harness.check(outs[i]["target_scorer_tokens"] == kc, f"probe {i}: target {outs[i]['target_scorer_tokens']}")
        srt = pooled.sort(descending=True).values
        if (srt[kc - 1] - srt[kc]).abs() < 1e-5:  # a near-tie at the budget's edge: either side is right
            continue
        top = set(pooled.topk(kc).indices.tolist())
        got = {j for j, v in enumerate(outs[i]["kept"]) if v == "1"}
        harness.check(got == top, f"probe {i}: pith kept {sorted(got)}, avg_pool1d + top-k {sorted(top)}")
        s0, s1 = needle_span(enc, p)
        harness.check(ok == all(t in top for t in range(s0, s1)), f"probe {i}: the needle verdict")
        checked += 1
    harness.check(checked >= len(probes) // 2, f"only {checked} probes without a near-tie")
    print(f"pith compress at 4x: kept tokens equal the recomputation on {checked} probes "
          f"({sum(kept)} of {len(kept)} kept)")

    # 4. bad --probes
    bad = os.path.join(tmp, "bad.jsonl")
    for rows, says in (([{"context": "a b c", "question": "q"}], "bad.jsonl:1"),
                       ([probes[0], dict(probes[1], needle="not there at all")], "probe 2")):
        write_jsonl(bad, rows)
        r = harness.pith("compress", "ehpc-probe", "--model", model_dir, "--probes", bad, ok=False)
        lines = r.stderr.strip().splitlines()
        harness.check(r.returncode == 1 and len(lines) == 1 and says in lines[0], f"{says}: {r.stderr.strip()}")
    p0 = probes[0]
    n_after = len(enc(p0["question"]))  # the needle last in its context: only the question follows it
    write_jsonl(bad, [dict(p0, context=p0["context"].replace(p0["needle"], "") + " " + p0["needle"])])
    r = harness.pith("compress", "ehpc-probe", "--model", model_dir, "--probes", bad, "--window", str(n_after + 2),
                     ok=False)
    harness.check(r.returncode == 1 and "reaches into the needle" in r.stderr, f"window into the needle: {r.stderr}")
    r = harness.pith("compress", "ehpc-probe", "--model", model_dir, "--probes", pf, "--data", pf, ok=False)
    harness.check(r.returncode == 2 and "one of them" in r.stderr, f"--probes with --data: {r.stderr.strip()}")
    print("bad --probes: one-line errors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--world", help="a pith world folder (docs.h5, docs.jsonl, qa_sentence.jsonl); none: the CI test")
    ap.add_argument("--model", help="the base LM folder (copied; its ehpc.json is written in the copy)")
    ap.add_argument("--work", help="keep the probes and outputs here (default: a temporary folder)")
    ap.add_argument("--haystack-tokens", type=int, default=100, help="context tokens per probe, at most (100)")
    ap.add_argument("--dev", type=int, default=54, help="dev probes (val split)")
    ap.add_argument("--test", type=int, default=108, help="test probes (test split)")
    ap.add_argument("--dev-seed", type=int, default=1)
    ap.add_argument("--test-seed", type=int, default=2)
    ap.add_argument("--windows", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8],
                    help="probe windows tried on dev (1: the position after \"Answer:\"; 8: the paper's kind)")
    ap.add_argument("--tops", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 8],
                    help="heads kept from the best layer (ehpc-probe --top), each tried on dev")
    ap.add_argument("--kernels", type=lambda s: [int(x) for x in s.split(",")], default=[7, 15, 31])
    ap.add_argument("--distractors", action="store_true", help="keep the haystack's same-kind sentences")
    ap.add_argument("--out", help="write the test figures as JSON")
    ap.add_argument("--qa", action="store_true", help="also: how often the base LM answers the test probes (transformers)")
    args = ap.parse_args()
    harness.pith_bin()
    if args.world:
        if not args.model:
            ap.error("--world needs --model")
        h5py, tokenizers = harness.require("h5py", "tokenizers")
        tok = tokenizers.Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
        enc = lambda s: tok.encode(s, add_special_tokens=False).ids
        args.bos = tok.encode("", add_special_tokens=True).ids  # [bos] where the tokenizer adds one
        world = World(args.world, h5py)
        if args.work:
            os.makedirs(args.work, exist_ok=True)
            shutil.rmtree(os.path.join(args.work, "model"), ignore_errors=True)
            shutil.rmtree(os.path.join(args.work, "scratch"), ignore_errors=True)
            measure(args, enc, world, args.work)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                measure(args, enc, world, tmp)
        return
    torch, transformers, tokenizers, h5py = harness.require("torch", "transformers", "tokenizers", "h5py")
    with tempfile.TemporaryDirectory() as tmp:
        self_test(torch, transformers, tokenizers, h5py, tmp)


if __name__ == "__main__":
    main()
