"""Shared by the tests that train on a small synthetic world: running pith, making the world with
`pith data synth`, and a config.json that shapes a random LLaMA for its vocabulary."""
import json
import os
import subprocess


def run(pith, *args, ok=True):
    p = subprocess.run([pith, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"FAIL: pith {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def make_world(pith, tmp, docs):
    """TMP/world from `pith data synth`; returns its folder and its tokenizer's vocabulary size."""
    world = os.path.join(tmp, "world")
    run(pith, "data", "synth", "--dir", world, "--docs", str(docs), "--threads", "1", "--quiet")
    with open(os.path.join(world, "tokenizer", "tokenizer.json")) as f:
        return world, len(json.load(f)["model"]["vocab"])


def write_shape(path, vocab, hidden, layers, heads, kv_heads):
    """A config.json for `pith lm model_config=`: tied embeddings, MLP twice the width."""
    with open(path, "w") as f:
        json.dump({"model_type": "llama", "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 2 * hidden,
                   "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                   "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}, f)
    return path
