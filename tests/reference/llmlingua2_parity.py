#!/usr/bin/env python3
"""pith compress --method llmlingua2 against llmlingua 0.2.2's LLMLingua-2, decision for decision.

Two classifiers, made here and saved by transformers: a tiny BertForTokenClassification with a
WordPiece tokenizer (BERT's layout, vocabulary counted from the assets) in a folder whose name holds
"bert-base-multilingual-cased", and a tiny XLMRobertaForTokenClassification with a Unigram tokenizer
(sentencepiece, converted as xlm-roberta-large ships it) in one holding "xlm-roberta-large"
(llmlingua picks its word rules from the folder name). Random weights would give near-ties: a
random 2-layer encoder's keep probabilities all sit near 0.5 and the thresholds fall among words a
float ulp apart. So the classifier head is drawn with std 0.25 instead of 0.02: the hidden states
(unit variance after the last LayerNorm, different at every position) then spread the logits over
about ±2, so neighbouring word probabilities differ by far more than the 1e-6 by which pith's and
torch's forward passes differ, and every decision is compared exactly.

Over >= 30 prompts per classifier (one sentence; arXiv abstracts; long TinyStories runs of 1,500+
classifier tokens that need several 510-token chunks; 2-6 SQuAD paragraphs as several contexts, with
the context filter on and off; force tokens ("\\n" becomes [NEWi] for both tokenizers), digits,
drop_consecutive, token_to_word first, target_token, rate 1, 510 tokens without a chunk end, scripts
and emoji that XLM-R's small vocabulary reads as <unk>), at rates 0.1, 0.33 and 0.5:
  - the compressed prompt is the same string,
  - the words and their keep labels (return_word_label) are the same,
  - origin_tokens and compressed_tokens (cl100k, pith's tiktoken reader) are the same.

llmlingua needs transformers 4.x: it runs in .venv-peers (scripts/setup-peers), this script calling
itself there with --peer. Skips (exit 77) when .venv-peers, the assets or a module are missing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

WORD_SEP, LABEL_SEP = "\u241e", "\u241f"


def peer_main(cases_path, out_path):
    """In .venv-peers: llmlingua's LLMLingua-2 on every case."""
    import torch
    from llmlingua import PromptCompressor

    torch.set_num_threads(2)
    cases = json.load(open(cases_path))
    compressors, out = {}, []
    for case in cases:
        model = case["model"]
        if model not in compressors:
            compressors[model] = PromptCompressor(model_name=model, device_map="cpu", use_llmlingua2=True)
        pc = compressors[model]
        try:
            r = pc.compress_prompt(case["contexts"], return_word_label=True, word_sep=WORD_SEP, label_sep=LABEL_SEP,
                                   **case["kwargs"])
            words, labels = [], []
            if r.get("fn_labeled_original_prompt"):
                for item in r["fn_labeled_original_prompt"].split(WORD_SEP):
                    w, l = item.rsplit(LABEL_SEP, 1)
                    words.append(w)
                    labels.append(int(l))
            out.append({"prompt": r["compressed_prompt"], "origin_tokens": r["origin_tokens"],
                        "compressed_tokens": r["compressed_tokens"], "words": words, "labels": labels})
        except Exception as e:  # reported by the parent as a mismatch
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, open(out_path, "w"))


