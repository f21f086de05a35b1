#!/usr/bin/env python3
"""pith's tiktoken reader (data/tokenizer_tiktoken.c) against tiktoken's cl100k_base: ids of the
arXiv abstracts, SQuAD paragraphs and questions, TinyStories and the edge cases of
tokenizer_encoders_parity (scripts, emoji, CRLF, runs of spaces, digits, contractions), each text
also cut into its words (as LLMLingua-2 counts them), special tokens in the text (allowed_special
"all"), and decoding back. Then bad files: a line that is not "base64 rank", a non-base64 token.

tiktoken and the cl100k file live in .venv-peers (scripts/setup-peers); skips (exit 77) without them
or without the assets.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

CACHE_NAME = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"


def peer_main(texts_path, out_path):
    import tiktoken
    enc = tiktoken.get_encoding("cl100k_base")
    texts = json.load(open(texts_path))
    json.dump([enc.encode(t, allowed_special="all") for t in texts], open(out_path, "w"))


def main():
    peer_python = os.path.join(harness.ROOT, ".venv-peers", "bin", "python")
    cache = os.path.join(harness.ROOT, ".venv-peers", "tiktoken-cache")
    cl100k = os.path.join(cache, CACHE_NAME)
    if not os.path.exists(peer_python) or not os.path.exists(cl100k):
        harness.skip(".venv-peers or its tiktoken-cache is absent (scripts/setup-peers makes them)")
    import tokenizer_encoders_parity as tep
    texts = tep.load_texts(harness.assets_dir()) + tep.EDGE_CASES
    texts += [w for t in texts[:150] for w in t.split(" ")][:4000]
    texts += ["<|endoftext|>in text<|fim_prefix|>", "a  \n\n  b\r\n\r\n", "    indented\n\tcode();", "x" * 3000,
              "1234567 12 3", "don't DON'T I'M we'VE", "▁word▁piece", "\u00e9\u0301" * 5]
    with tempfile.TemporaryDirectory() as tmp:
        tp, op = os.path.join(tmp, "texts.json"), os.path.join(tmp, "ids.json")
        json.dump(texts, open(tp, "w"))
        env = dict(os.environ, TIKTOKEN_CACHE_DIR=cache)
        harness.run([peer_python, os.path.abspath(__file__), "--peer", tp, op], env=env)
        want = json.load(open(op))
        got = tep.pith_encode(cl100k, texts)
        tep.compare("cl100k encode", texts, got, want)
        print(f"cl100k: {len(texts)} texts, {sum(map(len, want))} ids identical to tiktoken's")
        back = tep.pith_decode(cl100k, want[:600], False)
        harness.check(back == texts[:600], "cl100k decode: " + next((f"{t!r} came back as {b!r}" for t, b in
                                                                     zip(texts, back) if t != b), ""))
        print("cl100k: 600 decodes give the texts back")
        # the same file under a *.tiktoken name; bad files get one line naming them
        named = os.path.join(tmp, "cl100k_base.tiktoken")
        os.symlink(cl100k, named)
        harness.check(tep.pith_encode(named, texts[:20]) == want[:20], "cl100k_base.tiktoken: ids differ")
        for content, why in (("aGVsbG8= 0\nd29ybGQ=\n", "not \"base64-token rank\""),
                             ("aGVsbG8= 0\n*** 1\n", "not base64"), ("", "no tokens")):
            bad = os.path.join(tmp, "bad.tiktoken")
            open(bad, "w").write(content)
            r = harness.pith("tokenize", "--tokenizer", bad, stdin="x\n", ok=False)
            harness.check(r.returncode != 0 and "bad.tiktoken" in r.stderr and why in r.stderr,
                          f"bad file {content!r}: exit {r.returncode}, {r.stderr.strip()!r}")
        print("bad tiktoken files: one-line errors naming the file")
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2], sys.argv[3])
    else:
        main()
