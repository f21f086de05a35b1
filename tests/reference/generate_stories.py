#!/usr/bin/env python3
"""pith generate on a real model: stories260K (llama2.c) converted by `pith convert` into a Hugging
Face folder.

Checks:
  1. greedy (temperature 0) from "Once upon a time" prints what llama2.c's run.c prints for this
     model at temperature 0 (the golden text below, compared over its length);
  2. if transformers is installed: pith's greedy ids over 200 new tokens equal transformers'
     model.generate(do_sample=False) on the same folder and prompt ids (the KV cache, the stop at
     eos and the prompt encoding against the implementation users trust);
  3. streaming: with sampling (several seeds, a prompt with multi-byte characters, the folder's
     tokenizer.json and its llama2.c tokenizer.bin), what was printed token by token equals the
     one-shot decode (`pith tokenize --decode --skip-special`) of all the ids, so no character was
     printed in pieces or lost; the same seed gives the same text, another seed another one;
  4. bad option values and a missing folder fail with a one-line message and exit 1 or 2.

Env: PITH_BIN (the pith binary), PITH_ASSETS (the assets folder). Exit 77 with the reason when
either, or `pith convert`, is missing; any mismatch prints both texts and exits 1.
"""
import os
import tempfile

import harness
from harness import STORIES_GREEDY as EXPECTED, STORIES_PROMPT as PROMPT, fail

UNICODE_PROMPT = "Lily said: \u201ccaf\u00e9 na\u00efve \u65e5\u672c \U0001F600\u201d and"


def generate(model, prompt, *extra, ids_out=None):
    """(stdout bytes, {"prompt": [...], "new": [...]} or None)"""
    args = [harness.pith_bin(), "generate", "--model", model, "--prompt", prompt, "--threads", "1", *extra]
    if ids_out:
        args += ["--ids-out", ids_out]
    p = harness.run(args, timeout=None)
    return p.stdout, harness.read_json(ids_out) if ids_out else None


