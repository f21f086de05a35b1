"""`pith export` of scorers: a short `pith distill` kl run (stories260K converted by `pith convert` is
the target, a random tiny LLaMA with its tokenizer the scorer, as in distill_align.py) is exported,
and the folder

- loads with transformers' AutoModelForCausalLM with no missing or unexpected weight, and with
  AutoTokenizer, whose ids equal pith's for a sentence;
- gives pith's logits (llama_tool forward on RUN/model) to 1e-4;
- carries a manifest with the kind, the target's path and the sha256 of its weights (hashlib), the
  method, the step-0 and final val_kl / val_spearman of metrics.jsonl, the pith version and the command;

a token classifier (a random BERT saved by pith through encoder_tool, with a small WordPiece vocab,
placed as RUN/model of a run folder whose config.yaml says method: classifier) exports as
kind token-classifier and loads with AutoModelForTokenClassification, logits equal to pith's
(encoder_tool forward); and bad inputs fail with one line naming what is wrong, leaving nothing
behind: DIR exists (and --force replaces it), no RUN/model, a model_type that disagrees with the
method, a model_type of neither kind.

usage: export_scorer.py PATH_TO_llama_tool PATH_TO_encoder_tool (ctest passes both), with PITH_BIN
and PITH_ASSETS.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

import harness

run = harness.pith


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def random_scorer(out, tokenizer_dir):
    torch, transformers = harness.require("torch", "transformers")
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                   tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, name), out)


def refused(args, wants, leftover=None):
    p = run("export", *args, ok=False)
    err = p.stderr.strip()
    harness.check(p.returncode == 1 and len(err.splitlines()) == 1 and all(w in err for w in wants),
                  f"export {args}: exit {p.returncode}, stderr {err!r} lacks {wants}")
    if leftover:
        harness.check(not os.path.exists(leftover) and not os.path.exists(leftover + ".partial"),
                      f"export {args}: left {leftover} behind")
    return err


def check_causal(llama_tool, tmp):
    torch, transformers = harness.require("torch", "transformers")
    target, corpus = harness.stories_run_inputs(tmp)
    scorer = os.path.join(tmp, "scorer")
    random_scorer(scorer, target)
    run_dir = os.path.join(tmp, "kl_run")
    run("distill", f"model_name_or_path={scorer}", f"target_model_name_or_path={target}", f"train_file={corpus}",
        "method=kl", "max_steps=4", "cutoff_len=32", "per_device_train_batch_size=4", "learning_rate=3e-3",
        "warmup_steps=1", "logging_steps=1", "eval_batches=1", "align_docs=4", "threads=1", "temperature=2",
        f"output_dir={run_dir}")
    out = os.path.join(tmp, "export_kl")
    p = run("export", "--run", run_dir, "--out", out)
    print(p.stdout.strip())
    m = harness.read_json(os.path.join(out, "manifest.json"))

    # The manifest against what the run and the files say.
    recs = [r for r in metrics(run_dir) if "val_kl" in r]
    first, last = recs[0], recs[-1]
    harness.check(first["step"] == 0 and last["step"] == 4, f"metrics.jsonl: val_kl at steps {[r['step'] for r in recs]}")
    want = {
        ("format",): "pith-scorer-export", ("format_version",): 1, ("kind",): "causal-lm", ("model_type",): "llama",
        ("alignment", "method"): "kl", ("alignment", "finetuning_type"): "full", ("alignment", "temperature"): 2,
        ("target", "path"): os.path.realpath(target), ("target", "weights_file"): "model.safetensors",
        ("target", "weights_sha256"): sha256(os.path.join(target, "model.safetensors")),
        ("metrics", "initial", "step"): 0, ("metrics", "initial", "val_kl"): first["val_kl"],
        ("metrics", "initial", "val_spearman"): first["val_spearman"], ("metrics", "final", "step"): 4,
        ("metrics", "final", "val_kl"): last["val_kl"], ("metrics", "final", "val_spearman"): last["val_spearman"],
        ("weights_sha256",): sha256(os.path.join(run_dir, "model", "model.safetensors")),
        ("source", "run"): os.path.realpath(run_dir), ("source", "config", "method"): "kl",
        ("source", "config_sha256",): sha256(os.path.join(run_dir, "config.yaml")),
        ("pith_version",): "dev",
    }
    for path, value in want.items():
        got = m
        for k in path:
            got = got.get(k) if isinstance(got, dict) else None
        harness.check(got == value, f"manifest {'.'.join(path)}: {got!r}, want {value!r}")
    harness.check("final" in m["metrics"] and "val_loss" in m["metrics"]["final"], f"manifest metrics: {m['metrics']}")
    harness.check(m["command"].startswith("pith export --run ") and out in m["command"], f"command: {m['command']!r}")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        harness.check(m["files"].get(name) == os.path.getsize(os.path.join(out, name)),
                      f"manifest files[{name}]: {m['files'].get(name)}")
        harness.check(sha256(os.path.join(out, name)) == sha256(os.path.join(run_dir, "model", name)),
                      f"{name} differs from RUN/model's")
    print(f"manifest: causal-lm, target sha256 {m['target']['weights_sha256'][:12]}..., val_kl "
          f"{first['val_kl']:.4f} -> {last['val_kl']:.4f}, command recorded")

    # transformers loads it unchanged, and computes pith's logits.
    model, info = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        harness.check(not info.get(k), f"AutoModelForCausalLM: {k}: {info.get(k)}")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "Once upon a time, there was a little dog named Max."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    ours = json.loads(run("tokenize", "--tokenizer", out, "--threads", 1, stdin=text + "\n").stdout)
    harness.check(ids == ours, f"AutoTokenizer ids {ids} vs pith tokenize {ours}")
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.tensor([[1] + ids]), torch.randint(3, 512, (1, len(ids) + 1), generator=g)])
    with torch.no_grad():
        ref = model.eval()(x).logits
    res = harness.tool_call(llama_tool, "forward", os.path.join(run_dir, "model"),
                            {"ids": x, "loss_w": torch.zeros(ref.shape)}, tmp)
    diff = (res["logits"] - ref).abs().max().item()
    harness.check(diff <= 1e-4, f"logits: pith (RUN/model) vs transformers (export): max |diff| {diff:.3g} > 1e-4")
    print(f"AutoModelForCausalLM + AutoTokenizer load the export; logits equal pith's to {diff:.2e} (max abs)")

    # Refusals, one line each, nothing left behind.
    refused(["--run", run_dir, "--out", out], [out, "already exists", "--force"])
    p = run("export", "--run", run_dir, "--out", out, "--force")
    harness.check(harness.read_json(os.path.join(out, "manifest.json"))["kind"] == "causal-lm" and
                  not [f for f in os.listdir(tmp) if f.startswith("export_kl.")], "--force: replaced export")
    unfinished = os.path.join(tmp, "unfinished")
    os.makedirs(unfinished)
    shutil.copy(os.path.join(run_dir, "config.yaml"), unfinished)
    bad_out = os.path.join(tmp, "bad_out")
    refused(["--run", unfinished, "--out", bad_out], [os.path.join(unfinished, "model"), "not finished"], bad_out)
    wrong = os.path.join(tmp, "wrong_kind")
    shutil.copytree(run_dir, wrong, ignore=shutil.ignore_patterns("checkpoints"))
    cfg = harness.read_json(os.path.join(wrong, "model", "config.json"))
    harness.write_json(os.path.join(wrong, "model", "config.json"), dict(cfg, model_type="gpt2"))
    refused(["--run", wrong, "--out", bad_out], [os.path.join(wrong, "model", "config.json"), "gpt2",
                                                 "neither a causal LM"], bad_out)
    with open(os.path.join(wrong, "config.yaml")) as f:
        text = f.read().replace("method: kl", "method: classifier")
    with open(os.path.join(wrong, "config.yaml"), "w") as f:
        f.write(text)
    harness.write_json(os.path.join(wrong, "model", "config.json"), cfg)
    refused(["--run", wrong, "--out", bad_out], ["model_type 'llama' is a causal-lm", "method is classifier"], bad_out)
    os.remove(os.path.join(wrong, "model", "tokenizer.json"))
    os.remove(os.path.join(wrong, "model", "tokenizer_config.json"))
    with open(os.path.join(wrong, "config.yaml"), "w") as f:
        f.write(text.replace("method: classifier", "method: kl"))
    refused(["--run", wrong, "--out", bad_out], ["no tokenizer file", os.path.join(wrong, "model")], bad_out)
    print("bad inputs refused with one line, no folder left; --force replaces")
    return target


BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
            id2label={0: "drop", 1: "keep"}, label2id={"drop": 0, "keep": 1})


def check_classifier(encoder_tool, target, tmp):
    torch, transformers = harness.require("torch", "transformers")
    run_dir = os.path.join(tmp, "cls_run")
    model_dir = os.path.join(run_dir, "model")
    os.makedirs(model_dir)
    words = ["the", "a", "model", "compress", "prompt", "token", "keep", "drop", "##s", "##ed", ".", ","]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    with open(os.path.join(model_dir, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    harness.write_json(os.path.join(model_dir, "tokenizer_config.json"),
                       {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64})
    harness.write_json(os.path.join(model_dir, "config.json"), dict(BERT, vocab_size=len(vocab)))
    harness.run([encoder_tool, "make", model_dir, 7], text=True)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(f"method: classifier\nmodel_name_or_path: {model_dir}\ntarget_model_name_or_path: {target}\n")
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:  # what a classifier run might log
        f.write('{"step": 0, "val_loss": 0.7}\n{"step": 2, "loss": 0.6}\n{"step": 2, "val_loss": 0.5, "val_f1": 0.6}\n')
    # LLMLingua-2 picks its word rules by the folder's name (and pads to 512 positions: BERT above).
    out = os.path.join(tmp, "bert-base-multilingual-cased-export")
    print(run("export", "--run", run_dir, "--out", out).stdout.strip())
    m = harness.read_json(os.path.join(out, "manifest.json"))
    harness.check(m["kind"] == "token-classifier" and m["model_type"] == "bert" and
                  m["alignment"]["method"] == "classifier", f"classifier manifest: {m['kind']}, {m['model_type']}")
    harness.check(m["metrics"] == {"initial": {"step": 0, "val_loss": 0.7},
                                   "final": {"step": 2, "val_loss": 0.5, "val_f1": 0.6}}, f"metrics {m['metrics']}")
    harness.check(m["target"]["weights_sha256"] == sha256(os.path.join(target, "model.safetensors")), "target sha256")
    model, info = transformers.AutoModelForTokenClassification.from_pretrained(out, dtype=torch.float32,
                                                                               output_loading_info=True)
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        harness.check(not info.get(k), f"AutoModelForTokenClassification: {k}: {info.get(k)}")
    harness.check(type(model).__name__ == "BertForTokenClassification" and model.config.id2label == {0: "drop", 1: "keep"},
                  f"{type(model).__name__}, {model.config.id2label}")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    enc = tok("The model compressed a prompt.", return_tensors="pt")
    harness.check(tok.unk_token_id not in enc["input_ids"][0].tolist(), f"tokenizer: {enc['input_ids']}")
    with torch.no_grad():
        ref = model.eval()(**enc).logits
    res = harness.tool_call(encoder_tool, "forward", out, {"ids": enc["input_ids"], "token_types": enc["token_type_ids"],
                                                           "loss_w": torch.zeros(ref.shape)}, tmp)
    diff = (res["logits"] - ref).abs().max().item()
    harness.check(diff <= 1e-4, f"classifier logits: pith vs transformers: max |diff| {diff:.3g}")
    print(f"token classifier: AutoModelForTokenClassification + AutoTokenizer load the export; logits equal pith's "
          f"to {diff:.2e}")
    return out


PEER_SCRIPT = r"""
import json, sys
from llmlingua import PromptCompressor
folder, kind, text = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "causal-lm":
    pc = PromptCompressor(model_name=folder, device_map="cpu")
    r = pc.compress_prompt([text], rate=0.5)
