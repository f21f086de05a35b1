#!/usr/bin/env python3
"""pith compress ehpc-probe on a tiny case (stories260K converted by pith convert, TinyStories
ingested as the haystack), against an independent recomputation with transformers:

  1. the probes (--prompts) hold their needle, at increasing depths, and end with the question;
  2. every head score in ehpc.json equals transformers' eager attention from the last --window
     queries, averaged over them, summed over the needle's tokens, averaged over the probes;
  3. the best layer is the argmax of the summed head scores, its heads are the top --top of that
     layer in order, and factor_over_median is their mean over the median of all heads;
  4. --prompts-only writes the same prompts and leaves the folder's ehpc.json alone; bad input
     (a QA corpus, an even kernel) gets one line.
"""
import json
import os
import statistics
import tempfile

import harness


def main():
    harness.pith_bin()
    torch, transformers, tokenizers = harness.require("torch", "transformers", "tokenizers")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, corpus = harness.stories_run_inputs(tmp)
        prompts = os.path.join(tmp, "probes.jsonl")
        W, top = 6, 3
        out = harness.pith("compress", "ehpc-probe", "--model", model_dir, "--data", corpus, "--window", str(W), "--top",
                           str(top), "--depths", "3", "--needles", "2", "--haystack-tokens", "160", "--prompts",
                           prompts).stdout
        print(out.strip().splitlines()[0])
        man = harness.read_json(os.path.join(model_dir, "ehpc.json"))
        probes = [json.loads(x) for x in open(prompts)]
        harness.check(len(probes) == 6 and man["probe"]["probes"] == 6, f"{len(probes)} probes, want 6")
        for i, p in enumerate(probes):
            harness.check(p["needle"] in p["context"], f"probe {i}: the needle is not in the haystack")
        depths = [p["depth"] for p in probes[:3]]
        harness.check(depths == sorted(depths) and abs(depths[0] - 0.25) < 1e-3, f"depths {depths}")

        model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
        tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))

        def enc(s):
            return tok.encode(s, add_special_tokens=False).ids

        L, H = model.config.num_hidden_layers, model.config.num_attention_heads
        S = torch.zeros(L, H, dtype=torch.float64)
        for p in probes:
            ctx = p["context"]
            at = ctx.index(p["needle"])
            s0, s1 = len(enc(ctx[:at])), len(enc(ctx[:at + len(p["needle"])]))
            ids = [1] + enc(ctx) + enc(p["question"])
            with torch.no_grad():
                att = model(torch.tensor([ids]), output_attentions=True).attentions
            for l in range(L):
                S[l] += att[l][0, :, -W:, 1 + s0:1 + s1].mean(1).sum(-1).double()
        S /= len(probes)
        got = torch.tensor(man["head_scores"], dtype=torch.float64)
        d = (got - S).abs().max().item()
        harness.check(d < 1e-5, f"head scores differ from transformers' by {d:.3g}")
        best = int(S.sum(1).argmax())
        harness.check(man["layer"] == best, f"best layer {man['layer']}, want {best}")
        want_heads = sorted(range(H), key=lambda h: -S[best, h].item())[:top]
        harness.check(man["heads"] == want_heads, f"heads {man['heads']}, want {want_heads}")
        med = statistics.median(S.view(-1).tolist())
        factor = S[best, want_heads].mean().item() / med
        harness.check(abs(man["factor_over_median"] - factor) < 1e-4 * factor, f"factor {man['factor_over_median']} vs {factor}")
        harness.check(man["window"] == W and man["kernel"] == 7 and man["probe"]["data_sha256"], "settings not recorded")
        print(f"probe scores equal transformers' on {len(probes)} probes; layer {best}, heads {want_heads}, "
              f"{factor:.2f}x the median head")

        # 4
        again = os.path.join(tmp, "again.jsonl")
        before = open(os.path.join(model_dir, "ehpc.json")).read()
        harness.pith("compress", "ehpc-probe", "--model", model_dir, "--data", corpus, "--depths", "3", "--needles", "2",
                     "--haystack-tokens", "160", "--prompts", again, "--prompts-only")
        harness.check(open(again).read() == open(prompts).read(), "--prompts-only wrote other prompts")
        harness.check(open(os.path.join(model_dir, "ehpc.json")).read() == before, "--prompts-only touched ehpc.json")
        qa = os.path.join(tmp, "qa.h5")
        qa_src = os.path.join(tmp, "qa.jsonl")
        with open(qa_src, "w") as f:
            f.write(json.dumps({"id": "q1", "context": "Tom had a red ball.", "question": "What did Tom have?",
                                "answer": "a red ball"}) + "\n")
        harness.pith("data", "ingest", "--format", "qa", "--quiet", "--tokenizer", model_dir, "--out", qa, qa_src)
        for args, code, says in ([["--kernel", "4"], 2, "--kernel must be odd"],
                                 [["--data", os.path.join(tmp, "nope.h5")], 1, "nope.h5"]):
            a = ["compress", "ehpc-probe", "--model", model_dir, "--data", corpus] + args
            p = harness.pith(*a, ok=False)
            harness.check(p.returncode == code and says in p.stderr.strip().splitlines()[0],
                          f"{args}: exit {p.returncode}: {p.stderr.strip()}")
        p = harness.pith("compress", "ehpc-probe", "--model", model_dir, "--data", qa, ok=False)
        harness.check(p.returncode == 1 and "documents corpus" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
                      f"a QA corpus: {p.stderr.strip()}")
        print("bad inputs: one-line errors")


if __name__ == "__main__":
    main()
