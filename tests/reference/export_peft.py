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
import json
import os
import subprocess
import sys
import tempfile
import warnings

try:
    import torch
    import torch.nn.functional as F
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, DynamicCache
    from transformers.utils import logging as hf_logging
    from peft import PeftModel, get_peft_model_state_dict
    hf_logging.disable_progress_bar()
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

from compressor_parity import shift_keys  # the reference's key rotation (consistent positions)

PITH = os.environ.get("PITH_BIN")
ASSETS = os.environ.get("PITH_ASSETS", "../shared/assets")
TOL = 1e-4


def run(*args, ok=True):
    p = subprocess.run([PITH, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"FAIL: pith {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def rel(a, b):
    return (a - b).abs().max().item() / max(1e-6, b.abs().max().item())


def check_close(what, ours, ref):
    ours, ref = ours.float(), ref.detach().float().reshape(ours.shape)
    err = rel(ours, ref)
    if not err <= TOL:
        raise SystemExit(f"FAIL {what}: relative difference {err:.3g} > {TOL}")
    return err


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
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, exp)
    for w in caught:
        msg = str(w.message)
        if "missing" in msg.lower() or "unexpected" in msg.lower():
            raise SystemExit(f"FAIL {exp}: peft warned: {msg}")
    # Every key of the file is a LoRA weight of the model and the other way round, values bit-equal.
    sd = get_peft_model_state_dict(model)
    with safe_open(os.path.join(exp, "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
        if keys != set(sd):
            raise SystemExit(f"FAIL {exp}: file keys and peft's differ: only in file {sorted(keys - set(sd))[:3]}, "
                             f"only in peft {sorted(set(sd) - keys)[:3]}")
        for key in keys:
            if not torch.equal(f.get_tensor(key), sd[key]):
                raise SystemExit(f"FAIL {exp}: {key} loaded with other values")
    model.eval()
    return model, len(keys)


def reference(model, manifest, comp, batch, theta):
    inner = model.base_model.model
    embed = inner.model.embed_tokens
    compress = comp["compress"]
    B, N = batch["text_ids"].shape
    k = compress.shape[0]
    L = len(inner.model.layers)
    enc_in = torch.cat([embed(batch["text_ids"]), compress.expand(B, -1, -1)], dim=1)
    enc_mask = torch.cat([batch["text_mask"].long(), torch.ones(B, k, dtype=torch.long)], dim=1)
    normed = {}
    # (a forward hook that returns a value replaces the output: keep the first, return None)
    hook = inner.model.norm.register_forward_hook(lambda m, i, o: [normed.setdefault("x", o), None][1])
    with torch.no_grad():
        enc = model(inputs_embeds=enc_in, attention_mask=enc_mask, use_cache=True, output_hidden_states=True)
        with model.disable_adapter():  # the same encoder without the adapter, to show that it matters
            plain = model(inputs_embeds=enc_in, attention_mask=enc_mask, use_cache=True, output_hidden_states=True)
    hook.remove()
    res = {}
    if manifest["method"] == "500x":
        with_a, without = enc.past_key_values.layers[0].values, plain.past_key_values.layers[0].values
    else:
        with_a, without = enc.hidden_states[-1], plain.hidden_states[-1]  # after the final norm
    adapter_effect = rel(without[:, :, N:N + k] if manifest["method"] == "500x" else without[:, N:N + k],
                         with_a[:, :, N:N + k] if manifest["method"] == "500x" else with_a[:, N:N + k])
    dec_mask = batch["dec_mask"].long()
    with torch.no_grad(), model.disable_adapter():
        if manifest["method"] == "500x":
            cache = DynamicCache()
            for l in range(L):
                kk = enc.past_key_values.layers[l].keys[:, :, N:N + k]
                vv = enc.past_key_values.layers[l].values[:, :, N:N + k]
                if manifest["position_policy"] == "consistent":
                    kk = shift_keys(kk, -N, theta, kk.shape[-1])
                res[f"k.{l}"], res[f"v.{l}"] = kk, vv
                cache.update(kk, vv, l)
            logits = model(input_ids=batch["dec_ids"], past_key_values=cache,
                           attention_mask=torch.cat([torch.ones(B, k, dtype=torch.long), dec_mask], dim=1)).logits
        else:
            res["memory"] = normed["x"][:, N:N + k]
            lead = [res["memory"]] + ([comp["ae"].expand(B, -1, -1)] if manifest["ae_token"] else [])
            lead_len = sum(x.shape[1] for x in lead)
            dec_in = torch.cat(lead + [embed(batch["dec_ids"])], dim=1)
            logits = model(inputs_embeds=dec_in, attention_mask=torch.cat(
                [torch.ones(B, lead_len, dtype=torch.long), dec_mask], dim=1)).logits[:, lead_len:]
    res["logits"] = logits
    res["loss"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["dec_targets"].reshape(-1),
                                  ignore_index=-100)
    return res, adapter_effect


def main():
    ckpt = os.path.join(ASSETS, "models/stories260K.bin")
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    tool = sys.argv[1]
    if not PITH or not os.path.exists(ckpt):
        print("SKIP: PITH_BIN unset or assets absent")
        sys.exit(77)
    g = torch.Generator().manual_seed(3)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, corpus = os.path.join(tmp, "stories260K"), os.path.join(tmp, "stories.h5")
        run("convert", "--checkpoint", ckpt, "--tokenizer", os.path.join(ASSETS, "models/tok512.bin"), "--out", model_dir)
        run("data", "ingest", "--format", "text", "--text-mode", "blocks", "--quiet", "--tokenizer", model_dir,
            "--out", corpus, os.path.join(ASSETS, "data/tinystories/tinystories_val_head.txt"))
        common = [f"model_name_or_path={model_dir}", f"train_file={corpus}", "num_compress_tokens=3", "cutoff_len=32",
                  "per_device_train_batch_size=4", "lora_rank=4", "lora_alpha=8", "lora_dropout=0.0",
                  "lora_target=q_proj,v_proj", "learning_rate=3e-3", "warmup_steps=1", "logging_steps=1",
                  "eval_batches=1", "threads=1", "max_steps=3"]
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        theta, vocab = cfg.get("rope_theta", 10000.0), cfg["vocab_size"]
        cases = [("500x", "consistent"), ("500x", "reference"), ("icae", "reference")]
        for method, policy in cases:
            run_dir, exp = os.path.join(tmp, f"run_{method}_{policy}"), os.path.join(tmp, f"exp_{method}_{policy}")
            run("pretrain", *common, f"method={method}", f"position_policy={policy}", f"output_dir={run_dir}")
            run("export", "--run", run_dir, "--out", exp)
            with open(os.path.join(exp, "manifest.json")) as f:
                manifest = json.load(f)
            with open(os.path.join(exp, "adapter_config.json")) as f:
                acfg = json.load(f)
            want = dict(peft_type="LORA", task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, bias="none",
                        target_modules=["q_proj", "v_proj"], base_model_name_or_path=os.path.realpath(model_dir))
            for key, v in want.items():
                if acfg.get(key) != v:
                    raise SystemExit(f"FAIL {exp}: adapter_config.json {key} = {acfg.get(key)!r}, want {v!r}")
            if (manifest["format"], manifest["format_version"], manifest["method"], manifest["k"],
                    manifest["position_policy"], manifest["source"]["step"]) != \
                    ("pith-compressor-export", 1, method, 3, policy, 3):
                raise SystemExit(f"FAIL {exp}: manifest {manifest}")
            if os.path.exists(exp + ".partial"):
                raise SystemExit(f"FAIL: {exp}.partial left behind")

            model, n_keys = load_peft(model_dir, exp)
            comp = load_file(os.path.join(exp, "compress.safetensors"))
            if comp["compress"].shape != (3, cfg["hidden_size"]) or (method == "icae") != ("ae" in comp):
                raise SystemExit(f"FAIL {exp}: compress.safetensors holds {({k: v.shape for k, v in comp.items()})}")
            batch = make_batch(g, vocab, 3)
            inp, outp = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
            save_file({k: v.contiguous() for k, v in batch.items()}, inp)
            subprocess.run([tool, "exported", model_dir, exp, inp, outp], check=True)
            ours = load_file(outp)
            ref, effect = reference(model, manifest, comp, batch, theta)
            if not effect > 100 * TOL:
                raise SystemExit(f"FAIL {method}/{policy}: the trained adapter changes the encoder by only {effect:.3g}: "
                                 "the comparison would not notice a dropped adapter")
            worst = 0.0
            for key, r in ref.items():
                if key not in ours:
                    raise SystemExit(f"FAIL {method}/{policy}: pith wrote no '{key}'")
                if key == "logits":  # positions whose query is a real token
                    m = batch["dec_mask"].bool()
                    worst = max(worst, check_close(f"{method}/{policy} logits", ours[key][m], r[m]))
                else:
                    worst = max(worst, check_close(f"{method}/{policy} {key}", ours[key], r))

            # Round trip: the loss from the checkpoint (its own tensor names) equals the exported one.
            ck = manifest["source"]["checkpoint"]
            params = load_file(os.path.join(ck, "params.safetensors"))
            meta = dict(method=method, k="3", positions=policy, ae="1" if manifest["ae_token"] else "0",
                        lora_rank="4", lora_alpha="8", lora_target="q_proj,v_proj")
            save_file({**{k: v.contiguous() for k, v in batch.items()}, **params}, inp, metadata=meta)
            ck_out = os.path.join(tmp, "ck.safetensors")
            subprocess.run([tool, "compress", model_dir, inp, ck_out], check=True)
            a, b = load_file(ck_out)["loss"].item(), ours["loss"].item()
            if a != b:
                raise SystemExit(f"FAIL {method}/{policy}: loss {b!r} from the export, {a!r} from the checkpoint")
            print(f"ok {method} positions={policy}: peft loaded {n_keys} tensors; K/V, logits, loss "
                  f"(ref {ref['loss'].item():.5f}) within {worst:.2e} (adapter effect {effect:.2e}); checkpoint loss identical")

        # --force replaces; a checkpoint folder can be named directly.
        exp = os.path.join(tmp, "exp_500x_consistent")
        p = run("export", "--run", os.path.join(tmp, "run_500x_consistent"), "--out", exp, ok=False)
        want = "already exists (--force replaces it)"
        if p.returncode == 0 or want not in p.stderr or len(p.stderr.strip().splitlines()) != 1:
            raise SystemExit(f"FAIL: existing --out: exit {p.returncode}, stderr {p.stderr!r}")
        ck_dir = os.path.join(tmp, "run_icae_reference", "checkpoints", "step-00000003")
        run("export", "--run", ck_dir, "--out", exp, "--force")
        with open(os.path.join(exp, "manifest.json")) as f:
            if json.load(f)["method"] != "icae":
                raise SystemExit("FAIL: --force did not replace the export")
        empty = os.path.join(tmp, "empty_run")
        os.makedirs(empty)
        p = run("export", "--run", empty, "--out", os.path.join(tmp, "x"), ok=False)
        if p.returncode == 0 or "no complete checkpoint" not in p.stderr or len(p.stderr.strip().splitlines()) != 1:
            raise SystemExit(f"FAIL: run without checkpoints: exit {p.returncode}, stderr {p.stderr!r}")
        if os.path.exists(os.path.join(tmp, "x")) or os.path.exists(os.path.join(tmp, "x.partial")):
            raise SystemExit("FAIL: a failed export left a folder behind")
        print("errors: existing --out and a run without checkpoints rejected in one line; --force replaces")

        # export_load refuses an adapter with a tensor it has no slot for, or one missing.
        import shutil
        src = os.path.join(tmp, "exp_500x_reference")
        for label, edit, want in [
            ("extra", lambda d: d.update({"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight":
                                          torch.zeros(4, cfg["hidden_size"])}), "unexpected tensor"),
            ("missing", lambda d: d.pop("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"), "missing"),
        ]:
            bad = os.path.join(tmp, f"bad_{label}")
            shutil.copytree(src, bad)
            path = os.path.join(bad, "adapter_model.safetensors")
            d = load_file(path)
            edit(d)
            save_file(d, path, metadata={"format": "pt"})
            p = subprocess.run([tool, "exported", model_dir, bad, inp, outp], capture_output=True, text=True)
            if p.returncode == 0 or want not in p.stderr:
                raise SystemExit(f"FAIL: export_load of an adapter with a {label} tensor: exit {p.returncode}, "
                                 f"stderr {p.stderr!r}")
        print("export_load: an adapter with an extra or a missing tensor is refused")
    print("export_peft: PEFT loads pith's adapter and the exported compressor matches pith")


if __name__ == "__main__":
    main()
