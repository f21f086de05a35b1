#!/usr/bin/env python3
"""Tokenizer parity: `pith tokenize` against Hugging Face `tokenizers` (ids and decoded text) on
arXiv abstracts, TinyStories and edge cases, for LLaMA-3, GPT-2 (vocab.json + merges.txt) and
LLaMA-2 converted from tokenizer.model (both the Metaspace tokenizer.json of current
transformers and the older Prepend/Replace normalizer form). llama2.c tokenizer.bin files are
checked against a direct Python transcription of llama2.c's encode loop (it is not SentencePiece)
and for decode(encode(x)) == x.

Env: PITH_BIN (the pith binary), PITH_ASSETS (the assets folder). Exit 77 when either or a
Python module is missing; any mismatch prints the first differing case and exits 1.
"""
import json
import os
import struct
import tempfile

import harness

N_ARXIV = 300          # documents per corpus: enough to cover the vocabulary's common paths
N_STORIES = 300
N_LLAMA2C = 25         # the Python llama2.c reference is O(n^2) per document
N_VARIANT = 60         # documents per corpus for the pre-tokenizer / normalizer variants

EDGE_CASES = [
    "", " ", "  ", "\n", "\n\n\n", "a\n\nb", "\t tab\tseparated", "   trailing   ", "a  b   c    d",
    "I'm you're they've we'll she'd IT'S DON'T", "1234567890123 3.14159 1,000,000", "x" * 300,
    "¿Qué tal? ¡Bien! Ünïcödé", "Ελληνικά κείμενο", "русский текст", "中文分词测试", "日本語のテキスト",
    "한국어 텍스트", "emoji 👩\u200d👩\u200d👧\u200d👦 family 🏳️\u200d🌈 flag", "e\u0301 combining", "\u00a0nbsp\u2003em",
    "CRLF line\r\nnext\r\n", "mixed\u2028separators\u2029here", "<tag>not special</tag>", "a<b>c",
    "   leading spaces", "trailing newline\n", "tabs\t\t\tand\u3000ideographic space",
    "math: ∑_{i=1}^{n} x_i² ≤ ∞", "code: def f(x):\n    return x**2  # comment\n",
    "URL https://example.com/path?q=1&r=2#frag", "'quoted' \"double\" `back`", "____ ---- ....",
]
SPECIAL_CASES = {  # special tokens written in the text match as special tokens
    "llama3": ["<|begin_of_text|>special in text<|eot_id|>", "a<|end_of_text|>b", "<|start_header_id|>user<|end_header_id|>\n\nHi"],
    "gpt2": ["Hello<|endoftext|>world", "<|endoftext|><|endoftext|>"],
    "llama2": ["<s>Hello</s>", "a</s>b <s> c"],
}


