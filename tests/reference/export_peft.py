"""`pith export` against peft: a tiny stories260K run (500x with both position policies, and ICAE)
is exported, loaded with PeftModel.from_pretrained (no missing or unexpected keys, the weights
bit-equal to the file), and the compressor written with transformers + peft from the exported
files (adapter on for the encoder; the exported compress embeddings; adapter off for the decoder,
past_key_values = the compress positions' K/V under the manifest's position policy, or ICAE's
memory states + AE token as input embeddings) gives the per-layer K/V (memory), decoder logits and
loss that pith computes from the same folder through export_load (llama_tool exported) to 1e-4.
The loss from the exported folder equals the loss from the checkpoint itself (llama_tool compress).
Errors: a run folder without checkpoints, an existing --out without --force, one line each.

Run by ctest with PITH_BIN and PITH_ASSETS. usage: export_peft.py PATH_TO_llama_tool
"""
import os
import shutil
import tempfile
import warnings

import harness

torch, safetensors, st, transformers, peft = harness.require(
    "torch", "safetensors", "safetensors.torch", "transformers", "peft")

TOL = 1e-4


def make_batch(g, vocab, k):
    B, N, M = 2, 12, 9
    text_mask = torch.ones(B, N, dtype=torch.uint8)
    text_mask[1, 8:] = 0
    dec_mask = torch.ones(B, M, dtype=torch.uint8)
    dec_mask[0, 6:] = 0
    targets = torch.randint(3, vocab, (B, M), generator=g)
    targets[dec_mask == 0] = -100
    return dict(text_ids=torch.randint(3, vocab, (B, N), generator=g), text_mask=text_mask,
                dec_ids=torch.randint(3, vocab, (B, M), generator=g), dec_mask=dec_mask, dec_targets=targets)