else:
    pc = PromptCompressor(model_name=folder, device_map="cpu", use_llmlingua2=True)
    r = pc.compress_prompt([text], rate=0.5, use_context_level_filter=False)
print(json.dumps({"origin_tokens": r["origin_tokens"], "compressed_tokens": r["compressed_tokens"],
                  "model": type(pc.model).__name__}))
"""


def check_llmlingua(folders, tmp):
    """llmlingua 0.2.2 (in .venv-peers, transformers 4.x) builds a PromptCompressor on each export and
    compresses a text with it; skipped, with the reason printed, when that venv is absent."""
    peer_python = os.path.join(harness.ROOT, ".venv-peers", "bin", "python")
    if not os.path.exists(peer_python):
        print("llmlingua: not checked (.venv-peers is absent; scripts/setup-peers makes it)")
        return
    env = dict(os.environ, TIKTOKEN_CACHE_DIR=os.path.join(harness.ROOT, ".venv-peers", "tiktoken-cache"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    text = ("Once upon a time, there was a little girl named Lily. She liked to play outside in the sun. "
            "One day she saw a big dog in the park and the dog wanted to play with her. ") * 4
    for folder, kind, model in folders:
        p = harness.run([peer_python, "-c", PEER_SCRIPT, folder, kind, text], text=True, env=env)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        harness.check(r["model"] == model and 0 < r["compressed_tokens"] < r["origin_tokens"],
                      f"llmlingua on {folder}: {r}")
        print(f"llmlingua PromptCompressor on the {kind} export ({r['model']}): {r['origin_tokens']} -> "
              f"{r['compressed_tokens']} tokens")


def main():
    if len(sys.argv) < 3:
        harness.skip("usage: export_scorer.py PATH_TO_llama_tool PATH_TO_encoder_tool")
    llama_tool, encoder_tool = sys.argv[1], sys.argv[2]
    for t in (llama_tool, encoder_tool):
        if not os.access(t, os.X_OK):
            harness.skip(f"{t} is not built")
    harness.pith_bin()
    harness.stories_assets()
    torch = harness.require("torch")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        target = check_causal(llama_tool, tmp)
        cls = check_classifier(encoder_tool, target, tmp)
        check_llmlingua([(os.path.join(tmp, "export_kl"), "causal-lm", "LlamaForCausalLM"),
                         (cls, "token-classifier", "BertForTokenClassification")], tmp)
    print("export_scorer: OK")


if __name__ == "__main__":
    main()
