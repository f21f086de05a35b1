#!/usr/bin/env python3
"""pith compress's contract, with stories260K (converted by pith convert) as the scorer:

  1. JSON lines in (a list of contexts with a question and an instruction; a "prompt" string), one
     line out each: the kept mask has one flag per scorer token of the token stage and as many ones
     as scorer_kept; the compressed prompt starts with the instruction and ends with the question;
     rate = compressed_tokens / origin_tokens; the contexts' ranking is a permutation;
  2. --target-tokenizer counts with that tokenizer: origin_tokens equals HF tokenizers' count of the
     joined original prompt under the real LLaMA-3 tokenizer;
  3. plain text in (--format auto), and progress lines on stderr for a long input (> 2000 tokens);
  4. bad input gets one clear line and exit 1 (or a usage error, exit 2), and --output is written
     whole or not at all: an empty prompt, a rate outside (0, 1], a scorer folder that is not a
     causal LM, a question longer than the budget, a line that is not JSON, longllmlingua without a
     question;
  5. --exact: the compressed prompt's target tokens land within 1% (of the original's count) of
     rate x origin for rates 0.1, 0.33 and 0.5 on inputs of 700-3,500 tokens, where llmlingua's
     own budget (the default mode, equal to llmlingua's by llmlingua_parity) drifts: both printed;
     the same for longllmlingua over several contexts.
"""
import json
import os
import tempfile

import harness


