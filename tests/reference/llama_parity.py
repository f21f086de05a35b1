"""pith's LLaMA-family forward and gradients against transformers (and peft for LoRA), CPU, f32.

For each small random config (LLaMA-3 style with GQA and llama3 rope scaling, tied and untied,
Mistral with a sliding window, Qwen2 with q/k/v biases): pith makes the random weights and saves
them as a Hugging Face folder (llama_tool make); transformers loads that folder. Then, for several
input cases (plain ids; right padding; input embeddings + prefix K/V as past_key_values + LoRA on
q/k/v/o/gate/up/down with nonzero B + selected K/V and hidden states), both compute the logits and
the gradients of loss = sum(logits * W). Everything must agree to 1e-4 relative (max abs diff over
max abs value). Fails loudly with the first mismatch.

usage: llama_parity.py PATH_TO_llama_tool
"""
import os
import tempfile

import harness

torch, _, transformers, peft = harness.require("torch", "safetensors.torch", "transformers", "peft")

TOL = 1e-4
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

CONFIGS = {
    "llama3_gqa_untied": dict(model_type="llama", vocab_size=96, hidden_size=64, intermediate_size=112,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                              max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=500000.0,
                              tie_word_embeddings=False,
                              rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                high_freq_factor=4.0, original_max_position_embeddings=64)),
    "llama_tied_mha": dict(model_type="llama", vocab_size=80, hidden_size=48, intermediate_size=96,
                           num_hidden_layers=2, num_attention_heads=3, num_key_value_heads=3,
                           max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
                           tie_word_embeddings=True),
    "mistral_window": dict(model_type="mistral", vocab_size=72, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                           max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
                           tie_word_embeddings=False, sliding_window=6),
    "qwen2_bias_tied": dict(model_type="qwen2", vocab_size=88, hidden_size=64, intermediate_size=96,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                            tie_word_embeddings=True, use_sliding_window=False),
}


def compare(what, ours, ref):
    return harness.check_close(what, ours, ref.reshape(ours.shape) if ref.dim() == 0 else ref, TOL)


def make_case(cfg, kind, g):
    B, T, V = 2, 7, cfg["vocab_size"]
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"]
    case = {"ids": torch.randint(0, V, (B, T), generator=g)}
    meta = {}
    mask = torch.ones(B, T, dtype=torch.bool)
    if kind in ("padded", "prefix_lora"):
        mask[1, 5:] = False  # right padding in the second row
        case["mask"] = mask.to(torch.uint8)
    if kind == "prefix_lora":
        P = 3
        for l in range(cfg["num_hidden_layers"]):
            case[f"prefix_k.{l}"] = torch.randn(B, kv, P, hd, generator=g)
            case[f"prefix_v.{l}"] = torch.randn(B, kv, P, hd, generator=g)
        case["embeds"] = torch.randn(B, T, cfg["hidden_size"], generator=g) * 0.5
        meta["use_embeds"] = "1"
        case["select"] = torch.tensor([[0, 4], [2, 3]])
        rank, alpha = 4, 8
        meta.update(lora_rank=str(rank), lora_alpha=str(alpha), lora_target="all")
        q_out = cfg["num_attention_heads"] * hd
        outs = dict(q_proj=q_out, k_proj=kv * hd, v_proj=kv * hd, o_proj=cfg["hidden_size"],
                    gate_proj=cfg["intermediate_size"], up_proj=cfg["intermediate_size"], down_proj=cfg["hidden_size"])
        ins = dict(q_proj=cfg["hidden_size"], k_proj=cfg["hidden_size"], v_proj=cfg["hidden_size"], o_proj=q_out,
                   gate_proj=cfg["hidden_size"], up_proj=cfg["hidden_size"], down_proj=cfg["intermediate_size"])
        for l in range(cfg["num_hidden_layers"]):
            for p in PROJ:
                case[f"lora.{l}.{p}.A"] = torch.randn(rank, ins[p], generator=g) * 0.1
                case[f"lora.{l}.{p}.B"] = torch.randn(outs[p], rank, generator=g) * 0.1
    w = torch.randn(B, T, V, generator=g)
    w[~mask] = 0  # padded positions are not compared: their outputs are unused by design
    case["loss_w"] = w
    return case, meta, mask


