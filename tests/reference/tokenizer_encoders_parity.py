#!/usr/bin/env python3
"""Tokenizer parity for the encoders LLMLingua-2 uses: `pith tokenize` against Hugging Face
`tokenizers` (ids with and without special tokens, decoded text) for WordPiece tokenizers laid out
as bert-base-multilingual-cased / bert-base-uncased ship them, and Unigram tokenizers laid out as
xlm-roberta-large ships it (a Precompiled nmt_nfkc charsmap, Metaspace).

No real BERT or XLM-R tokenizer is at hand offline, so the script makes them, deterministically,
in a temp folder: a WordPiece vocabulary counted from the assets as HF's BertNormalizer and
BertPreTokenizer split them, saved through BertTokenizerFast (cased and uncased; HF's own WordPiece
trainer is not deterministic); a SentencePiece Unigram model trained by `sentencepiece`
(normalization nmt_nfkc, so a real precompiled_charsmap) and converted by transformers'
XLMRobertaTokenizerFast. Variants edit their tokenizer.json (the Hub's older XLM-R layout,
byte_fallback, prepend schemes, BERT options, Bert/RobertaProcessing).

Texts: arXiv abstracts, SQuAD paragraphs and questions, TinyStories, edge cases; and sweeps of
every code point through BERT's normalizer and pre-tokenizer and through the charsmap.

Env: PITH_BIN, PITH_ASSETS. Exit 77 when either or a module is missing; a mismatch exits 1.
"""
import collections
import hashlib
import json
import os
import shutil
import tempfile
import unicodedata

import harness

N_ARXIV, N_SQUAD, N_STORIES = 200, 200, 200
EDGE_CASES = [
    "", " ", "  ", "\n", "a\n\nb", "\t tab\tseparated", "   trailing   ", "a  b   c    d", "runs     of      spaces",
    "I'm you're they've we'll she'd IT'S DON'T do not", "1234567890123 3.14159 1,000,000", "x" * 150, "ab" * 60,
    "Supercalifragilisticexpialidocious antidisestablishmentarianism", "¿Qué tal? ¡Bien! Ünïcödé naïve café résumé",
    "ÀÉÎÕÜ àéîõü ÇçÑñ Łódź Ærøskøbing İstanbul ß ẞ ǅ ﬀ ﬁ ﬂ", "Ελληνικά κείμενο ΣΊΣΥΦΟΣ", "русский текст Ёж",
    "中文分词测试，标点符号。", "日本語のテキスト、カタカナ ｶﾀｶﾅ", "한국어 텍스트", "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３",
    "emoji 👩\u200d👩\u200d👧\u200d👦 family 🏳️\u200d🌈 flag 👍🏽 🥰", "e\u0301 combining a\u0308\u0301 Ａ\u0301",
    "\u00a0nbsp\u2003em\u200bzero-width\ufeffbom", "controls \x01\x02\x7f\x85 end", "CRLF line\r\nnext\r\n",
    "mixed\u2028separators\u2029here", "math: ∑_{i=1}^{n} x_i² ≤ ∞ ½ ⅓ ℌ ㎏ ㍿", "℃ № ™ … ‰ ′″",
    "URL https://example.com/path?q=1&r=2#frag", "'quoted' \"double\" `back` «guillemets» „low“",
    "____ ---- .... !!! ???", "<tag>not special</tag>", "a<b>c", "tabs\t\t\tand\u3000ideographic space",
    "عربي مكتوب", "עברית", "हिन्दी पाठ", "ไทย ภาษา", "Tiếng Việt có dấu",
]
SPECIAL_CASES = {
    "bert": ["[CLS] in text [SEP]", "a[MASK]b", "[UNK][PAD]", "[cls] lower"],
    "xlmr": ["<s>Hello</s>", "a<mask> b", "x <mask>y", "<unk> <pad>"],
}


