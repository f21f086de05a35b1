"""Seed corpora for the fuzz harnesses, from the test assets and the project's own files:
make_seeds.py ASSETS PROJECT OUT writes OUT/NAME/* for each harness (small files: libFuzzer's
inputs grow from them). Deterministic; assets that are absent leave their seeds out."""
import json
import os
import struct
import sys


def main():
    assets, project, out = sys.argv[1:4]
    seeds = {}

    def add(name, data):
        seeds.setdefault(name, []).append(data if isinstance(data, bytes) else data.encode())

    def asset(rel):
        path = os.path.join(assets, rel)
        return path if os.path.exists(path) else None

    arxiv = asset("data/arxiv/arxiv_abstracts_4000.jsonl")
    lines = open(arxiv, encoding="utf-8").read().splitlines()[:12] if arxiv else []
    stories_path = asset("data/tinystories/tinystories_val_head.txt")
    stories = open(stories_path, encoding="utf-8").read().split("\n\n")[:8] if stories_path else []
    squad_path = asset("data/squad/dev-v1.1.json")
    squad = json.load(open(squad_path, encoding="utf-8")) if squad_path else None
    cases = os.path.join(assets, "..", "fixtures", "llama3_tokenizer_cases.jsonl")
    texts = [json.loads(l)["text"] for l in open(cases, encoding="utf-8")][:40] if os.path.exists(cases) else []
    texts += stories + [json.loads(l)["abstract"] for l in lines[:4]] + ["", " ", "a", "\u00e9\u00e9\n\t<s> </s>"]

    # json and ingest: records of every format.
    for l in lines[:6]:
        add("json", l)
        add("ingest", bytes([0]) + l.encode() + b"\n")
    add("ingest", bytes([0x10]) + "\n".join(lines[:3]).encode() + b"\n{\"id\": 1}\n")
    for i, s in enumerate(stories[:3]):
        add("ingest", bytes([1 | (i & 1) << 3]) + s.encode() + b"\n\n" + s[:80].encode())
    if squad:
        art = {"title": squad["data"][0]["title"], "paragraphs": squad["data"][0]["paragraphs"][:1]}
        small = {"version": "1.1", "data": [art]}
        add("json", json.dumps(small))
        add("ingest", bytes([2]) + json.dumps(small).encode())
        p = art["paragraphs"][0]
        q = p["qas"][0]
        mrqa = [{"header": {"dataset": "SQuAD", "split": "dev"}},
                {"context": p["context"], "qas": [{"qid": q["id"], "question": q["question"],
                                                   "answers": [a["text"] for a in q["answers"]],
                                                   "detected_answers": [{"text": q["answers"][0]["text"],
                                                                         "char_spans": [[q["answers"][0]["answer_start"],
                                                                                         q["answers"][0]["answer_start"] + len(q["answers"][0]["text"]) - 1]]}]}]}]
        add("ingest", bytes([3]) + "\n".join(json.dumps(x) for x in mrqa).encode() + b"\n")
        add("ingest", bytes([4]) + json.dumps({"id": "q", "context": p["context"], "question": q["question"],
                                               "answer": q["answers"][0]["text"],
                                               "answer_start": q["answers"][0]["answer_start"]}).encode() + b"\n")
    # yaml: the project's configs.
    cfg_dir = os.path.join(project, "configs")
    for name in sorted(os.listdir(cfg_dir)):
        if name.endswith(".yaml"):
            add("yaml", open(os.path.join(cfg_dir, name), "rb").read())
    add("yaml", "a: {b: [1, 'two', \"th\\u00e9\"]}\nc: |\n  text\n  more\nd: >-\n  folded\n  line\n")
    # tokenizers: encode inputs are texts.
    for t in texts:
        add("encode_bpe", t)
        add("encode_sp", t)
        add("encode_encoders", t)
    # tokenizer.json: small ones (a bigger seed slows every run).
    add("tokenizer_json", json.dumps({
        "version": "1.0", "added_tokens": [{"id": 3, "content": "<s>", "special": True}],
        "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}))
    add("tokenizer_json", json.dumps({
        "version": "1.0", "added_tokens": [], "pre_tokenizer": None,
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "},
                                                            "content": "\u2581"}]},
        "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>",
                  "vocab": {"<unk>": 0, "<0x41>": 1, "\u2581": 2, "a": 3, "\u2581a": 4}, "merges": [["\u2581", "a"]]}}))
    # config.json: LLaMA-3-8B's (the project's), a tied tiny one with llama3 rope scaling, a qwen2 one.
    add("hf_config", open(os.path.join(project, "configs", "llama3_8b_config.json"), "rb").read())
    add("hf_config", json.dumps({"model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172,
                                 "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4,
                                 "tie_word_embeddings": True, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 8192}}))
    add("hf_config", json.dumps({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 2, "num_attention_heads": 4, "bos_token_id": [1, 2]}))
    # encoder config.json: BERT (LLMLingua-2's multilingual one's shape) and XLM-R with labels.
    add("encoder_config", json.dumps({"architectures": ["BertForTokenClassification"], "model_type": "bert",
                                      "vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12,
                                      "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
                                      "max_position_embeddings": 512, "type_vocab_size": 2, "pad_token_id": 0,
                                      "layer_norm_eps": 1e-12, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}}))
    add("encoder_config", json.dumps({"model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 1024,
                                      "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                                      "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1,
                                      "bos_token_id": 0, "eos_token_id": 2, "num_labels": 2}))
    # safetensors: a header of a few tensors and metadata, and an empty file.
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
              "c": {"dtype": "F16", "shape": [], "data_offsets": [22, 24]}}
    h = json.dumps(header).encode()
    add("safetensors", struct.pack("<Q", len(h)) + h + bytes(range(24)))
    add("safetensors", struct.pack("<Q", 2) + b"{}")

    for name, items in seeds.items():
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for i, data in enumerate(items):
            with open(os.path.join(out, name, f"seed{i:03d}"), "wb") as f:
                f.write(data)
    print(f"seeds: {', '.join(f'{k} {len(v)}' for k, v in sorted(seeds.items()))}")


if __name__ == "__main__":
    main()
