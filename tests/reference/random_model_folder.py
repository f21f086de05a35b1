"""A Hugging Face model folder with random weights of a config.json's shape, so that pith's drivers
can run at full size with nothing to download (configs/llama3_8b_config.json: LLaMA-3-8B, 16 GB in
bf16). The tokenizer files are copied from --tokenizer. scripts/gpu-check uses it; the bench_*
scripts call random_llama() for their models.

usage: random_model_folder.py --config FILE.json --tokenizer DIR --out DIR [--device cuda] [--f32]
"""
import argparse
import os
import shutil

import harness


def random_llama(config, out, f32=True, device="cpu", tokenizer=None):
    """OUT: a LLaMA with random weights (torch seed 0) of config (a config.json path, or a dict of
    LlamaConfig fields), in f32 or bf16, drawn on device; tokenizer.json and tokenizer_config.json
    copied from the folder tokenizer when given. Returns the model."""
    torch, transformers = harness.require("torch", "transformers")
    cfg = (transformers.LlamaConfig.from_json_file(config) if isinstance(config, str)
           else transformers.LlamaConfig(**config))
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32 if f32 else torch.bfloat16)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if tokenizer and os.path.isfile(os.path.join(tokenizer, name)):
            shutil.copy(os.path.join(tokenizer, name), out)
    return model


def main():
    harness.require("torch", "transformers")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--tokenizer", required=True, help="folder with tokenizer.json (and tokenizer_config.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu", help="where to draw the weights (cuda is much faster at 8B)")
    p.add_argument("--f32", action="store_true", help="f32 weights instead of bf16")
    a = p.parse_args()
    if not os.path.isfile(os.path.join(a.tokenizer, "tokenizer.json")):
        p.error(f"{a.tokenizer} has no tokenizer.json")
    model = random_llama(a.config, a.out, f32=a.f32, device=a.device, tokenizer=a.tokenizer)
    n = sum(t.numel() for t in model.parameters())
    print(f"{a.out}: {n / 1e9:.2f}B parameters, random, {'f32' if a.f32 else 'bf16'}")


if __name__ == "__main__":
    main()