def load_texts(assets):
    texts = []
    with open(os.path.join(assets, "data/arxiv/arxiv_abstracts_4000.jsonl"), encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["abstract"])
            if len(texts) == N_ARXIV:
                break
    with open(os.path.join(assets, "data/squad/dev-v1.1.json"), encoding="utf-8") as f:
        squad = json.load(f)["data"]
    paragraphs = [p for a in squad for p in a["paragraphs"]]
    texts += [p["context"] for p in paragraphs[: N_SQUAD // 2]]
    texts += [q["question"] for p in paragraphs for q in p["qas"]][: N_SQUAD // 2]
    with open(os.path.join(assets, "data/tinystories/tinystories_val_head.txt"), encoding="utf-8") as f:
        texts += [p for p in f.read().split("\n\n") if p.strip()][:N_STORIES]
    return texts


def pith_encode(tok, texts, bos=False):
    args = ["tokenize", "--tokenizer", tok, "--jsonl", "--field", "text", "--threads", "2"] + (["--bos"] if bos else [])
    return harness.pith_jsonl(args, [{"text": t} for t in texts])


def pith_decode(tok, ids, skip):
    args = ["tokenize", "--tokenizer", tok, "--decode", "--jsonl", "--field", "text", "--threads", "2"]
    return [r["text"] for r in harness.pith_jsonl(args + (["--skip-special"] if skip else []), ids)]


def compare(name, texts, got, want):
    for k, (g, w) in enumerate(zip(got, want)):
        if g != w:
            i = next((i for i, (x, y) in enumerate(zip(g, w)) if x != y), min(len(g), len(w)))
            harness.fail(f"{name}: case {k} differs at {i}: pith {g[max(0, i - 4):i + 4]} vs HF {w[max(0, i - 4):i + 4]}; "
                         f"lengths {len(g)} vs {len(w)}\n  text: {texts[k][:300]!r}")


def check(name, folder, texts, decode=True):
    """ids with and without special tokens, and decoding both ways, against HF tokenizers."""
    from tokenizers import Tokenizer
    hf = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    for bos in (False, True):
        want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=bos)]
        compare(f"{name} encode{' +special' if bos else ''}", texts, pith_encode(folder, texts, bos), want)
    print(f"{name}: {len(texts)} texts, {sum(map(len, want))} ids identical (with and without special tokens)")
    if not decode:
        return
    for skip in (False, True):
        got = pith_decode(folder, want, skip)
        ref = hf.decode_batch(want, skip_special_tokens=skip)
        compare(f"{name} decode{' skip_special' if skip else ''}", [str(w[:20]) for w in want], got, ref)
    print(f"{name}: {len(want)} decodes identical (with and without special tokens)")


def edit(src, dst, fn):
    """Copy folder src to dst with fn applied to its tokenizer.json (a dict, edited in place)."""
    shutil.copytree(src, dst)
    path = os.path.join(dst, "tokenizer.json")
    j = harness.read_json(path)
    fn(j)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return dst


def make_bert(texts, tmp, lowercase):
    """A WordPiece vocabulary from the texts as split by HF's BertNormalizer and BertPreTokenizer:
    the specials, every character (alone and as ##x), then the most frequent words, word starts and
    ## word pieces (count, then text). HF's WordPiece trainer is not used: it breaks ties in an order
    that changes from run to run (its pieces differed between runs here)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    transformers = harness.require("transformers")
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    words = collections.Counter()
    for t in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    starts, pieces = collections.Counter(), collections.Counter()
    for w, n in words.items():
        for j in range(2, min(len(w) - 1, 6) + 1):
            starts[w[:j]] += n
        for i in range(1, len(w)):
            for j in range(i + 2, min(len(w), i + 6) + 1):
                pieces["##" + w[i:j]] += n

    def top(counter, k):
        return sorted(counter, key=lambda x: (-counter[x], x))[:k]

    chars = sorted({c for w in words for c in w})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    order = list(dict.fromkeys(specials + chars + ["##" + c for c in chars] + top(words, 1200) + top(starts, 500)
                               + top(pieces, 800)))
    tok = Tokenizer(models.WordPiece({k: i for i, k in enumerate(order)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(specials)
    out = os.path.join(tmp, "bert-uncased" if lowercase else "bert-cased")
    transformers.BertTokenizerFast(tokenizer_object=tok, do_lower_case=lowercase).save_pretrained(out)
    j = harness.read_json(os.path.join(out, "tokenizer.json"))
    print(f"{out}: {len(order)} pieces, sha256 of the vocabulary "
          f"{hashlib.sha256(json.dumps(order).encode()).hexdigest()[:16]}")
    harness.check(j["model"]["type"] == "WordPiece" and j["normalizer"]["type"] == "BertNormalizer"
                  and j["pre_tokenizer"]["type"] == "BertPreTokenizer" and j["decoder"]["type"] == "WordPiece",
                  f"{out}: not BERT's layout: {j['normalizer']} {j['pre_tokenizer']} {j['decoder']}")
    return out


def make_xlmr(texts, tmp, name, byte_fallback=False):
    spm = harness.require("sentencepiece")
    transformers = harness.require("google.protobuf", "transformers")[1]
    corpus = os.path.join(tmp, name + ".txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for t in texts + EDGE_CASES:
            for line in t.split("\n"):
                if line.strip():
                    f.write(line + "\n")
    prefix = os.path.join(tmp, name)
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=1500, model_type="unigram",
                                   normalization_rule_name="nmt_nfkc", character_coverage=0.9995,
                                   byte_fallback=byte_fallback, num_threads=1, minloglevel=2)
    src = os.path.join(tmp, name + "-src")
    os.makedirs(src)
    shutil.copy(prefix + ".model", os.path.join(src, "sentencepiece.bpe.model"))
    out = os.path.join(tmp, name)
    transformers.XLMRobertaTokenizerFast.from_pretrained(src, from_slow=True).save_pretrained(out)
    j = harness.read_json(os.path.join(out, "tokenizer.json"))
    print(f"{out}: {len(j['model']['vocab'])} pieces, sha256 of the vocabulary "
          f"{hashlib.sha256(json.dumps(j['model']['vocab']).encode()).hexdigest()[:16]}")
    norm = j["normalizer"]
    harness.check(j["model"]["type"] == "Unigram" and "Precompiled" in json.dumps(norm)[:200],
                  f"{out}: not XLM-R's layout: {j['model']['type']} {json.dumps(norm)[:200]}")
    return out


def hub_layout(j):
    """The layout of xlm-roberta-large's file on the Hub: Precompiled then Replace of runs of
    spaces, a legacy Metaspace (add_prefix_space), <mask> with lstrip."""
    pre = j["normalizer"] if j["normalizer"]["type"] == "Precompiled" else j["normalizer"]["normalizers"][0]
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        pre, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    for a in j["added_tokens"]:
        if a["content"] == "<mask>":
            a["lstrip"] = True


def metaspace(scheme, split):
    def fn(j):
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}
        j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}
    return fn


def bert_options(**kw):
    def fn(j):
        j["normalizer"].update(kw)
    return fn


def bert_processing(j):
    j["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", j["model"]["vocab"]["[SEP]"]],
                           "cls": ["[CLS]", j["model"]["vocab"]["[CLS]"]]}


def roberta_processing(j):
    ids = {p[0]: i for i, p in enumerate(j["model"]["vocab"])}
    j["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", ids["</s>"]], "cls": ["<s>", ids["<s>"]],
                           "trim_offsets": True, "add_prefix_space": True}


# ---- code point sweeps -------------------------------------------------------------------------------

def assigned(c):
    return not 0xD800 <= c < 0xE000 and c != 0 and unicodedata.category(chr(c)) != "Cn"


def chunks(cps, sep, size):
    return [sep.join(chr(c) for c in cps[i:i + size]) for i in range(0, len(cps), size)]


def sweep_bert_classes(tmp):
    """Every code point between two letters, with the vocabulary {a, ##a, [UNK]}: removed (aa ->
    a ##a), whitespace (a a), punctuation or CJK (a [UNK] a) and word characters (one [UNK]) all give
    different ids."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    vocab = {"[UNK]": 0, "a": 1, "##a": 2}
    hf = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                               lowercase=False)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    path = os.path.join(tmp, "sweep-classes.json")
    hf.save(path)
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000 and c != ord("a")]
    texts = ["a" + "a".join(chr(c) for c in cps[i:i + 400]) + "a" for i in range(0, len(cps), 400)]
    compare("BERT classes sweep", texts, pith_encode(path, texts), [e.ids for e in hf.encode_batch(texts)])
    print(f"BERT clean_text / whitespace / punctuation / CJK: all {len(cps)} code points identical")


