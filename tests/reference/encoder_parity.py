"""pith's BERT / XLM-RoBERTa token classifiers against transformers, CPU.

transformers → pith: small random BertForTokenClassification (exact GELU, token types; and one with
the tanh GELU) and XLMRobertaForTokenClassification models, every weight perturbed so that biases
and LayerNorms are not at their init, saved by transformers (safetensors) and loaded by pith
(encoder_tool forward). On a padded batch whose rows differ in length (full, right-padded twice,
left-padded), the logits, the final hidden states and the gradients of loss = sum(logits * W) with
respect to every weight (embeddings, query/key/value, LayerNorms, the classifier, ...) must agree to
1e-4 relative (max abs diff over max abs value), at every position, padded ones included. In bf16
both sides must stay within 5e-2 of each other.

pith → transformers: a random model made and saved by pith (encoder_tool make, f32 and bf16
storage) loads with AutoModelForTokenClassification with no missing, unexpected or mismatched
weights, as the right class with pith's labels, and gives pith's logits to 1e-4.

usage: encoder_parity.py PATH_TO_encoder_tool
"""
import os
import tempfile

import harness

torch, _, transformers = harness.require("torch", "safetensors.torch", "transformers")

TOL = 1e-4
BF16_TOL = 5e-2

CONFIGS = {
    "bert": dict(model_type="bert", vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=80, hidden_act="gelu", max_position_embeddings=32, type_vocab_size=2,
                 layer_norm_eps=1e-12, pad_token_id=0, id2label={0: "drop", 1: "keep"},
                 label2id={"drop": 0, "keep": 1}),
    "bert_gelu_tanh_3labels": dict(model_type="bert", vocab_size=61, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=40, hidden_act="gelu_new",
                                   max_position_embeddings=16, type_vocab_size=2, layer_norm_eps=1e-5,
                                   pad_token_id=3, num_labels=3),
    "xlm-roberta": dict(model_type="xlm-roberta", vocab_size=101, hidden_size=48, num_hidden_layers=2,
                        num_attention_heads=3, intermediate_size=72, hidden_act="gelu",
                        max_position_embeddings=20, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                        bos_token_id=0, eos_token_id=2),
}


def hf_model(name, seed):
    """A transformers token classifier for CONFIGS[name], every weight moved off its init."""
    cfg = dict(CONFIGS[name])
    mt = cfg.pop("model_type")
    conf = transformers.AutoConfig.for_model(mt, **cfg)
    conf._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForTokenClassification.from_config(conf)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def make_case(conf, g, token_types):
    """4 rows of T = 9: full, right-padded to 6 and to 2, left-padded to 5; pads hold pad_token_id
    and no real token does (transformers derives XLM-R's positions from the ids, pith from the mask)."""
    B, T, V, pad = 4, 9, conf.vocab_size, conf.pad_token_id
    real = torch.tensor([[1] * 9, [1] * 6 + [0] * 3, [1] * 2 + [0] * 7, [0] * 4 + [1] * 5], dtype=torch.bool)
    ids = torch.randint(0, V - 1, (B, T), generator=g)
    ids = ids + (ids >= pad).long()  # never the pad id
    ids[~real] = pad
    case = {"ids": ids, "mask": real.to(torch.uint8), "loss_w": torch.randn(B, T, conf.num_labels, generator=g)}
    if token_types:
        case["token_types"] = torch.randint(0, conf.type_vocab_size, (B, T), generator=g)
    return case


def reference(model, case):
    """transformers' logits, last hidden states, loss and every weight's gradient."""
    model.zero_grad()
    out = model(input_ids=case["ids"], attention_mask=case["mask"].long(), token_type_ids=case.get("token_types"),
                output_hidden_states=True)
    loss = (out.logits.float() * case["loss_w"]).sum()
    loss.backward()
    res = {"logits": out.logits, "hidden": out.hidden_states[-1], "loss": loss}
    for n, p in model.named_parameters():
        res[f"grad.{n}"] = p.grad if p.grad is not None else torch.zeros_like(p)
    return res


def compare(ours, ref, tol, what):
    worst, n = 0.0, 0
    # The key bias adds the same q·b to every score of a query, which softmax cancels: its gradient
    # is zero in exact arithmetic and rounding noise on both sides. It must be that, next to the rest.
    scale = max(r.abs().max().item() for k, r in ref.items() if k.startswith("grad."))
    for key, r in ref.items():
        harness.check(key in ours, f"{what}: pith wrote no {key}")
        o = ours[key]
        r = r.reshape(o.shape) if r.dim() == 0 else r
        if key.endswith("attention.self.key.bias"):
            for side, t in (("pith", o), ("transformers", r)):
                harness.check(t.abs().max().item() <= tol * scale,
                              f"{what}: {key}: {side}'s gradient {t.abs().max().item():.3g} is not ~0")
        else:
            worst = max(worst, harness.check_close(f"{what}: {key}", o, r.float(), tol))
        n += 1
    harness.check(len(ours) == len(ref), f"{what}: pith wrote {sorted(set(ours) - set(ref))} beyond the reference")
    return worst, n


