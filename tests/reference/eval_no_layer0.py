"""`pith eval --baselines no_layer0` against the same computation in transformers.

no_layer0 runs [bos] + the context through the base model and hands its per-layer K/V, layer 0's
set to zero, to the question prompt as past key/values. 500xCompressor's prefix has no text in its
layer-0 K/V (they come from the compress embeddings alone), so on a model that copies answers out
of its context at layer 0 this baseline falls to the no-context score, and no 500x encoder can do
better (README: the demo's base LM is such a model).

Here: a small synthetic world (pith data synth), a model trained on it for a few steps (pith lm),
then pith eval's full and no_layer0 predictions for the first rows must equal transformers' greedy
decoding of the same prompts (full: [bos] context "Question: " question " Answer: "; no_layer0:
that prompt's question part after the context's DynamicCache with layer 0 zeroed), and the two
baselines must not agree everywhere (the zeroing takes effect). no_layer0 on regen is skipped with
a message.

Run by ctest with PITH_BIN.
"""
import json
import os
import tempfile

import harness
import tiny_world

ROWS, NEW = 24, 6
run = harness.pith


def greedy(model, ids, cache, eos, torch):
    out = []
    with torch.no_grad():
        for _ in range(NEW):
            res = model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True)
            cache, nxt = res.past_key_values, int(res.logits[0, -1].argmax())
            if nxt == eos:
                break
            out.append(nxt)
            ids = [nxt]
    return out


def main():
    harness.pith_bin()
    _, torch, _, transformers = harness.require("h5py", "torch", "tokenizers", "transformers")
    with tempfile.TemporaryDirectory() as tmp:
        world, vocab = tiny_world.make_world(tmp, 200)
        shape = tiny_world.write_shape(os.path.join(tmp, "shape.json"), vocab, hidden=64, layers=2, heads=4, kv_heads=2)
        qa = os.path.join(world, "qa.h5")
        lm = os.path.join(tmp, "lm")
        run("lm", f"model_config={shape}", f"tokenizer={os.path.join(world, 'tokenizer')}", f"train_file={qa}",
            "max_steps=200", "learning_rate=1e-2", "warmup_steps=2", "cutoff_len=104", "max_target_len=48",
            "per_device_train_batch_size=8", "threads=1", f"output_dir={lm}")
        model_dir = os.path.join(lm, "model")
        out = os.path.join(tmp, "eval")
        run("eval", "--compressor", "none", "--model", model_dir, "--data", qa, "--split", "all", "--max-examples",
            str(ROWS), "--baselines", "full,no_layer0", "--max-new-tokens", str(NEW), "--cutoff-len", "104",
            "--threads", "1", "--out", out, "--quiet")
        preds = {}
        with open(os.path.join(out, "predictions.jsonl")) as f:
            for line in f:
                p = json.loads(line)
                preds[(p["system"], p["index"])] = p["prediction"]

        model = harness.load_causal_lm(model_dir)
        rows = tiny_world.QA(model_dir, qa)
        tok, col, bos, eos, qp, ap = rows.tok, rows.col, rows.bos, rows.eos, rows.qp, rows.ap

        differ = 0
        for i in range(ROWS):
            ctx, prompt = [bos] + col("context_tokens", i)[:104], qp + col("question_tokens", i) + ap
            want = {"full": greedy(model, ctx + prompt, None, eos, torch)}
            with torch.no_grad():
                kv = model(input_ids=torch.tensor([ctx]), use_cache=True).past_key_values
            cache = transformers.DynamicCache()
            for layer in range(model.config.num_hidden_layers):
                k, v = kv.layers[layer].keys, kv.layers[layer].values
                if layer == 0:
                    k, v = torch.zeros_like(k), torch.zeros_like(v)
                cache.update(k, v, layer)
            want["no_layer0"] = greedy(model, prompt, cache, eos, torch)
            for system, ids in want.items():
                text = tok.decode(ids, skip_special_tokens=False).strip()
                if preds.get((system, i)) != text:
                    harness.fail(f"row {i} {system}: pith {preds.get((system, i))!r}, transformers {text!r}")
            differ += want["full"] != want["no_layer0"]
        if differ == 0:
            harness.fail("no_layer0 predicted what full did on every row: the zeroing has no effect")
        print(f"{ROWS} rows: pith's full and no_layer0 predictions equal transformers'; they differ on {differ}")

        p = run("eval", "--compressor", "none", "--model", model_dir, "--data", os.path.join(world, "docs.h5"),
                "--max-examples", "2", "--baselines", "none,no_layer0", "--threads", "1",
                "--out", os.path.join(tmp, "regen"))
        if "no 'no_layer0' baseline for regen" not in p.stderr:
            harness.fail(f"no_layer0 on regen: {p.stderr!r}")
        print("no_layer0 on regen: skipped with a message")


if __name__ == "__main__":
    main()