def sweep_bert_case(tmp):
    """Every code point but controls (CJK ideographs, Hangul syllables, private use and the planes
    past the first two left out: they map to themselves) lowercased and stripped of accents, a word
    each, with a vocabulary holding what HF makes of each: a character pith maps differently gets
    another id or [UNK]. Unassigned code points are in: Rust's Unicode is newer than Python's."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    skip = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0x20000, 0xDFFFF), (0xF0000, 0x10FFFF)]
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000 and unicodedata.category(chr(c)) != "Cc"
           and not any(a <= c <= b for a, b in skip)]
    norm = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=True)
    vocab = {"[UNK]": 0}
    for c in cps:
        for w in norm.normalize_str(chr(c)).split():
            vocab.setdefault(w, len(vocab))
    hf = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    hf.normalizer = norm
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = os.path.join(tmp, "sweep-case.json")
    hf.save(path)
    texts = chunks(cps, " ", 400)
    compare("BERT lowercase + strip_accents sweep", texts, pith_encode(path, texts), [e.ids for e in hf.encode_batch(texts)])
    print(f"BERT lowercase + strip_accents: {len(cps)} code points identical ({len(vocab)} distinct results)")


def sweep_charsmap(folder):
    """Every assigned code point alone (between spaces) through the XLM-R tokenizer: the charsmap,
    Metaspace and the Unigram model, unknown characters included."""
    from tokenizers import Tokenizer
    hf = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    cps = [c for c in range(1, 0x110000) if assigned(c) and not 0xF0000 <= c]
    texts = chunks(cps, " ", 500)
    compare("charsmap sweep", texts, pith_encode(folder, texts), [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)])
    print(f"Precompiled charsmap + Unigram: {len(cps)} code points identical")
    # Grapheme clusters decide what the charsmap sees: every mark, joiner, modifier, jamo and
    # regional indicator after bases the charsmap maps (full-width, half-width, ligature, jamo) or not.
    marks = [c for c in range(0x300, 0x20000) if assigned(c) and (unicodedata.category(chr(c))[0] == "M"
             or 0x1160 <= c <= 0x11FF or 0x1F1E6 <= c <= 0x1F1FF or 0x1F3FB <= c <= 0x1F3FF or c in (0x200C, 0x200D))]
    bases = ["a", "e", "\uff21", "\uff76", "\ufb01", "\u1100", "\u1100\u1161", "\U0001F1E6", "\U0001F44D", "\u0915\u094d",
             "\r", "\u00a0", "\u2126"]
    texts = [" ".join(b + chr(m) + chr(m2) for m, m2 in zip(marks[i:i + 300], marks[i + 1:i + 301])) + " " +
             " ".join(b + chr(m) for m in marks[i:i + 300]) for b in bases for i in range(0, len(marks), 300)]
    compare("grapheme sweep", texts, pith_encode(folder, texts), [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)])
    print(f"Precompiled charsmap + Unigram: {len(marks)} marks and joiners after {len(bases)} bases identical")


def main():
    harness.pith_bin()
    assets = harness.assets_dir()
    harness.asset("data/arxiv/arxiv_abstracts_4000.jsonl")
    harness.asset("data/squad/dev-v1.1.json")
    harness.asset("data/tinystories/tinystories_val_head.txt")
    harness.require("tokenizers")
    corpus = load_texts(assets)
    with tempfile.TemporaryDirectory() as tmp:
        for lowercase in (False, True):
            bert = make_bert(corpus, tmp, lowercase)
            name = "BERT uncased" if lowercase else "BERT cased"
            check(name, bert, corpus + EDGE_CASES + SPECIAL_CASES["bert"])
        cased = os.path.join(tmp, "bert-cased")
        few = corpus[:60] + corpus[N_ARXIV:N_ARXIV + 60] + EDGE_CASES + SPECIAL_CASES["bert"]
        for label, fn in [("strip_accents", bert_options(strip_accents=True)),
                          ("no clean_text, no chinese chars", bert_options(clean_text=False, handle_chinese_chars=False)),
                          ("lowercase without strip_accents", bert_options(lowercase=True, strip_accents=False)),
                          ("BertProcessing", bert_processing),
                          ("max_input_chars_per_word 8", lambda j: j["model"].update(max_input_chars_per_word=8))]:
            check(f"BERT cased ({label})", edit(cased, os.path.join(tmp, "bert-" + label.replace(" ", "_")), fn), few)

        xlmr = make_xlmr(corpus, tmp, "xlmr")
        check("XLM-R (transformers' layout)", xlmr, corpus + EDGE_CASES + SPECIAL_CASES["xlmr"])
        few = corpus[:60] + corpus[N_ARXIV:N_ARXIV + 60] + EDGE_CASES + SPECIAL_CASES["xlmr"]
        hub = edit(xlmr, os.path.join(tmp, "xlmr-hub"), hub_layout)
        check("XLM-R (the Hub's layout)", hub, corpus + EDGE_CASES + SPECIAL_CASES["xlmr"])
        for label, fn in [("Metaspace first", metaspace("first", True)), ("Metaspace never", metaspace("never", True)),
                          ("Metaspace no split", metaspace("always", False)), ("RobertaProcessing", roberta_processing)]:
            check(f"XLM-R ({label})", edit(hub, os.path.join(tmp, "xlmr-" + label.replace(" ", "_")), fn), few)
        fb = make_xlmr(corpus[:150], tmp, "xlmr-bytes", byte_fallback=True)
        fb = edit(fb, fb + "-on", lambda j: j["model"].update(byte_fallback=True))
        check("XLM-R (byte_fallback)", fb, few)

        sweep_bert_classes(tmp)
        sweep_bert_case(tmp)
        sweep_charsmap(hub)
    print("encoder tokenizer parity: all identical")


if __name__ == "__main__":
    main()
