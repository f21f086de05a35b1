#!/usr/bin/env python3
"""pith compress --method ehpc against an independent PyTorch computation:

  1. the evaluator heads' scores (--trace's ehpc_scores: per key, the heads' attention from the last
     --window queries, averaged over them, summed over the heads) equal transformers' eager
     attention (output_attentions=True) of a random tiny LLaMA with grouped-query attention, for
     single heads and head sets of several layers and windows;
  2. the kept mask equals torch's avg_pool1d (odd kernel, padding kernel // 2) of those scores over
     the positions before the window (bos left out), the top (budget - window's context tokens)
     context tokens in order, the instruction, the question and the window kept whole;
  3. bad input gets one line: no heads (no ehpc.json), heads out of range, a window not shorter than
     the prompt, an even kernel, a budget the question leaves nothing of.
"""
import json
import math
import os
import tempfile

import harness
import random_model_folder


def main():
    harness.pith_bin()
    torch, transformers, tokenizers = harness.require("torch", "transformers", "tokenizers")
    story = open(harness.asset("data/tinystories/tinystories_val_head.txt")).read()
    docs = [p.strip() for p in story.split("\n\n") if len(p.strip()) > 150]
    with tempfile.TemporaryDirectory() as tmp:
        stories = os.path.join(tmp, "stories")
        harness.convert_stories(stories)
        model_dir = os.path.join(tmp, "tiny")
        cfg = dict(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
                   tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
        random_model_folder.random_llama(cfg, model_dir, tokenizer=stories)
        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
        tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        bos = tok.encode("a").ids[0] if len(tok.encode("a").ids) > len(tok.encode("a", add_special_tokens=False).ids) else None

        def enc(s):
            return tok.encode(s, add_special_tokens=False).ids if s else []

        cases = [  # contexts, question, instruction, heads, window, kernel, rate
            (docs[0:2], "Who was happy?", "", "0:1", 4, 7, 0.5),
            (docs[2:3], "What did the dog do?", "Answer briefly.", "1:0,3", 8, 5, 0.25),
            (docs[3:6], "Where did they go?", "", "2:0,1,2,3", 6, 3, 0.33),
            (docs[6:7], "", "", "2:2", 5, 1, 0.4),
            (docs[7:9], "Why was the girl sad?", "Read the story.", "0:0,2", 16, 9, 0.3),
        ]
        checked = 0
        for ctx, q, ins, heads, W, K, rate in cases:
            line = {"context": ctx, "question": q, "instruction": ins}
            r = harness.pith_jsonl(["compress", "--method", "ehpc", "--scorer", model_dir, "--heads", heads, "--window",
                                    str(W), "--kernel", str(K), "--rate", str(rate), "--trace", "--quiet"], [line])[0]
            I, C, Q = enc(ins), enc("\n\n".join(ctx)), enc(q)
            harness.check(r["scorer_ids"] == C, f"{heads}: the contexts' ids differ from HF tokenizers'")
            ids = ([bos] if bos is not None else []) + I + C + Q
            n, p0 = len(ids), (1 if bos is not None else 0)
            scores = torch.tensor(r["ehpc_scores"])
            harness.check(len(scores) == n, f"{len(scores)} scores for {n} tokens")
            with torch.no_grad():
                att = model(torch.tensor([ids]), output_attentions=True).attentions
            layer, hs = heads.split(":")
            ref = att[int(layer)][0, [int(h) for h in hs.split(",")], -W:, :].mean(1).sum(0)
            d = (scores - ref).abs().max().item()
            harness.check(d < 1e-5, f"{heads} window {W}: scores differ from transformers' by {d:.3g}")
            # the selection, recomputed
            cand = n - W - p0
            pooled = torch.nn.functional.avg_pool1d(ref[p0:n - W].view(1, 1, -1), K, stride=1, padding=K // 2).view(-1)
            c0, q0 = p0 + len(I), p0 + len(I) + len(C)
            kc = math.floor(rate * (len(I) + len(C) + len(Q)) - len(I) - len(Q) + 0.5)
            in_window = max(0, q0 - (n - W))
            order = sorted((i for i in range(cand) if c0 <= p0 + i < q0), key=lambda i: (-pooled[i].item(), i))
            keep = set(order[:kc - in_window])
            want = "".join("1" if (c0 + i >= n - W or (c0 + i - p0) in keep) else "0" for i in range(len(C)))
            # near-ties in f32 may order differently: allow a swap only where the pooled scores tie
            if r["kept"] != want:
                diff = [i for i in range(len(C)) if r["kept"][i] != want[i]]
                vals = [pooled[c0 + i - p0].item() for i in diff if c0 + i < n - W]
                harness.check(max(vals) - min(vals) < 1e-6,
                              f"{heads}: kept mask differs at {diff} (pooled {vals})")
            harness.check(r["scorer_kept"] == min(len(C), kc), f"{r['scorer_kept']} kept for a budget of {kc}")
            harness.check(r["compressed_prompt"].endswith(q) and r["compressed_prompt"].startswith(ins),
                          "instruction or question not kept whole")
            checked += 1
        print(f"ehpc scores equal transformers' eager attention and the selection matches on {checked} prompts")

        # a prompt longer than the model reads: chunks of the text before the window, each read as
        # [bos] chunk window; the scores of each chunk's positions are that sequence's attention
        short_dir = os.path.join(tmp, "short")
        random_model_folder.random_llama(dict(cfg, max_position_embeddings=64), short_dir, tokenizer=stories)
        short = transformers.AutoModelForCausalLM.from_pretrained(short_dir, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
        W, ctx, q = 6, "\n\n".join(docs[10:12]), "Who was there?"
        r = harness.pith_jsonl(["compress", "--method", "ehpc", "--scorer", short_dir, "--heads", "1:0,2", "--window",
                                str(W), "--rate", "0.5", "--trace", "--quiet"], [{"context": [ctx], "question": q}])[0]
        ids = [bos] + enc(ctx) + enc(q)
        n, cs = len(ids), 64 - 1 - W
        harness.check(n > 2 * 64, f"the long prompt has only {n} tokens")
        body, win = ids[1:n - W], ids[n - W:]
        worst = 0
        for a in range(0, len(body), cs):
            chunk = [bos] + body[a:a + cs] + win
            with torch.no_grad():
                att = short(torch.tensor([chunk]), output_attentions=True).attentions
            ref = att[1][0, [0, 2], -W:, :].mean(1).sum(0)[1:1 + len(body[a:a + cs])]
            worst = max(worst, (torch.tensor(r["ehpc_scores"][1 + a:1 + a + len(ref)]) - ref).abs().max().item())
        harness.check(worst < 1e-5, f"chunked scores differ from transformers' by {worst:.3g}")
        harness.check(r["scorer_kept"] > 0 and r["compressed_prompt"].endswith(q), "a long prompt compressed wrong")
        print(f"a {n}-token prompt over a 64-position model: {math.ceil(len(body) / cs)} chunks, scores match")

        # 3: bad input
        line = json.dumps({"context": docs[0], "question": "Who?"}) + "\n"

        def one_line_error(args, code, says):
            p = harness.pith("compress", "--method", "ehpc", "--scorer", model_dir, "--quiet", *args, stdin=line, ok=False)
            err = p.stderr.strip()
            harness.check(p.returncode == code, f"{args}: exit {p.returncode}, want {code}: {err}")
            harness.check(says in err.splitlines()[0], f"{args}: '{err}' does not say '{says}'")
            if code == 1:
                harness.check(len(err.splitlines()) == 1, f"{args}: more than one line: {err}")
            harness.check(p.stdout == "", f"{args}: wrote output on an error")

        one_line_error([], 1, "ehpc-probe")
        one_line_error(["--heads", "3:0"], 1, "layer 3 is out of range")
        one_line_error(["--heads", "0:4"], 1, "head 4 is out of range")
        one_line_error(["--heads", "0:"], 1, "--heads")
        one_line_error(["--heads", "0:1", "--window", "4000"], 1, "not shorter than the prompt")
        one_line_error(["--heads", "0:1", "--kernel", "4"], 2, "--kernel must be odd")
        one_line_error(["--heads", "0:1", "--rate", "0.001"], 1, "leave no budget")
        with open(os.path.join(model_dir, "ehpc.json"), "w") as f:
            f.write('{"layer": 1, "heads": []}')
        one_line_error([], 1, "\"heads\" is empty")
        print("bad inputs: one-line errors")


if __name__ == "__main__":
    main()
