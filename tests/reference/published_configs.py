"""The published LLaMA-3-8B run configs (configs/*_llama3_8b_*.yaml) run as written, on the CPU.

Each pretrain config, then each finetune config from the pretrain run of the same method and k, on
a tiny random LLaMA-3-shaped model (LLaMA-3's tokenizer and vocabulary, 2 layers of width 64; made
by random_model_folder.py), with arXiv abstracts and SQuAD from the assets. Only what a CPU needs
is overridden (device, bf16, a few steps, batch 1); every other key of the YAML must reach the run's
resolved config.yaml unchanged. Then each finetune run is exported.

Run by ctest with PITH_BIN (the pith binary) and PITH_ASSETS.
"""
import glob
import os
import sys
import tempfile

import harness

yaml = harness.require("yaml")

HERE = os.path.dirname(os.path.abspath(__file__))
# What a CPU run changes; the keys the test points at its own files.
CPU = ["device=cpu", "bf16=false", "max_steps=2", "per_device_train_batch_size=1", "eval_batches=1",
       "logging_steps=1", "threads=2"]
REPLACED = {"device", "bf16", "max_steps", "per_device_train_batch_size", "eval_batches", "logging_steps",
            "threads", "model_name_or_path", "train_file", "init_from", "output_dir"}
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128009}


def same(want, got):
    if isinstance(want, list):
        want = ",".join(want)
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return isinstance(got, (int, float)) and float(got) == float(want)
    return want == got


def check_resolved(cfg_path, run_dir):
    with open(cfg_path) as f:
        want = yaml.safe_load(f)
    with open(os.path.join(run_dir, "config.yaml")) as f:
        got = yaml.safe_load(f)
    for key, value in want.items():
        if key not in REPLACED and not same(value, got.get(key)):
            harness.fail(f"{cfg_path}: {key} is {value!r} in the file, {got.get(key)!r} in the run")


def main():
    harness.pith_bin()
    tok = harness.asset(os.path.join("tokenizers", "llama3"))
    arxiv = harness.asset(os.path.join("data", "arxiv", "arxiv-metadata-oai-snapshot.first200.jsonl"))
    squad = harness.asset(os.path.join("data", "squad", "dev-v1.1.json"))
    pretrain = sorted(glob.glob(os.path.join(harness.ROOT, "configs", "*_llama3_8b_pretrain_*.yaml")))
    finetune = sorted(glob.glob(os.path.join(harness.ROOT, "configs", "*_llama3_8b_finetune_*.yaml")))
    if not pretrain or not finetune:
        harness.fail("no published configs found in configs/")
    with tempfile.TemporaryDirectory() as tmp:
        shape = harness.write_json(os.path.join(tmp, "tiny.json"), TINY)
        model = os.path.join(tmp, "model")
        harness.run([sys.executable, os.path.join(HERE, "random_model_folder.py"), "--config", shape, "--tokenizer",
                     tok, "--out", model, "--f32"], timeout=None, text=True)
        docs, qa = os.path.join(tmp, "arxiv.h5"), os.path.join(tmp, "squad.h5")
        harness.pith("data", "ingest", "--format", "arxiv", "--quiet", "--tokenizer", model, "--out", docs, arxiv)
        harness.pith("data", "ingest", "--format", "squad", "--quiet", "--tokenizer", model, "--out", qa, squad)
        runs = {}
        for cfg in pretrain:
            name = os.path.basename(cfg)[:-5]
            out = os.path.join(tmp, name)
            harness.pith("pretrain", "--config", cfg, f"model_name_or_path={model}", f"train_file={docs}",
                f"output_dir={out}", *CPU)
            check_resolved(cfg, out)
            runs[name] = out
        for cfg in finetune:
            name = os.path.basename(cfg)[:-5]
            source = runs.get(name.replace("finetune", "pretrain"))
            if not source:
                harness.fail(f"{cfg}: no pretrain config of the same method and k")
            out = os.path.join(tmp, name)
            stdout = harness.pith("finetune", "--config", cfg, f"model_name_or_path={model}", f"train_file={qa}",
                                  f"init_from={source}", f"output_dir={out}", *CPU).stdout
            if "init_from" not in stdout:
                harness.fail(f"{cfg}: the finetune did not start from {source}")
            check_resolved(cfg, out)
            harness.pith("export", "--run", out, "--out", os.path.join(tmp, name + "_export"))
        print(f"{len(pretrain)} pretrain and {len(finetune)} finetune configs ran as published (on CPU: "
              f"{', '.join(CPU)}), every other key unchanged in the runs; each finetune exported")


if __name__ == "__main__":
    main()