def main():
    harness.pith_bin()
    tokenizers = harness.require("tokenizers")
    llama3 = harness.asset("tokenizers/llama3/tokenizer.json")
    story = open(harness.asset("data/tinystories/tinystories_val_head.txt")).read()
    docs = [p.strip() for p in story.split("\n\n") if len(p.strip()) > 200]
    with tempfile.TemporaryDirectory() as tmp:
        scorer = os.path.join(tmp, "stories260K")
        harness.convert_stories(scorer)
        out = os.path.join(tmp, "out.jsonl")

        def compress(*args, stdin=None, ok=True):
            return harness.pith("compress", "--scorer", scorer, *args, stdin=stdin, ok=ok)

        # 1, 2
        q, ins = "Where did Lily go?", "Answer briefly."
        lines = [{"context": docs[:4], "question": q, "instruction": ins},
                 {"prompt": "\n\n".join(docs[4:8])}]
        compress("--method", "llmlingua", "--rate", "0.4", "--target-tokenizer", llama3, "--output", out, "--quiet",
                 stdin="".join(json.dumps(x) + "\n" for x in lines))
        got = [json.loads(x) for x in open(out).read().split("\n") if x]
        harness.check(len(got) == 2, f"{len(got)} output lines for 2 prompts")
        tok3 = tokenizers.Tokenizer.from_file(llama3)
        for line, r in zip(lines, got):
            harness.check(len(r["kept"]) == r["scorer_tokens"] and r["kept"].count("1") == r["scorer_kept"],
                          f"kept mask of {len(r['kept'])} flags, {r['kept'].count('1')} ones, vs "
                          f"{r['scorer_tokens']} tokens, {r['scorer_kept']} kept")
            harness.check(0 < r["scorer_kept"] < r["scorer_tokens"], f"nothing dropped or nothing kept: {r}")
            harness.check(abs(r["rate"] - r["compressed_tokens"] / r["origin_tokens"]) < 1e-5, f"rate {r['rate']}")
            ctx = line.get("context") or [line["prompt"]]
            original = "\n\n".join([line.get("instruction", "")] + ctx + [line.get("question", "")]).strip()
            n3 = len(tok3.encode(original, add_special_tokens=False).ids)
            harness.check(r["origin_tokens"] == n3, f"origin_tokens {r['origin_tokens']} vs llama3's {n3}")
            harness.check(r["compressed_tokens"] == len(tok3.encode(r["compressed_prompt"], add_special_tokens=False).ids),
                          "compressed_tokens is not the target tokenizer's count")
        harness.check(got[0]["compressed_prompt"].startswith(ins + "\n\n") and got[0]["compressed_prompt"].endswith(
            "\n\n" + q), f"instruction/question not kept whole: {got[0]['compressed_prompt'][:80]!r}")
        harness.check(sorted(got[0]["context_rank"]) == [0, 1, 2, 3], f"ranking {got[0].get('context_rank')}")
        print(f"jsonl: kept {got[0]['scorer_kept']}/{got[0]['scorer_tokens']} and "
              f"{got[1]['scorer_kept']}/{got[1]['scorer_tokens']} scorer tokens; llama3 counts agree")

        # 3
        long_text = os.path.join(tmp, "long.txt")
        open(long_text, "w").write("\n\n".join(docs[10:40]))
        r = compress("--method", "llmlingua", "--rate", "0.5", "--input", long_text)
        one = json.loads(r.stdout)
        harness.check(one["scorer_tokens"] > 2000, f"long input of only {one['scorer_tokens']} tokens")
        harness.check("compress: prompt 1:" in r.stderr and "tokens/s" in r.stderr, f"no progress: {r.stderr!r}")
        print(f"text: {one['scorer_tokens']} tokens -> {one['scorer_kept']}, progress shown")

        # 4
        open(out, "w").write("before\n")
        bert = os.path.join(tmp, "bert")
        os.makedirs(bert)
        json.dump({"architectures": ["BertForTokenClassification"], "model_type": "bert"},
                  open(os.path.join(bert, "config.json"), "w"))
        good = json.dumps({"context": docs[:2], "question": q}) + "\n"
        bad = [
            ("empty prompt", ["--method", "llmlingua"], good + json.dumps({"context": ["", " "]}) + "\n", 1,
             "line 2: empty prompt"),
            ("rate 0", ["--method", "llmlingua", "--rate", "0"], good, 2, "--rate"),
            ("rate 1.5", ["--method", "llmlingua", "--rate", "1.5"], good, 2, "--rate"),
            ("not a causal LM", ["--method", "llmlingua", "--scorer", bert], good, 1, "not a causal LM"),
            ("question over budget", ["--method", "llmlingua", "--rate", "0.1"],
             json.dumps({"prompt": docs[0][:200], "question": " ".join(docs[1:3])}) + "\n", 1, "no budget"),
            ("not JSON", ["--method", "llmlingua"], good + "{oops\n", 1, "line 2: not JSON"),
            ("no question", ["--method", "longllmlingua"], json.dumps({"context": docs[:2]}) + "\n", 1, "question"),
        ]
        for what, args, stdin, code, words in bad:
            r = compress(*args, "--output", out, stdin=stdin, ok=False)
            first = r.stderr.strip().split("\n")[0]
            harness.check(r.returncode == code, f"{what}: exit {r.returncode}, not {code}: {r.stderr!r}")
            harness.check(words in first, f"{what}: {first!r} does not say {words!r}")
            if code == 1:
                harness.check(r.stderr.strip().count("\n") == 0, f"{what}: more than one line: {r.stderr!r}")
            harness.check(open(out).read() == "before\n", f"{what}: --output was touched")
            harness.check(not [f for f in os.listdir(tmp) if f.startswith("out.jsonl.")], f"{what}: a temp file is left")
            print(f"{what}: {first}")

        # 5
        texts = [{"prompt": "\n\n".join(docs[a:b])} for a, b in ((50, 58), (60, 75), (80, 110))]
        inp = os.path.join(tmp, "exact.jsonl")
        open(inp, "w").write("".join(json.dumps(x) + "\n" for x in texts))
        for rate in (0.1, 0.33, 0.5):
            got = {}
            for mode in ([], ["--exact"]):
                r = compress("--method", "llmlingua", "--rate", str(rate), "--input", inp, "--quiet", *mode)
                got[bool(mode)] = [json.loads(x) for x in r.stdout.split("\n") if x]
            for compat, exact in zip(got[False], got[True]):
                miss = abs(exact["compressed_tokens"] - rate * exact["origin_tokens"]) / exact["origin_tokens"]
                harness.check(miss <= 0.01, f"--exact at {rate}: {exact['rate']:.4f} on {exact['origin_tokens']} tokens")
                print(f"rate {rate} on {compat['origin_tokens']} tokens: llmlingua's budget {compat['rate']:.4f}, "
                      f"--exact {exact['rate']:.4f}")
        # --exact with several contexts, LongLLMLingua's ranking and contrastive scores
        multi = [{"context": docs[120:128], "question": q}, {"context": docs[130:136], "question": q, "instruction": ins}]
        r = compress("--method", "longllmlingua", "--rate", "0.3", "--exact", "--quiet",
                     stdin="".join(json.dumps(x) + "\n" for x in multi))
        for x in (json.loads(y) for y in r.stdout.split("\n") if y):
            miss = abs(x["compressed_tokens"] - 0.3 * x["origin_tokens"]) / x["origin_tokens"]
            harness.check(miss <= 0.01, f"longllmlingua --exact at 0.3: {x['rate']:.4f}")
            harness.check(x["compressed_prompt"].endswith(q), "--exact dropped the question")
            print(f"longllmlingua --exact 0.3 on {x['origin_tokens']} tokens, contexts {x['contexts_used']}: {x['rate']:.4f}")
    print("OK")


if __name__ == "__main__":
    main()