def hf_to_pith(tool, tmp):
    for i, name in enumerate(CONFIGS):
        d = os.path.join(tmp, f"hf_{name}")
        model = hf_model(name, 100 + i)
        model.save_pretrained(d)
        harness.check(os.path.exists(os.path.join(d, "model.safetensors")), f"{name}: transformers wrote no safetensors")
        g = torch.Generator().manual_seed(200 + i)
        case = make_case(model.config, g, token_types=CONFIGS[name]["model_type"] == "bert")
        ref = reference(model, case)
        # The weights the brief names, checked by name so that a renamed one cannot slip by.
        pre = "bert" if CONFIGS[name]["model_type"] == "bert" else "roberta"
        for key in (f"{pre}.embeddings.word_embeddings.weight", f"{pre}.embeddings.position_embeddings.weight",
                    f"{pre}.encoder.layer.0.attention.self.query.weight",
                    f"{pre}.encoder.layer.0.attention.output.LayerNorm.weight", "classifier.weight", "classifier.bias"):
            harness.check(f"grad.{key}" in ref and ref[f"grad.{key}"].abs().max() > 0, f"{name}: no gradient for {key}")
        ours = harness.tool_call(tool, "forward", d, case, tmp)
        worst, n = compare(ours, ref, TOL, name)
        print(f"{name}: transformers -> pith: {n} tensors (logits, hidden, loss, {n - 3} gradients) agree, "
              f"worst relative difference {worst:.2e}")

        # bf16 on both sides, from the same f32 files.
        model16 = transformers.AutoModelForTokenClassification.from_pretrained(
            d, dtype=torch.bfloat16, attn_implementation="eager").eval()
        with torch.no_grad():
            ref16 = model16(input_ids=case["ids"], attention_mask=case["mask"].long(),
                            token_type_ids=case.get("token_types")).logits
        ours16 = harness.tool_call(tool, "forward", d, case, tmp, {"dtype": "bf16"})
        d16 = harness.check_close(f"{name}: bf16 logits", ours16["logits"], ref16.float(), BF16_TOL)
        d32 = harness.rel_diff(ours16["logits"], ref["logits"])
        harness.check(d32 > 0, f"{name}: bf16 logits equal the f32 ones: the bf16 path did not run in bf16")
        print(f"{name}: bf16: pith vs transformers {d16:.2e}, pith bf16 vs f32 {d32:.2e}")


def pith_to_hf(tool, tmp):
    for i, (name, storage) in enumerate([("bert", "f32"), ("xlm-roberta", "f32"), ("xlm-roberta", "bf16"),
                                         ("bert_gelu_tanh_3labels", "bf16")]):
        d = os.path.join(tmp, f"pith_{name}_{storage}")
        os.makedirs(d)
        harness.write_json(os.path.join(d, "config.json"), CONFIGS[name])
        harness.run([tool, "make", d, 300 + i] + (["bf16"] if storage == "bf16" else []), text=True)
        model, info = transformers.AutoModelForTokenClassification.from_pretrained(
            d, output_loading_info=True, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            harness.check(not info.get(k), f"{name} ({storage}): transformers reports {k}: {info.get(k)}")
        want = "BertForTokenClassification" if CONFIGS[name]["model_type"] == "bert" else "XLMRobertaForTokenClassification"
        harness.check(type(model).__name__ == want, f"{name}: transformers built {type(model).__name__}, not {want}")
        labels = CONFIGS[name].get("id2label") or {j: f"LABEL_{j}" for j in range(CONFIGS[name].get("num_labels", 2))}
        harness.check(model.config.id2label == labels, f"{name}: id2label {model.config.id2label}, want {labels}")
        harness.check(model.config.hidden_act == ("gelu" if CONFIGS[name]["hidden_act"] == "gelu" else "gelu_pytorch_tanh"),
                      f"{name}: hidden_act {model.config.hidden_act}")
        g = torch.Generator().manual_seed(400 + i)
        case = make_case(model.config, g, token_types=CONFIGS[name]["model_type"] == "bert")
        ref = reference(model, case)
        ours = harness.tool_call(tool, "forward", d, case, tmp)
        err = harness.check_close(f"{name} ({storage}) saved by pith: logits", ours["logits"], ref["logits"], TOL)
        print(f"{name}: pith ({storage} storage) -> AutoModelForTokenClassification: loads clean, logits agree "
              f"to {err:.2e}")


def main():
    tool = harness.tool_arg("encoder_tool")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        hf_to_pith(tool, tmp)
        pith_to_hf(tool, tmp)
    print("encoder_parity: OK")


if __name__ == "__main__":
    main()
