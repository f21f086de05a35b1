"""pith's 500xCompressor and ICAE losses and gradients against the same models written with
transformers + peft, CPU, f32.

The reference below is what a user would write: a peft LoRA model as the encoder reading
[text embeddings; compress embeddings] with the padding masked; for 500x, the K/V of the compress
positions in its cache become the past_key_values of the same model with the adapter disabled;
for ICAE, the final (normed) hidden states of the memory positions, then the AE token, then the
decoder tokens are the decoder's input embeddings. The loss is the mean cross-entropy over the
decoder targets (-100 ignored). Loss and gradients with respect to every LoRA weight, the compress
embeddings and the AE token must agree to 1e-4 relative, for both methods and both position
policies of 500x.

usage: compressor_parity.py PATH_TO_llama_tool
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, DynamicCache
    from transformers.utils import logging as hf_logging
    from peft import LoraConfig, get_peft_model
    hf_logging.disable_progress_bar()
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

TOL = 1e-4
CONFIG = dict(model_type="llama", vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
              rope_theta=10000.0, tie_word_embeddings=False)
TARGETS = ["q_proj", "v_proj"]  # 500xCompressor's choice


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def shift_keys(k, shift, theta, hd):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = torch.cat([shift * inv, shift * inv])
    return k * torch.cos(ang) + rotate_half(k) * torch.sin(ang)


def make_case(g, method, positions, ae):
    B, N, M, k, rank = 2, 6, 5, 3, 4
    D, L = CONFIG["hidden_size"], CONFIG["num_hidden_layers"]
    text_mask = torch.ones(B, N, dtype=torch.uint8)
    text_mask[1, 4:] = 0
    dec_mask = torch.ones(B, M, dtype=torch.uint8)
    dec_mask[0, 4:] = 0
    targets = torch.randint(0, CONFIG["vocab_size"], (B, M), generator=g)
    targets[dec_mask == 0] = -100
    targets[1, 0] = -100  # a prompt position without a target
    case = dict(text_ids=torch.randint(0, CONFIG["vocab_size"], (B, N), generator=g), text_mask=text_mask,
                dec_ids=torch.randint(0, CONFIG["vocab_size"], (B, M), generator=g), dec_mask=dec_mask,
                dec_targets=targets, compress=torch.randn(k, D, generator=g) * 0.5)
    if ae:
        case["ae"] = torch.randn(1, D, generator=g) * 0.5
    hd = D // CONFIG["num_attention_heads"]
    kv = CONFIG["num_key_value_heads"] * hd
    for l in range(L):
        for p, out in (("q_proj", D), ("v_proj", kv)):
            case[f"lora.{l}.{p}.A"] = torch.randn(rank, D, generator=g) * 0.2
            case[f"lora.{l}.{p}.B"] = torch.randn(out, rank, generator=g) * 0.2
    meta = dict(method=method, k=str(k), positions=positions, ae="1" if ae else "0", lora_rank=str(rank),
                lora_alpha="8", lora_target=",".join(TARGETS))
    return case, meta


def reference(model_dir, case, meta):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    for p in model.parameters():
        p.requires_grad_(False)
    model = get_peft_model(model, LoraConfig(r=int(meta["lora_rank"]), lora_alpha=float(meta["lora_alpha"]),
                                             target_modules=TARGETS, lora_dropout=0.0, bias="none"))
    layers = model.base_model.model.model.layers
    mods = {}
    for l in range(len(layers)):
        for p in TARGETS:
            mod = getattr(layers[l].self_attn, p)
            mod.lora_A["default"].weight.data.copy_(case[f"lora.{l}.{p}.A"])
            mod.lora_B["default"].weight.data.copy_(case[f"lora.{l}.{p}.B"])
            mods[(l, p)] = mod
    inner = model.base_model.model  # the LlamaForCausalLM
    embed = inner.model.embed_tokens
    compress = case["compress"].clone().requires_grad_()
    ae = case["ae"].clone().requires_grad_() if "ae" in case else None
    B, N = case["text_ids"].shape
    k = compress.shape[0]

    # Encoder: LoRA on, [text; compress], padding masked.
    enc_in = torch.cat([embed(case["text_ids"]), compress.expand(B, -1, -1)], dim=1)
    enc_mask = torch.cat([case["text_mask"].long(), torch.ones(B, k, dtype=torch.long)], dim=1)
    normed = {}
    hook = inner.model.norm.register_forward_hook(lambda m, i, o: normed.setdefault("x", o))
    enc = model(inputs_embeds=enc_in, attention_mask=enc_mask, use_cache=True)
    hook.remove()

    dec_mask = case["dec_mask"].long()
    with model.disable_adapter():
        if meta["method"] == "500x":
            cache = DynamicCache()
            for l in range(len(layers)):
                kk = enc.past_key_values.layers[l].keys[:, :, N:N + k]
                vv = enc.past_key_values.layers[l].values[:, :, N:N + k]
                if meta["positions"] == "consistent":
                    kk = shift_keys(kk, -N, CONFIG["rope_theta"], kk.shape[-1])
                cache.update(kk, vv, l)
            out = model(input_ids=case["dec_ids"], past_key_values=cache,
                        attention_mask=torch.cat([torch.ones(B, k, dtype=torch.long), dec_mask], dim=1))
            logits = out.logits
        else:
            lead = [normed["x"][:, N:N + k]] + ([ae.expand(B, -1, -1)] if ae is not None else [])
            lead_len = sum(x.shape[1] for x in lead)
            dec_in = torch.cat(lead + [embed(case["dec_ids"])], dim=1)
            out = model(inputs_embeds=dec_in,
                        attention_mask=torch.cat([torch.ones(B, lead_len, dtype=torch.long), dec_mask], dim=1))
            logits = out.logits[:, lead_len:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), case["dec_targets"].reshape(-1), ignore_index=-100)
    loss.backward()
    res = {"loss": loss, "grad.compress": compress.grad}
    if ae is not None:
        res["grad.ae"] = ae.grad
    for (l, p), mod in mods.items():  # no gradient reaches 500x's last-layer q_proj: zeros
        for ab, w in (("A", mod.lora_A["default"].weight), ("B", mod.lora_B["default"].weight)):
            res[f"grad.lora.{l}.{p}.{ab}"] = w.grad if w.grad is not None else torch.zeros_like(w)
    return res


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    tool = sys.argv[1]
    g = torch.Generator().manual_seed(1)
    cases = [("500x", "reference", False), ("500x", "consistent", False), ("icae", "reference", True),
             ("icae", "reference", False)]
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "model")
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(CONFIG, f)
        subprocess.run([tool, "make", d, "5"], check=True)
        for method, positions, ae in cases:
            case, meta = make_case(g, method, positions, ae)
            inp, outp = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
            save_file({k: v.contiguous() for k, v in case.items()}, inp, metadata=meta)
            subprocess.run([tool, "compress", d, inp, outp], check=True)
            ours = load_file(outp)
            ref = reference(d, case, meta)
            worst = 0.0
            for key, r in ref.items():
                if key not in ours:
                    raise SystemExit(f"FAIL {method}/{positions}: pith wrote no '{key}'")
                o, r = ours[key].float(), r.detach().float().reshape(ours[key].shape)
                scale = max(1e-6, r.abs().max().item())
                err = (o - r).abs().max().item() / scale
                if not err <= TOL:
                    raise SystemExit(f"FAIL {method}/{positions}/ae={ae} {key}: relative difference {err:.3g} > {TOL}")
                if key in ("grad.compress", "grad.ae") and r.abs().max().item() == 0:
                    raise SystemExit(f"FAIL {method}/{positions}: reference gradient {key} is all zero")
                worst = max(worst, err)
            print(f"ok {method} positions={positions} ae={ae}: loss {ref['loss'].item():.5f}, {len(ref)} tensors, "
                  f"worst relative difference {worst:.2e}")
    print("compressor_parity: pith matches transformers + peft")


if __name__ == "__main__":
    main()
