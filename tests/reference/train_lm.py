"""`pith lm` end to end on a small synthetic world (pith data synth): a random model shaped by a
config.json trains, its loss falls, an interrupted-and-resumed run has the uninterrupted loss curve
to the bit, RUN/model loads in transformers with the tokenizer beside it, and transformers' loss on
the first validation rows (built from the corpus with h5py as [bos] context "Question: " question
" Answer: " answer eos) equals the validation loss pith reports; the no_layer0 regulariser's loss
(the answer read after the context's own K/V with layer 0's zeroed) equals transformers' computed
that way. Bad configs fail in one line.

Run by ctest with PITH_BIN (the pith binary).
"""
import json
import os
import shutil
import tempfile

import harness
import tiny_world

B = 4  # batch size: the validation loss below covers exactly the first B validation rows
run = harness.pith


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def reference_val_loss(model_dir, qa_h5, cutoff, dec_len, answer_weight=1.0):
    import torch

    model = harness.load_causal_lm(model_dir)
    qa = tiny_world.QA(model_dir, qa_h5)
    f, col, bos, eos, qp, ap = qa.f, qa.col, qa.bos, qa.eos, qa.qp, qa.ap
    split = f["split"][:]
    val = [i for i in range(len(split)) if split[i] == 1][:B]
    rows = []
    for i in val:
        first_answer = f["answer_offsets"][i]
        off = f["answer_tokens_offsets"]
        answer = f["answer_tokens"][off[first_answer]:off[first_answer + 1]].tolist()
        dec, ctx = qp + col("question_tokens", i) + ap + answer + [eos], col("context_tokens", i)
        if len(dec) > dec_len or len(ctx) > cutoff:  # the loader would cut them: keep this test simple
            harness.fail(f"validation row {i} is longer than the test's cutoff_len/max_target_len")
        rows.append(([bos] + ctx + dec, len(answer) + 1))
    total, count = 0.0, 0.0
    with torch.no_grad():
        for r, n_answer in rows:  # the last n_answer targets are the answer and its eos
            logits = model(torch.tensor([r])).logits[0]
            ce = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(r[1:]), reduction="none")
            w = torch.ones(len(r) - 1, dtype=torch.float64)
            w[-n_answer:] = answer_weight
            total, count = total + (ce.double() * w).sum().item(), count + w.sum().item()
    return total / count


def reference_no_layer0_loss(model_dir, qa_h5, rows, cutoff, dec_len):
    """Mean cross-entropy of the answers and their eos when the question prompt reads [bos] context as
    past key/values, layer 0's zeroed (transformers' DynamicCache), over the given rows."""
    import torch
    import transformers

    model = harness.load_causal_lm(model_dir)
    qa = tiny_world.QA(model_dir, qa_h5)
    f, col = qa.f, qa.col
    total, count = 0.0, 0
    with torch.no_grad():
        for i in rows:
            off = f["answer_tokens_offsets"]
            first_answer = f["answer_offsets"][i]
            answer = f["answer_tokens"][off[first_answer]:off[first_answer + 1]].tolist()
            ctx, dec = [qa.bos] + col("context_tokens", i), qa.qp + col("question_tokens", i) + qa.ap + answer + [qa.eos]
            if len(ctx) > cutoff + 1 or len(dec) > dec_len:
                harness.fail(f"row {i} is longer than the test's cutoff_len/max_target_len")
            kv = model(input_ids=torch.tensor([ctx]), use_cache=True).past_key_values
            cache = transformers.DynamicCache()
            for layer in range(model.config.num_hidden_layers):
                k, v = kv.layers[layer].keys, kv.layers[layer].values
                if layer == 0:
                    k, v = torch.zeros_like(k), torch.zeros_like(v)
                cache.update(k, v, layer)
            pos = torch.arange(len(ctx), len(ctx) + len(dec)).unsqueeze(0)
            logits = model(input_ids=torch.tensor([dec]), past_key_values=cache, position_ids=pos).logits[0]
            n = len(answer) + 1  # the answer's tokens and the eos are predicted by the positions before them
            ce = torch.nn.functional.cross_entropy(logits[-n - 1:-1], torch.tensor(dec[-n:]), reduction="sum")
            total, count = total + ce.item(), count + n
    return total / count


