"""Shared by the tests that train on a small synthetic world: making the world with `pith data
synth`, a config.json that shapes a random LLaMA for its vocabulary, and reading its QA corpus the
way `pith lm` / `pith eval` build their prompts."""
import os

import harness


def make_world(tmp, docs):
    """TMP/world from `pith data synth`; returns its folder and its tokenizer's vocabulary size."""
    world = os.path.join(tmp, "world")
    harness.pith("data", "synth", "--dir", world, "--docs", str(docs), "--threads", "1", "--quiet")
    return world, len(harness.read_json(os.path.join(world, "tokenizer", "tokenizer.json"))["model"]["vocab"])


def write_shape(path, vocab, hidden, layers, heads, kv_heads):
    """A config.json for `pith lm model_config=`: tied embeddings, MLP twice the width."""
    return harness.write_json(path, {
        "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": True})


class QA:
    """A world model folder's tokenizer and a QA corpus read with h5py: the special ids, the
    "Question: " and " Answer: " pieces of the prompt, and any ragged token column of record i."""

    def __init__(self, model_dir, qa_h5):
        import h5py
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.bos, self.eos = self.tok.token_to_id("<|bos|>"), self.tok.token_to_id("<|eos|>")
        self.qp = self.tok.encode("Question: ", add_special_tokens=False).ids
        self.ap = self.tok.encode(" Answer: ", add_special_tokens=False).ids
        self.f = h5py.File(qa_h5, "r")

    def col(self, name, i):
        off = self.f[name + "_offsets"]
        return self.f[name][off[i]:off[i + 1]].tolist()