def main():
    harness.pith_bin()
    harness.stories_assets()
    p = harness.pith("convert", "--help", ok=False)
    if p.returncode != 0:
        harness.skip(f"`pith convert --help` exited {p.returncode}: this pith has no convert command "
                     f"({p.stderr.strip()[:200]})")

    with tempfile.TemporaryDirectory(prefix="pith_generate_") as tmp:
        model = os.path.join(tmp, "stories260K")
        harness.convert_stories(model)
        ids_path = os.path.join(tmp, "ids.json")

        # 1. The golden text of llama2.c at temperature 0.
        out, _ = generate(model, PROMPT, "--max-new-tokens", "60")
        text = out.decode("utf-8")
        if text[:len(EXPECTED)] != EXPECTED:
            fail(f"greedy text differs from llama2.c's:\n  got  {text[:len(EXPECTED)]!r}\n  want {EXPECTED!r}")
        print(f"ok: greedy text equals llama2.c's ({len(EXPECTED)} characters)")

        # 2. transformers' greedy generation on the same folder.
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as e:
            print(f"SKIP (part 2 only): transformers is not installed: {e}")
        else:
            torch.set_num_threads(1)
            out, ids = generate(model, PROMPT, "--max-new-tokens", "200", ids_out=ids_path)
            hf = harness.load_causal_lm(model, local_files_only=True)
            with torch.no_grad():
                seq = hf.generate(torch.tensor([ids["prompt"]]), max_new_tokens=200, do_sample=False,
                                  pad_token_id=0)[0].tolist()
            want = seq[len(ids["prompt"]):]
            if ids["new"] != want:
                i = next((i for i, (a, b) in enumerate(zip(ids["new"], want)) if a != b), min(len(want), len(ids["new"])))
                fail(f"greedy ids differ from transformers' at new token {i}:\n  pith {ids['new']}\n  hf   {want}")
            print(f"ok: {len(want)} greedy ids equal transformers' generate")

        # 3. Streaming prints whole characters: the streamed text is the one-shot decode.
        texts = {}
        multibyte_streamed = n_compared = 0
        for tok_name in ("tokenizer.json", "tokenizer.bin"):
            tok = os.path.join(model, tok_name)
            # T 20 is near-uniform: about half the tokens are bytes, some forming multi-byte characters.
            for seed, temperature, top_p in ((1, "1.5", "1"), (2, "1.5", "1"), (3, "1", "0.9"), (1, "20", "1"),
                                             (4, "20", "1"), (5, "20", "1"), (6, "20", "1")):
                out, ids = generate(model, UNICODE_PROMPT, "--max-new-tokens", "120", "--temperature",
                                    temperature, "--top-p", top_p, "--seed", str(seed), "--tokenizer", tok,
                                    ids_out=ids_path)
                all_ids = ids["prompt"] + ids["new"]
                texts[(tok_name, seed, temperature)] = out
                if 3 in all_ids:  # <0x00>: tokenizer_decode returns a C string, which ends at a NUL
                    print(f"note: {tok_name} seed {seed} T {temperature}: <0x00> was generated; a NUL ends "
                          f"the decoded C string, so this text is not compared")
                    continue
                n_compared += 1
                decoded = harness.pith_jsonl(["tokenize", "--tokenizer", tok, "--decode", "--skip-special", "--jsonl"],
                                             [all_ids, ids["prompt"]])
                want = decoded[0]["text"].encode("utf-8") + b"\n"
                if out != want:
                    fail(f"{tok_name} seed {seed} T {temperature}: streamed text differs from the decode "
                         f"of its ids {all_ids}:\n  streamed {out!r}\n  decoded  {want!r}")
                n_bytes = sum(1 for i in ids["new"] if 3 <= i < 259)  # <0x00>..<0xFF> are ids 3..258
                n_prompt_chars = sum(1 for c in decoded[1]["text"] if ord(c) >= 0x80)
                n_multibyte = sum(1 for c in out.decode("utf-8") if ord(c) >= 0x80 and c != "\ufffd") - n_prompt_chars
                multibyte_streamed += max(n_multibyte, 0)
                print(f"ok: {tok_name} seed {seed} T {temperature} top-p {top_p}: {len(ids['new'])} new "
                      f"tokens ({n_bytes} byte tokens, {n_multibyte} new multi-byte characters), streamed == decoded")
            again, _ = generate(model, UNICODE_PROMPT, "--max-new-tokens", "120", "--temperature", "1.5",
                                "--seed", "1", "--tokenizer", tok)
            if again != texts[(tok_name, 1, "1.5")]:
                fail(f"{tok_name}: seed 1 gave two different texts")
            if texts[(tok_name, 1, "1.5")] == texts[(tok_name, 2, "1.5")]:
                fail(f"{tok_name}: seeds 1 and 2 gave the same text")

        if n_compared < 8 or multibyte_streamed == 0:
            fail(f"{n_compared} texts compared, {multibyte_streamed} generated multi-byte characters: the streaming "
                 f"check above proved little (change the seeds)")

        # 4. Errors.
        cases = [
            (["--model", os.path.join(tmp, "nope"), "--prompt", "x"], 1, "no such folder"),
            (["--model", model, "--prompt", "x", "--temperature", "-1"], 2, "--temperature"),
            (["--model", model, "--prompt", "x", "--top-p", "0"], 2, "--top-p"),
            (["--model", model, "--prompt", "x", "--top-p", "1.5"], 2, "--top-p"),
            (["--model", model, "--prompt", "x", "--max-new-tokens", "0"], 2, "--max-new-tokens"),
            (["--model", model, "--prompt", "x", "--max-new-tokens", "ten"], 2, "--max-new-tokens"),
            (["--model", model, "--prompt", "x", "--dtype", "f64"], 2, "--dtype"),
            (["--model", model], 2, "--prompt"),
            (["--model", tmp, "--prompt", "x"], 1, "config.json"),
        ]
        for args, code, needle in cases:
            p = harness.run([harness.pith_bin(), "generate", *args], ok=False)
            err = p.stderr.decode(errors="replace")
            first = err.splitlines()[0] if err else ""
            if p.returncode != code or needle not in first:
                fail(f"pith generate {' '.join(args)}: exit {p.returncode} (want {code}), stderr {err!r} "
                     f"(want a first line naming {needle!r})")
        print(f"ok: {len(cases)} bad invocations fail with a message")
    print("generate_stories: all checks passed")


if __name__ == "__main__":
    main()