def load_corpora(assets):
    docs = []
    with open(os.path.join(assets, "data/arxiv/arxiv_abstracts_4000.jsonl"), encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line)["abstract"])
            if len(docs) == N_ARXIV:
                break
    with open(os.path.join(assets, "data/tinystories/tinystories_val_head.txt"), encoding="utf-8") as f:
        paragraphs = [p for p in f.read().split("\n\n") if p.strip()]
    docs += paragraphs[: N_STORIES // 2]
    docs += ["\n\n".join(paragraphs[i : i + 5]) for i in range(0, 5 * (N_STORIES // 2), 5)]  # multi-paragraph
    return docs


def pith_encode(tok_path, texts):
    return harness.pith_jsonl(["tokenize", "--tokenizer", tok_path, "--jsonl", "--field", "text", "--threads", "2"],
                              [{"text": t} for t in texts])


def pith_decode(tok_path, id_lists):
    return [r["text"] for r in harness.pith_jsonl(
        ["tokenize", "--tokenizer", tok_path, "--decode", "--jsonl", "--field", "text", "--threads", "2"], id_lists)]


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(name, got, want, around, context):
    """Fail at the first case where got and want differ, showing `around` items either side of the
    first difference and context(case)."""
    k = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), None)
    if k is not None:
        g, w = got[k], want[k]
        i = first_difference(g, w)
        lo, hi = max(0, i - around), i + around
        harness.fail(f"{name}: case {k} differs at {i}: pith {g[lo:hi]!r} vs reference {w[lo:hi]!r}; "
                     f"lengths {len(g)} vs {len(w)}\n  {context(k)}")


def compare_ids(name, texts, got, want):
    compare(name, got, want, 4, lambda k: f"text: {texts[k][:300]!r}")
    print(f"{name}: {len(texts)} texts, {sum(map(len, want))} ids identical")


def compare_text(name, ids, got, want):
    compare(f"{name} (decoded text)", got, want, 20, lambda k: f"ids: {ids[k][:40]}")
    print(f"{name}: {len(got)} decodes identical")


def check_hf(name, tok_path, hf, texts):
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    got = pith_encode(tok_path, texts)
    compare_ids(f"{name} encode", texts, got, want)
    compare_text(f"{name} decode", want, pith_decode(tok_path, want),
                 hf.decode_batch(want, skip_special_tokens=False))


def split(pattern, behavior, invert=False, regex=True):
    return {"type": "Split", "pattern": {"Regex" if regex else "String": pattern}, "behavior": behavior,
            "invert": invert}


BYTE_LEVEL_PLAIN = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
METASPACE = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}

# Other pre-tokenizers and normalizers on the GPT-2 / LLaMA-2 vocabularies: (name, base, edit).
VARIANTS = [
    ("gpt2 ByteLevel(add_prefix_space)", "gpt2", {"pre_tokenizer": {
        "type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}}),
    ("gpt2 Digits+Whitespace", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "Whitespace"}, BYTE_LEVEL_PLAIN]}}),
    ("gpt2 Split behaviors", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split("[,.;]", "MergedWithPrevious"), split(" ", "MergedWithNext", regex=False),
        split("\\p{N}", "Contiguous"), BYTE_LEVEL_PLAIN]}}),
    ("gpt2 Removed/WhitespaceSplit/Digits", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split("[aeiou]", "Removed"), {"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": False},
        BYTE_LEVEL_PLAIN]}}),
    ("gpt2 inverted Split", "gpt2", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split("\\s+", "Isolated", invert=True), split("e", "Removed", invert=True, regex=False), BYTE_LEVEL_PLAIN]}}),
    ("llama2 Strip+Metaspace(always, split)", "llama2", {
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True, "strip_right": True}]},
        "pre_tokenizer": METASPACE}),
    ("llama2 regex Replace+Prepend", "llama2", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None}),
]