def main():
    harness.pith_bin()
    harness.require("h5py", "transformers")
    with tempfile.TemporaryDirectory() as tmp:
        world, vocab = tiny_world.make_world(tmp, 300)
        shape = tiny_world.write_shape(os.path.join(tmp, "shape.json"), vocab, hidden=32, layers=2, heads=2, kv_heads=1)
        qa = os.path.join(world, "qa.h5")
        common = [f"model_config={shape}", f"tokenizer={os.path.join(world, 'tokenizer')}", f"train_file={qa}",
                  f"per_device_train_batch_size={B}", "cutoff_len=104", "max_target_len=48", "learning_rate=1e-2",
                  "warmup_steps=2", "logging_steps=1", "eval_batches=1", "threads=1", "seed=3"]
        full, part = os.path.join(tmp, "full"), os.path.join(tmp, "part")
        run("lm", *common, "max_steps=24", f"output_dir={full}", "peak_tflops=0.001")
        run("lm", *common, "max_steps=12", f"output_dir={part}")
        run("lm", *common, "max_steps=24", f"output_dir={part}", "--resume")
        a = {r["step"]: r["loss"] for r in metrics(full) if "loss" in r}
        b = {r["step"]: r["loss"] for r in metrics(part) if "loss" in r}
        if sorted(a) != list(range(1, 25)) or a != b:
            harness.fail(f"resumed losses differ:\n{a}\n{b}")
        first, last = sum(a[s] for s in range(1, 5)) / 4, sum(a[s] for s in range(21, 25)) / 4
        if not last < first - 0.5:
            harness.fail(f"the loss did not fall: {first:.4f} -> {last:.4f}")
        print(f"lm: loss {first:.3f} -> {last:.3f}; the resumed run's 24 losses equal the uninterrupted run's")
        # MFU is logged when the peak is given (peak_tflops), and only then.
        mfu = [r.get("mfu") for r in metrics(full) if "loss" in r]
        if not all(isinstance(m, float) and m > 0 for m in mfu) or any("mfu" in r for r in metrics(part)):
            harness.fail(f"mfu in metrics.jsonl: {mfu} with peak_tflops, and without: {metrics(part)[:2]}")

        model_dir = os.path.join(full, "model")
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            if not os.path.exists(os.path.join(model_dir, name)):
                harness.fail(f"{model_dir}/{name} missing")
        ours = [r["val_loss"] for r in metrics(full) if "val_loss" in r][-1]
        ref = reference_val_loss(model_dir, qa, 104, 48)
        if abs(ours - ref) > 1e-4 * max(1.0, abs(ref)):
            harness.fail(f"validation loss {ours!r} in pith, {ref!r} in transformers")
        print(f"lm: RUN/model loads in transformers; validation loss {ours:.6f} (pith) vs {ref:.6f} (transformers)")

        # Continue training the saved model folder (model_name_or_path instead of model_config).
        # With answer_loss_weight, the validation loss is the weighted mean: check it the same way.
        more = os.path.join(tmp, "more")
        run("lm", *[c for c in common if not c.startswith("model_config")], f"model_name_or_path={model_dir}",
            "max_steps=2", "answer_loss_weight=5", f"output_dir={more}")
        ours = [r["val_loss"] for r in metrics(more) if "val_loss" in r][-1]
        ref = reference_val_loss(os.path.join(more, "model"), qa, 104, 48, answer_weight=5.0)
        if abs(ours - ref) > 1e-4 * max(1.0, abs(ref)):
            harness.fail(f"weighted validation loss {ours!r} in pith, {ref!r} in transformers")
        print(f"lm: continued from RUN/model with answer_loss_weight=5: {ours:.6f} (pith) vs {ref:.6f}")

        # The no_layer0 regulariser on every micro-batch (share 1), on a world small enough for one
        # batch to hold every training row: pith's first loss (before any update) is transformers'.
        small_world, _ = tiny_world.make_world(os.path.join(tmp, "small_world"), 6)
        small_qa = os.path.join(small_world, "qa.h5")
        import h5py
        with h5py.File(small_qa) as f:
            train_rows = [i for i, sp in enumerate(f["split"][:]) if sp == 0]
        deep = os.path.join(tmp, "deep")
        run("lm", *[c for c in common if not c.split("=")[0] in ("model_config", "train_file", "per_device_train_batch_size")],
            f"model_name_or_path={model_dir}", f"train_file={small_qa}", f"per_device_train_batch_size={len(train_rows)}",
            "no_layer0_share=1", "max_steps=1", "learning_rate=0", f"output_dir={deep}")
        ours = [r["loss"] for r in metrics(deep) if "loss" in r][0]
        ref = reference_no_layer0_loss(model_dir, small_qa, train_rows, 104, 48)
        if abs(ours - ref) > 1e-4 * max(1.0, abs(ref)):
            harness.fail(f"no_layer0 loss {ours!r} in pith, {ref!r} in transformers")
        print(f"lm: no_layer0_share=1 over {len(train_rows)} rows: loss {ours:.6f} (pith) vs {ref:.6f} (transformers)")

        bad = [
            ([f"model_name_or_path={model_dir}"], "set exactly one of model_name_or_path and model_config"),
            (["model_config=/nonexistent/config.json"], "/nonexistent/config.json"),
            (["train_file=/nonexistent.h5"], "/nonexistent.h5"),
            (["bf16=true"], "pith lm trains every weight of the model and keeps them in f32"),
            (["no_layer0_share=1.5"], "no_layer0_share: 1.5 is out of range (allowed: [0,1])"),
        ]
        small = os.path.join(tmp, "small.json")
        with open(shape) as f, open(small, "w") as g:
            cfg = json.load(f)
            cfg["vocab_size"] = 100
            json.dump(cfg, g)
        bad.append(([f"model_config={small}"], f"vocab_size 100 is smaller than the tokenizer's {vocab}"))
        for extra, want in bad:
            args = [c for c in common if not any(c.startswith(e.split("=")[0] + "=") for e in extra)]
            p = run("lm", *args, *extra, "max_steps=1", f"output_dir={os.path.join(tmp, 'bad')}", ok=False)
            if p.returncode == 0 or want not in p.stderr:
                harness.fail(f"{extra}: exit {p.returncode}, stderr {p.stderr!r} lacks {want!r}")
        # The compressor drivers refuse a corpus of the wrong kind.
        p = run("pretrain", f"model_name_or_path={model_dir}", f"train_file={qa}", "max_steps=1", "threads=1",
                f"output_dir={os.path.join(tmp, 'bad2')}", ok=False)
        if p.returncode == 0 or "a qa corpus; pretrain needs documents" not in p.stderr:
            harness.fail(f"pretrain on a QA corpus: exit {p.returncode}, {p.stderr!r}")
        print(f"{len(bad) + 1} bad configs rejected with clear messages")

        # The training-step benchmark on random weights of a config.json, with MFU for a given peak.
        p = run("bench", "train-step", "--config", shape, "--k", "4", "--batch", "2", "--seq", "32", "--steps", "1",
                "--warmup", "0", "--threads", "1", "--peak-tflops", "1", "--json")
        bench = json.loads(p.stdout.strip().splitlines()[-1])
        if not (bench["tokens_per_s"] > 0 and 0 < bench["mfu"] < 1):
            harness.fail(f"bench train-step --config: {bench}")
        p = run("bench", "train-step", "--config", shape, "--device", "tpu", ok=False)
        if p.returncode != 2 or "--device is cpu, cuda or cuda:N" not in p.stderr:
            harness.fail(f"bench train-step --device tpu: exit {p.returncode}, {p.stderr!r}")
        print(f"bench train-step on random weights of {os.path.basename(shape)}: {bench}")

        # Tokenizer checks. The model folder's own copy of the world's tokenizer (plus its config.json)
        # gives no warning; a tokenizer whose files differ warns and the run goes on; one whose
        # special ids the model has no embedding for stops the run.
        p = run("finetune", f"model_name_or_path={model_dir}", f"train_file={qa}", "max_steps=1", "threads=1",
                "num_compress_tokens=2", "lora_rank=2", f"output_dir={os.path.join(tmp, 'tok_same')}")
        if "warning" in p.stderr:
            harness.fail(f"the world's own tokenizer drew a warning: {p.stderr!r}")
        other = os.path.join(tmp, "other_tok")
        shutil.copytree(os.path.join(world, "tokenizer"), other)
        with open(os.path.join(other, "tokenizer_config.json")) as f:
            cfg = json.load(f)
        cfg["model_max_length"] = 4096
        with open(os.path.join(other, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f)
        p = run("lm", *[c for c in common if not c.startswith("tokenizer=")], f"tokenizer={other}", "max_steps=1",
                f"output_dir={os.path.join(tmp, 'tok_other')}")
        if f"{qa} was tokenized by another tokenizer" not in p.stderr:
            harness.fail(f"a changed tokenizer drew no warning: {p.stderr!r}")
        gpt2 = harness.asset(os.path.join("tokenizers", "gpt2"), required=False)
        if gpt2 and os.path.isdir(gpt2):
            p = run("finetune", f"model_name_or_path={model_dir}", f"train_file={qa}", f"tokenizer={gpt2}",
                    "max_steps=1", "threads=1", f"output_dir={os.path.join(tmp, 'tok_gpt2')}", ok=False)
            if p.returncode == 0 or "is beyond the model's" not in p.stderr:
                harness.fail(f"GPT-2's tokenizer on the world's model: exit {p.returncode}, {p.stderr!r}")
            print("tokenizers: the world's own gives no warning, a changed one warns, GPT-2's is refused")
        else:
            print("tokenizers: the world's own gives no warning, a changed one warns "
                  f"({os.path.join(harness.assets_dir(), 'tokenizers', 'gpt2')} absent: GPT-2 case skipped)")


if __name__ == "__main__":
    main()