def reference(model_dir, cfg, case, meta):
    model = harness.load_causal_lm(model_dir, attn_implementation="eager")
    L = cfg["num_hidden_layers"]
    lora = {}
    if "lora_rank" in meta:
        lc = peft.LoraConfig(r=int(meta["lora_rank"]), lora_alpha=float(meta["lora_alpha"]), target_modules=PROJ,
                             lora_dropout=0.0, bias="none")
        model = peft.get_peft_model(model, lc)
        lora = harness.set_lora(model, case, PROJ)
        base = model.base_model.model
    else:
        base = model
    kwargs = {}
    B, T = case["ids"].shape
    mask = case.get("mask", torch.ones(B, T, dtype=torch.uint8)).long()
    leaves = {}
    if "prefix_k.0" in case:
        cache = transformers.DynamicCache()
        P = case["prefix_k.0"].shape[2]
        for l in range(L):
            k = case[f"prefix_k.{l}"].clone().requires_grad_()
            v = case[f"prefix_v.{l}"].clone().requires_grad_()
            leaves[f"prefix_k.{l}"], leaves[f"prefix_v.{l}"] = k, v
            cache.update(k, v, l)
        kwargs["past_key_values"] = cache
        mask = torch.cat([torch.ones(B, P, dtype=torch.long), mask], dim=1)
        kwargs["position_ids"] = (torch.arange(T) + P).expand(B, T)
    if meta.get("use_embeds") == "1":
        emb = case["embeds"].clone().requires_grad_()
        leaves["embeds"] = emb
        kwargs["inputs_embeds"] = emb
    else:
        kwargs["input_ids"] = case["ids"]
    normed = {}
    hook = base.model.norm.register_forward_hook(lambda m, i, o: normed.setdefault("x", o))
    out = model(attention_mask=mask, use_cache=True, **kwargs)
    hook.remove()
    loss = (out.logits * case["loss_w"]).sum()
    loss.backward()
    res = {"logits": out.logits, "loss": loss}
    for name, leaf in leaves.items():
        res[f"grad.{name}"] = leaf.grad
    for (l, p), mod in lora.items():
        res[f"grad.lora.{l}.{p}.A"] = mod.lora_A["default"].weight.grad
        res[f"grad.lora.{l}.{p}.B"] = mod.lora_B["default"].weight.grad
    if "select" in case:
        sel = case["select"]
        P = case["prefix_k.0"].shape[2] if "prefix_k.0" in case else 0
        cache = out.past_key_values
        for l in range(L):
            for kind, full in (("k", cache.layers[l].keys), ("v", cache.layers[l].values)):
                idx = (sel + P)[:, None, :, None].expand(-1, full.shape[1], -1, full.shape[3])
                res[f"out.{kind}.{l}"] = torch.gather(full, 2, idx)
        x = normed["x"]
        res["out.hidden"] = torch.gather(x, 1, sel[:, :, None].expand(-1, -1, x.shape[2]))
    return res


def check_model(tool, name, d, cfg, kinds, g, tmp):
    """Each kind of case on the model folder d: pith (llama_tool forward) against transformers."""
    n = 0
    for kind in kinds:
        case, meta, mask = make_case(cfg, kind, g)
        ours = harness.tool_call(tool, "forward", d, case, tmp, meta)
        ref = reference(d, cfg, case, meta)
        worst = 0.0
        for key, r in ref.items():
            o = ours.get(key)
            harness.check(o is not None, f"{name}/{kind}: pith wrote no '{key}'")
            if key == "logits":  # padded positions are not compared
                o, r = o[mask], r[mask]
            worst = max(worst, compare(f"{name}/{kind}/{key}", o, r))
            n += 1
        print(f"ok {name}/{kind}: {len(ref)} tensors, worst relative difference {worst:.2e}")
    return n


def stories260k(tool, tmp, g):
    """The real stories260K, converted by `pith convert`: logits and gradients against transformers."""
    if not os.environ.get("PITH_BIN") or not harness.asset("models/stories260K.bin", required=False):
        print("skip stories260K: PITH_BIN unset or the assets folder is absent")
        return 0
    d = os.path.join(tmp, "stories260K")
    harness.convert_stories(d)
    return check_model(tool, "stories260K", d, harness.read_json(os.path.join(d, "config.json")),
                       ("plain", "prefix_lora"), g, tmp)


def main():
    tool = harness.tool_arg("llama_tool")
    g = torch.Generator().manual_seed(0)
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, cfg) in enumerate(CONFIGS.items()):
            d = harness.make_tool_model(tool, os.path.join(tmp, name), cfg, 100 + i)
            checked += check_model(tool, name, d, cfg, ("plain", "padded", "prefix_lora"), g, tmp)
        checked += stories260k(tool, tmp, g)
    print(f"llama_parity: {checked} tensors match transformers to {TOL}")


if __name__ == "__main__":
    main()
