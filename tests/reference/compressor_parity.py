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
import os
import tempfile

import harness

torch, _, _, peft = harness.require("torch", "safetensors.torch", "transformers", "peft")

TOL = 1e-4
CONFIG = dict(model_type="llama", vocab_size=64, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
              rope_theta=10000.0, tie_word_embeddings=False)
TARGETS = ["q_proj", "v_proj"]  # 500xCompressor's choice


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
    model = harness.load_causal_lm(model_dir, attn_implementation="eager")
    for p in model.parameters():
        p.requires_grad_(False)
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=int(meta["lora_rank"]), lora_alpha=float(meta["lora_alpha"]), target_modules=TARGETS, lora_dropout=0.0,
        bias="none"))
    mods = harness.set_lora(model, case, TARGETS)
    compress = case["compress"].clone().requires_grad_()
    ae = case["ae"].clone().requires_grad_() if "ae" in case else None
    N, k = case["text_ids"].shape[1], compress.shape[0]

    # Encoder: LoRA on, [text; compress], padding masked; the decoder with the adapter off.
    enc, normed = harness.compressor_encode(model, case["text_ids"], case["text_mask"], compress)
    with model.disable_adapter():
        out = harness.compressor_decode(model, enc, normed, N, k, meta["method"], meta["positions"],
                                        CONFIG["rope_theta"], case["dec_ids"], case["dec_mask"],
                                        case["dec_targets"], ae)
    loss = out["loss"]
    loss.backward()
    res = {"loss": loss, "grad.compress": compress.grad}
    if ae is not None:
        res["grad.ae"] = ae.grad
    for (l, p), mod in mods.items():  # no gradient reaches 500x's last-layer q_proj: zeros
        for ab, w in (("A", mod.lora_A["default"].weight), ("B", mod.lora_B["default"].weight)):
            res[f"grad.lora.{l}.{p}.{ab}"] = w.grad if w.grad is not None else torch.zeros_like(w)
    return res


def main():
    tool = harness.tool_arg("llama_tool")
    g = torch.Generator().manual_seed(1)
    cases = [("500x", "reference", False), ("500x", "consistent", False), ("icae", "reference", True),
             ("icae", "reference", False)]
    with tempfile.TemporaryDirectory() as tmp:
        d = harness.make_tool_model(tool, os.path.join(tmp, "model"), CONFIG, 5)
        for method, positions, ae in cases:
            case, meta = make_case(g, method, positions, ae)
            ours = harness.tool_call(tool, "compress", d, case, tmp, meta)
            ref = reference(d, case, meta)
            worst = 0.0
            for key, r in ref.items():
                harness.check(key in ours, f"{method}/{positions}: pith wrote no '{key}'")
                worst = max(worst, harness.check_close(f"{method}/{positions}/ae={ae} {key}", ours[key],
                                                       r.reshape(ours[key].shape), TOL))
                if key in ("grad.compress", "grad.ae") and r.abs().max().item() == 0:
                    harness.fail(f"{method}/{positions}: reference gradient {key} is all zero")
            print(f"ok {method} positions={positions} ae={ae}: loss {ref['loss'].item():.5f}, {len(ref)} tensors, "
                  f"worst relative difference {worst:.2e}")
    print("compressor_parity: pith matches transformers + peft")


if __name__ == "__main__":
    main()