def check_variants(bases, texts, tmp):
    from tokenizers import Tokenizer
    for name, base, edit in VARIANTS:
        j = json.loads(bases[base])
        j.update(edit)
        path = os.path.join(tmp, name.replace(" ", "_").replace("/", "_") + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
        check_hf(name, path, Tokenizer.from_file(path), texts)


def convert_llama2(model_path, tmp):
    """tokenizer.json of LLaMA-2 via transformers (Metaspace), and its older normalizer form."""
    # the converter needs sentencepiece and protobuf
    transformers = harness.require("sentencepiece", "google.protobuf", "transformers")[2]
    src = os.path.join(tmp, "llama2-src")
    os.makedirs(src)
    os.symlink(model_path, os.path.join(src, "tokenizer.model"))
    transformers.LlamaTokenizerFast.from_pretrained(src).save_pretrained(os.path.join(tmp, "llama2"))
    path = os.path.join(tmp, "llama2", "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    if j["pre_tokenizer"] is None or j["pre_tokenizer"].get("type") != "Metaspace":
        harness.fail(f"the converted LLaMA-2 tokenizer has an unexpected pre_tokenizer: {j['pre_tokenizer']}")
    if len(j["model"]["vocab"]) != 32000:
        harness.fail(f"the converted LLaMA-2 tokenizer has {len(j['model']['vocab'])} tokens, not 32000")
    j["pre_tokenizer"] = None
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    legacy = os.path.join(tmp, "llama2-legacy", "tokenizer.json")
    os.makedirs(os.path.dirname(legacy))
    with open(legacy, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return path, legacy


def llama2c_encode(pieces, scores, text):
    """llama2.c run.c's encode(): dummy " " prefix, UTF-8 characters or byte+3, then repeatedly
    merge the adjacent pair whose concatenation is the best-scoring token (leftmost on ties)."""
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    data = text.encode("utf-8")
    ids = [lookup[b" "]] if data else []
    buf = b""
    for i, c in enumerate(data):
        if c & 0xC0 != 0x80:
            buf = b""
        buf += bytes([c])
        if i + 1 < len(data) and data[i + 1] & 0xC0 == 0x80 and len(buf) < 4:
            continue
        ids += [lookup[buf]] if buf in lookup else [b + 3 for b in buf]
        buf = b""
    while True:
        best, at, best_id = -1e10, -1, -1
        for i in range(len(ids) - 1):
            j = lookup.get(pieces[ids[i]] + pieces[ids[i + 1]])
            if j is not None and scores[j] > best:
                best, at, best_id = scores[j], i, j
        if at < 0:
            return ids
        ids[at : at + 2] = [best_id]


def read_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    pieces, scores, p = [], [], 4
    while p < len(data):
        score, n = struct.unpack_from("<fi", data, p)
        pieces.append(data[p + 8 : p + 8 + n])
        scores.append(score)
        p += 8 + n
    return pieces, scores


def check_llama2c(name, path, texts):
    pieces, scores = read_llama2c(path)
    subset = texts[:N_LLAMA2C] + texts[N_ARXIV : N_ARXIV + N_LLAMA2C]
    want = [llama2c_encode(pieces, scores, t) for t in subset]
    compare_ids(f"{name} encode (llama2.c reference)", subset, pith_encode(path, subset), want)
    ids = pith_encode(path, texts)
    compare_text(f"{name} decode(encode(x))", ids, pith_decode(path, ids), texts)


def main():
    harness.pith_bin()
    harness.asset("tokenizers")
    assets = harness.assets_dir()
    harness.require("tokenizers")
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    texts = load_corpora(assets) + EDGE_CASES
    tok = os.path.join(assets, "tokenizers")

    llama3 = os.path.join(tok, "llama3/tokenizer.json")
    check_hf("llama3", llama3, Tokenizer.from_file(llama3), texts + SPECIAL_CASES["llama3"])

    gpt2 = Tokenizer(models.BPE.from_file(os.path.join(tok, "gpt2/vocab.json"), os.path.join(tok, "gpt2/merges.txt")))
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    gpt2.decoder = decoders.ByteLevel()
    gpt2.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    check_hf("gpt2", os.path.join(tok, "gpt2"), gpt2, texts + SPECIAL_CASES["gpt2"])

    check_llama2c("llama2 tokenizer.bin", os.path.join(tok, "llama2/tokenizer.bin"), texts)
    check_llama2c("tok512.bin", os.path.join(assets, "models/tok512.bin"), texts)

    with tempfile.TemporaryDirectory() as tmp:
        metaspace, legacy = convert_llama2(os.path.join(tok, "llama2/tokenizer.model"), tmp)
        check_hf("llama2 (Metaspace)", metaspace, Tokenizer.from_file(metaspace), texts + SPECIAL_CASES["llama2"])
        check_hf("llama2 (Prepend/Replace)", legacy, Tokenizer.from_file(legacy), texts + SPECIAL_CASES["llama2"])
        with open(metaspace, encoding="utf-8") as f:
            bases = {"gpt2": gpt2.to_str(), "llama2": f.read()}
        few = texts[:N_VARIANT] + texts[N_ARXIV : N_ARXIV + N_VARIANT] + EDGE_CASES
        check_variants(bases, few, tmp)
    print("tokenizer parity: all identical")


if __name__ == "__main__":
    main()