def make_models(tmp, texts):
    """The two classifiers with their tokenizers, in folders named as llmlingua needs."""
    torch = harness.require("torch")
    transformers = harness.require("transformers")
    import tokenizer_encoders_parity as tep

    bert_tok = tep.make_bert(texts, tmp, lowercase=False)
    xlmr_tok = tep.make_xlmr(texts, tmp, "xlmr-spm")
    models = {}
    for name, tok_dir in (("tiny-bert-base-multilingual-cased", bert_tok), ("tiny-xlm-roberta-large", xlmr_tok)):
        n_vocab = len(harness.read_json(os.path.join(tok_dir, "tokenizer.json"))["model"]["vocab"])
        common = dict(vocab_size=n_vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, num_labels=2, hidden_act="gelu")
        torch.manual_seed(1234)
        if "bert-base" in name:
            cfg = transformers.BertConfig(max_position_embeddings=512, pad_token_id=0, **common)
            model = transformers.BertForTokenClassification(cfg)
        else:
            cfg = transformers.XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                                                eos_token_id=2, type_vocab_size=1, **common)
            model = transformers.XLMRobertaForTokenClassification(cfg)
        with torch.no_grad():  # a head wide enough that word probabilities are far apart (see above)
            model.classifier.weight.normal_(0.0, 0.25)
            model.classifier.bias.zero_()
        out = os.path.join(tmp, name)
        model.save_pretrained(out)
        shutil.copy(os.path.join(tok_dir, "tokenizer.json"), out)
        # transformers 5's tokenizer_config.json (a list of extra_special_tokens) makes 4.57's
        # AutoTokenizer return a bool: a plain one, as the Hub's checkpoints have
        specials = ({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                     "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"} if "roberta" in name else
                    {"do_lower_case": False, "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                     "cls_token": "[CLS]", "mask_token": "[MASK]"})
        harness.write_json(os.path.join(out, "tokenizer_config.json"),
                           {"tokenizer_class": "XLMRobertaTokenizer" if "roberta" in name else "BertTokenizer",
                            "model_max_length": 512, **specials})
        models[name] = out
    return models


def build_cases(models, assets):
    from tokenizer_encoders_parity import EDGE_CASES as edge_cases
    stories = [p.strip() for p in open(os.path.join(assets, "data/tinystories/tinystories_val_head.txt"),
                                       encoding="utf-8").read().split("\n\n") if len(p.strip()) > 80]
    arxiv = []
    with open(os.path.join(assets, "data/arxiv/arxiv_abstracts_4000.jsonl"), encoding="utf-8") as f:
        for line in f:
            arxiv.append(json.loads(line)["abstract"].strip())
            if len(arxiv) == 40:
                break
    squad = json.load(open(os.path.join(assets, "data/squad/dev-v1.1.json"), encoding="utf-8"))["data"]
    paras = [p["context"] for a in squad for p in a["paragraphs"]][:60]
    longs = ["\n".join(stories[12 * i:12 * i + 12]) for i in range(4)]  # > 1,500 classifier tokens each
    force_sets = [[], ["\n", "?", "."], ["\n", ",", ".", "!", "?"]]
    cases = []
    for model in models.values():
        k = 0

        def add(contexts, **kw):
            cases.append({"model": model, "contexts": contexts, "kwargs": kw})

        for rate in (0.1, 0.33, 0.5):
            add(["The quick brown fox jumps over the lazy dog."], rate=rate)
            for j in range(3):
                add([arxiv[k]], rate=rate, force_tokens=force_sets[j])
                k += 1
            add([longs[int(rate * 10) % 4]], rate=rate, force_tokens=force_sets[1])
            add(paras[k:k + 3], rate=rate)
            add(paras[k + 3:k + 8], rate=rate, force_tokens=force_sets[2])
            add(paras[k + 8:k + 10], rate=rate, use_context_level_filter=False)
            k += 10
        add([longs[3]], rate=0.33, force_tokens=force_sets[2], drop_consecutive=True)
        add(paras[40:44], rate=0.33, force_tokens=force_sets[1], drop_consecutive=True)
        add([arxiv[30]], rate=0.5, force_reserve_digit=True)
        add([arxiv[31]], rate=0.33, token_to_word="first", force_tokens=force_sets[1])
        add([longs[0]], target_token=300)
        add(paras[44:48], target_token=200)
        add(paras[48:51], rate=1.0)
        add([stories[60] + "\n\n" + stories[61]], rate=0.5, force_tokens=["\n"])
        add(["Numbers 12 and 345, then 6.7 and 8,9!"], rate=0.33, force_tokens=[",", "."], force_reserve_digit=True)
        # 510 tokens with no chunk end (a 511-token chunk whose [SEP] is cut), and text full of unknown pieces
        add([" ".join(arxiv[32:38]).replace(".", "")], rate=0.33)
        add([" ".join(edge_cases[:40])], rate=0.5, force_tokens=["\n", "."])
    return cases


def pith_flags(kw):
    flags = ["--rate", str(kw.get("rate", 0.5))]
    if kw.get("target_token", -1) > 0:
        flags += ["--target-tokens", str(kw["target_token"])]
    if kw.get("force_tokens"):
        flags += ["--force-tokens", ",".join(t.replace("\\", "\\\\").replace(",", "\\,").replace("\n", "\\n")
                                            for t in kw["force_tokens"])]
    if kw.get("drop_consecutive"):
        flags.append("--drop-consecutive")
    if kw.get("force_reserve_digit"):
        flags.append("--force-reserve-digit")
    if kw.get("token_to_word") == "first":
        flags += ["--token-to-word", "first"]
    if kw.get("use_context_level_filter") is False:
        flags.append("--no-context-filter")
    return flags


def check_errors(pith, models, tmp):
    """Bad inputs: one line naming the option or file, exit 1, nothing on stdout."""
    bert = models["tiny-bert-base-multilingual-cased"]
    causal = os.path.join(tmp, "causal")
    os.makedirs(causal)
    harness.write_json(os.path.join(causal, "config.json"), {"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    line = json.dumps({"context": ["Some text. More text."]}) + "\n"
    cases = [
        (["--scorer", causal], line, "not a BERT or XLM-R token classifier"),
        (["--scorer", os.path.join(tmp, "nowhere")], line, "no such folder"),
        (["--scorer", bert, "--cl100k", os.path.join(tmp, "none.tiktoken")], line, "--cl100k"),
        (["--scorer", bert, "--force-tokens", "a,\\q"], line, "unknown escape"),
        (["--scorer", bert, "--force-tokens", "a,,b"], line, "an empty token"),
        (["--scorer", bert, "--exact"], line, "--exact"),
        (["--scorer", bert, "--rate", "1.5"], line, "--rate"),
        (["--scorer", bert], json.dumps({"context": ["  ", ""]}) + "\n", "empty prompt"),
        (["--scorer", bert], json.dumps({"context": 3}) + "\n", "not a string or a list"),
    ]
    for args, stdin, want in cases:
        r = harness.run([pith, "compress", "--method", "llmlingua2", *args], stdin=stdin, text=True, ok=False)
        msg = r.stderr.strip()
        harness.check(r.returncode != 0 and want in msg and not r.stdout,
                      f"{args}: exit {r.returncode}, stderr {msg!r} (wanted {want!r}), stdout {r.stdout[:100]!r}")
    r = harness.run([pith, "compress", "--method", "llmlingua", "--scorer", bert], stdin=line, text=True, ok=False)
    harness.check(r.returncode != 0 and "a classifier, not a causal LM" in r.stderr, f"llmlingua on a classifier: {r.stderr!r}")
    print(f"{len(cases) + 1} bad inputs: one-line errors")


def main():
    pith = harness.pith_bin()
    assets = harness.assets_dir()
    for rel in ("data/tinystories/tinystories_val_head.txt", "data/arxiv/arxiv_abstracts_4000.jsonl",
                "data/squad/dev-v1.1.json"):
        harness.asset(rel)
    import tokenizer_encoders_parity as tep
    with tempfile.TemporaryDirectory() as tmp:
        models = make_models(tmp, tep.load_texts(assets))
        check_errors(pith, models, tmp)
        peer_python = os.path.join(harness.ROOT, ".venv-peers", "bin", "python")
        if not os.path.exists(peer_python):
            harness.skip(".venv-peers is absent (scripts/setup-peers makes it: llmlingua 0.2.2 + transformers 4.57.6)")
        tiktoken_cache = os.path.join(harness.ROOT, ".venv-peers", "tiktoken-cache")
        cl100k = os.path.join(tiktoken_cache, "9b5ad71b2ce5302211f9c61530b329a4922fc6a4")
        if not os.path.exists(cl100k):
            harness.skip(f"{cl100k} is absent (scripts/setup-peers puts cl100k_base.tiktoken there)")
        cases = build_cases(models, assets)
        cases_path, peer_out = os.path.join(tmp, "cases.json"), os.path.join(tmp, "peer.json")
        json.dump(cases, open(cases_path, "w"))
        env = dict(os.environ, TIKTOKEN_CACHE_DIR=tiktoken_cache, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        peer = subprocess.Popen([peer_python, os.path.abspath(__file__), "--peer", cases_path, peer_out], env=env)

        ours = [None] * len(cases)
        groups = {}
        for i, c in enumerate(cases):
            groups.setdefault((c["model"], tuple(pith_flags(c["kwargs"]))), []).append(i)
        for (model, flags), idx in groups.items():
            lines = "".join(json.dumps({"context": cases[i]["contexts"]}) + "\n" for i in idx)
            r = harness.run([pith, "compress", "--method", "llmlingua2", "--scorer", model, "--cl100k", cl100k,
                             "--trace", "--quiet", "--threads", "1", *flags], stdin=lines, text=True, ok=False)
            if r.returncode != 0:
                harness.fail(f"pith compress {' '.join(flags)}: {r.stderr.strip()}")
            for i, line in zip(idx, r.stdout.splitlines()):
                ours[i] = json.loads(line)
        if peer.wait() != 0:
            harness.fail("the llmlingua peer failed (its output is above)")
        theirs = json.load(open(peer_out))

        n_words = n_chunked = n_filtered = 0
        for i, (c, a, b) in enumerate(zip(cases, ours, theirs)):
            name = f"case {i} ({os.path.basename(c['model'])}, {len(c['contexts'])} context(s), {c['kwargs']})"
            if "error" in b:
                harness.expect(False, f"{name}: llmlingua failed: {b['error']}")
                continue
            harness.expect(a["compressed_prompt"] == b["prompt"],
                           f"{name}: compressed prompts differ:\n  pith:      {a['compressed_prompt'][:300]!r}\n"
                           f"  llmlingua: {b['prompt'][:300]!r}")
            labels = [int(ch) for ch in a["kept"]]
            if harness.expect(a.get("words", []) == b["words"], f"{name}: words differ ({len(a.get('words', []))} vs "
                              f"{len(b['words'])}); first: {next(((x, y) for x, y in zip(a.get('words', []), b['words']) if x != y), None)}"):
                harness.expect(labels == b["labels"], f"{name}: labels differ at "
                               f"{[j for j, (x, y) in enumerate(zip(labels, b['labels'])) if x != y][:10]}")
            harness.expect((a["origin_tokens"], a["compressed_tokens"]) == (b["origin_tokens"], b["compressed_tokens"]),
                           f"{name}: cl100k counts {a['origin_tokens']}/{a['compressed_tokens']} vs "
                           f"{b['origin_tokens']}/{b['compressed_tokens']}")
            n_words += len(b["words"])
            n_chunked += a["chunks"] > len(c["contexts"])
            n_filtered += len(a["contexts_used"]) < len(c["contexts"])
        harness.check(n_chunked >= 4, f"only {n_chunked} cases needed several chunks")
        harness.check(n_filtered >= 4, f"only {n_filtered} cases had a context dropped by the context filter")
        per_model = {m: sum(c["model"] == m for c in cases) for m in models.values()}
        print(f"{len(cases)} cases ({', '.join(f'{os.path.basename(m)}: {n}' for m, n in per_model.items())}), "
              f"{n_words} labelled words, {n_chunked} chunked, {n_filtered} with contexts dropped")
    if harness.MISMATCHES:
        harness.fail(f"{len(harness.MISMATCHES)} mismatches")
    print("OK: llmlingua2 prompts, words, labels and cl100k counts equal llmlingua 0.2.2's")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2], sys.argv[3])
    else:
        main()
