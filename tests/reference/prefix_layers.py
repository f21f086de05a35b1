"""Which layers of a frozen LLM carry the answer from a context to the question: a diagnostic for
500xCompressor.

500x hands the decoder the compress tokens' K/V at every layer. At layer 0 those K/V are computed
from the compress embeddings alone (the layer-0 input of a compress position is its embedding, which
never sees the text), so whatever the encoder learns, the decoder's layer 0 reads the same prefix for
every text. A frozen LLM that copies answers out of its context at layer 0 therefore cannot answer
from a 500x prefix; one that copies them at later layers can.

For each QA example (context, question, answer; the answer's first token is the target) this
greedily decodes one token after "Question: {q} Answer: " with the context's own per-layer K/V as
the decoder's prefix:
  own      every layer's K/V as computed on the context (the same as the full-context prompt);
  neutral0 layer 0's prefix K and V set to zero (it contributes nothing the text decides), the
           other layers as computed: the best a 500x encoder could do if it reproduced the context's
           K/V exactly at layers 1..L-1.
It also prints, per layer, the mean attention (over heads) that the last prompt position pays to
the answer token in the full-context prompt.

usage: prefix_layers.py MODEL_DIR QA_JSONL [N]   (HF folder with tokenizer.json; pith's QA jsonl)
"""
import json
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.utils import logging as hf_logging

QUESTION, ANSWER = "Question: ", " Answer: "  # models/compressor.h


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    model_dir, data = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    hf_logging.disable_progress_bar()
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    ids = lambda s: tok.encode(s, add_special_tokens=False).ids
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    L = model.config.num_hidden_layers
    right = {"own": 0, "neutral0": 0}
    on_answer = torch.zeros(L)
    examples = [json.loads(line) for line in open(data)][-n:]
    counted = 0
    for ex in examples:
        ctx = ids(ex["context"])
        prompt = ids(QUESTION) + ids(ex["question"]) + ids(ANSWER)
        target = ids(ex["answers"][0]["text"])[0]
        if target not in ctx:
            continue
        counted += 1
        with torch.no_grad():
            full = model(input_ids=torch.tensor([ctx + prompt]), output_attentions=True)
            for l in range(L):
                on_answer[l] += full.attentions[l][0, :, -1, ctx.index(target)].mean()
            cache = model(input_ids=torch.tensor([ctx]), use_cache=True).past_key_values
            for variant in right:
                prefix = DynamicCache()
                for l in range(L):
                    k, v = cache.layers[l].keys.clone(), cache.layers[l].values.clone()
                    if variant == "neutral0" and l == 0:
                        k, v = torch.zeros_like(k), torch.zeros_like(v)
                    prefix.update(k, v, l)
                logits = model(input_ids=torch.tensor([prompt]), past_key_values=prefix).logits
                right[variant] += int(logits[0, -1].argmax().item() == target)
    print(f"{counted} questions from {data} (answer token in its context), model {model_dir}")
    for variant, r in right.items():
        print(f"  answer token right, prefix {variant:9s} {r:5d}  ({100 * r / max(counted, 1):.1f}%)")
    print("  attention of the last prompt position on the answer token, by layer (mean over heads):")
    print("   " + "  ".join(f"L{l} {on_answer[l] / max(counted, 1):.3f}" for l in range(L)))


if __name__ == "__main__":
    main()