def load_peft(model_dir, exp):
    base = harness.load_causal_lm(model_dir, attn_implementation="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = peft.PeftModel.from_pretrained(base, exp)
    for w in caught:
        msg = str(w.message)
        if "missing" in msg.lower() or "unexpected" in msg.lower():
            harness.fail(f"{exp}: peft warned: {msg}")
    # Every key of the file is a LoRA weight of the model and the other way round, values bit-equal.
    sd = peft.get_peft_model_state_dict(model)
    with safetensors.safe_open(os.path.join(exp, "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
        if keys != set(sd):
            harness.fail(f"{exp}: file keys and peft's differ: only in file {sorted(keys - set(sd))[:3]}, "
                             f"only in peft {sorted(set(sd) - keys)[:3]}")
        for key in keys:
            if not torch.equal(f.get_tensor(key), sd[key]):
                harness.fail(f"{exp}: {key} loaded with other values")
    model.eval()
    return model, len(keys)


def reference(model, manifest, comp, batch, theta):
    compress = comp["compress"]
    N, k = batch["text_ids"].shape[1], compress.shape[0]
    with torch.no_grad():
        enc, normed = harness.compressor_encode(model, batch["text_ids"], batch["text_mask"], compress,
                                                output_hidden_states=True)
        with model.disable_adapter():  # the same encoder without the adapter, to show that it matters
            plain, _ = harness.compressor_encode(model, batch["text_ids"], batch["text_mask"], compress,
                                                 output_hidden_states=True)
    if manifest["method"] == "500x":
        with_a, without = enc.past_key_values.layers[0].values, plain.past_key_values.layers[0].values
        adapter_effect = harness.rel_diff(without[:, :, N:N + k], with_a[:, :, N:N + k])
    else:
        with_a, without = enc.hidden_states[-1], plain.hidden_states[-1]  # after the final norm
        adapter_effect = harness.rel_diff(without[:, N:N + k], with_a[:, N:N + k])
    with torch.no_grad(), model.disable_adapter():
        res = harness.compressor_decode(model, enc, normed, N, k, manifest["method"], manifest["position_policy"],
                                        theta, batch["dec_ids"], batch["dec_mask"], batch["dec_targets"],
                                        comp["ae"] if manifest["ae_token"] else None)
    return res, adapter_effect


def main():
    tool = harness.tool_arg("llama_tool")
    harness.pith_bin()
    harness.stories_assets()
    g = torch.Generator().manual_seed(3)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, corpus = harness.stories_run_inputs(tmp)
        common = [f"model_name_or_path={model_dir}", f"train_file={corpus}", "num_compress_tokens=3", "cutoff_len=32",
                  "per_device_train_batch_size=4", "lora_rank=4", "lora_alpha=8", "lora_dropout=0.0",
                  "lora_target=q_proj,v_proj", "learning_rate=3e-3", "warmup_steps=1", "logging_steps=1",
                  "eval_batches=1", "threads=1", "max_steps=3"]
        cfg = harness.read_json(os.path.join(model_dir, "config.json"))
        theta, vocab = cfg.get("rope_theta", 10000.0), cfg["vocab_size"]
        cases = [("500x", "consistent"), ("500x", "reference"), ("icae", "reference")]
        for method, policy in cases:
            run_dir, exp = os.path.join(tmp, f"run_{method}_{policy}"), os.path.join(tmp, f"exp_{method}_{policy}")
            harness.pith("pretrain", *common, f"method={method}", f"position_policy={policy}", f"output_dir={run_dir}")
            harness.pith("export", "--run", run_dir, "--out", exp)
            manifest = harness.read_json(os.path.join(exp, "manifest.json"))
            acfg = harness.read_json(os.path.join(exp, "adapter_config.json"))
            want = dict(peft_type="LORA", task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, bias="none",
                        target_modules=["q_proj", "v_proj"], base_model_name_or_path=os.path.realpath(model_dir))
            for key, v in want.items():
                if acfg.get(key) != v:
                    harness.fail(f"{exp}: adapter_config.json {key} = {acfg.get(key)!r}, want {v!r}")
            if (manifest["format"], manifest["format_version"], manifest["method"], manifest["k"],
                    manifest["position_policy"], manifest["source"]["step"]) != \
                    ("pith-compressor-export", 1, method, 3, policy, 3):
                harness.fail(f"{exp}: manifest {manifest}")
            if os.path.exists(exp + ".partial"):
                harness.fail(f"{exp}.partial left behind")

            model, n_keys = load_peft(model_dir, exp)
            comp = st.load_file(os.path.join(exp, "compress.safetensors"))
            if comp["compress"].shape != (3, cfg["hidden_size"]) or (method == "icae") != ("ae" in comp):
                harness.fail(f"{exp}: compress.safetensors holds {({k: v.shape for k, v in comp.items()})}")
            batch = make_batch(g, vocab, 3)
            ours = harness.tool_call(tool, "exported", model_dir, batch, tmp, None, exp)
            ref, effect = reference(model, manifest, comp, batch, theta)
            if not effect > 100 * TOL:
                harness.fail(f"{method}/{policy}: the trained adapter changes the encoder by only {effect:.3g}: "
                             "the comparison would not notice a dropped adapter")
            worst = 0.0
            for key, r in ref.items():
                if key not in ours:
                    harness.fail(f"{method}/{policy}: pith wrote no '{key}'")
                if key == "logits":  # positions whose query is a real token
                    m = batch["dec_mask"].bool()
                    worst = max(worst, harness.check_close(f"{method}/{policy} logits", ours[key][m], r[m], TOL))
                else:
                    worst = max(worst, harness.check_close(f"{method}/{policy} {key}", ours[key],
                                                           r.reshape(ours[key].shape), TOL))

            # Round trip: the loss from the checkpoint (its own tensor names) equals the exported one.
            ck = manifest["source"]["checkpoint"]
            params = st.load_file(os.path.join(ck, "params.safetensors"))
            meta = dict(method=method, k="3", positions=policy, ae="1" if manifest["ae_token"] else "0",
                        lora_rank="4", lora_alpha="8", lora_target="q_proj,v_proj")
            a = harness.tool_call(tool, "compress", model_dir, {**batch, **params}, tmp, meta)["loss"].item()
            b = ours["loss"].item()
            if a != b:
                harness.fail(f"{method}/{policy}: loss {b!r} from the export, {a!r} from the checkpoint")
            print(f"ok {method} positions={policy}: peft loaded {n_keys} tensors; K/V, logits, loss "
                  f"(ref {ref['loss'].item():.5f}) within {worst:.2e} (adapter effect {effect:.2e}); checkpoint loss identical")

        # --force replaces; a checkpoint folder can be named directly.
        exp = os.path.join(tmp, "exp_500x_consistent")
        p = harness.pith("export", "--run", os.path.join(tmp, "run_500x_consistent"), "--out", exp, ok=False)
        want = "already exists (--force replaces it)"
        if p.returncode == 0 or want not in p.stderr or len(p.stderr.strip().splitlines()) != 1:
            harness.fail(f"existing --out: exit {p.returncode}, stderr {p.stderr!r}")
        ck_dir = os.path.join(tmp, "run_icae_reference", "checkpoints", "step-00000003")
        harness.pith("export", "--run", ck_dir, "--out", exp, "--force")
        harness.check(harness.read_json(os.path.join(exp, "manifest.json"))["method"] == "icae",
                      "--force did not replace the export")
        empty = os.path.join(tmp, "empty_run")
        os.makedirs(empty)
        p = harness.pith("export", "--run", empty, "--out", os.path.join(tmp, "x"), ok=False)
        if p.returncode == 0 or "no complete checkpoint" not in p.stderr or len(p.stderr.strip().splitlines()) != 1:
            harness.fail(f"run without checkpoints: exit {p.returncode}, stderr {p.stderr!r}")
        if os.path.exists(os.path.join(tmp, "x")) or os.path.exists(os.path.join(tmp, "x.partial")):
            harness.fail("a failed export left a folder behind")
        print("errors: existing --out and a run without checkpoints rejected in one line; --force replaces")

        # export_load refuses an adapter with a tensor it has no slot for, or one missing.
        src = os.path.join(tmp, "exp_500x_reference")
        for label, edit, want in [
            ("extra", lambda d: d.update({"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight":
                                          torch.zeros(4, cfg["hidden_size"])}), "unexpected tensor"),
            ("missing", lambda d: d.pop("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"), "missing"),
        ]:
            bad = os.path.join(tmp, f"bad_{label}")
            shutil.copytree(src, bad)
            path = os.path.join(bad, "adapter_model.safetensors")
            d = st.load_file(path)
            edit(d)
            st.save_file(d, path, metadata={"format": "pt"})
            p = harness.run([tool, "exported", model_dir, bad, os.path.join(tmp, "in.safetensors"),
                             os.path.join(tmp, "out.safetensors")], ok=False, text=True)
            if p.returncode == 0 or want not in p.stderr:
                harness.fail(f"export_load of an adapter with a {label} tensor: exit {p.returncode}, "
                                 f"stderr {p.stderr!r}")
        print("export_load: an adapter with an extra or a missing tensor is refused")
    print("export_peft: PEFT loads pith's adapter and the exported compressor matches pith")


if __name__ == "__main__":
    main()
