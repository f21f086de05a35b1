"""`pith distill` (sft and kl) and `pith eval --task align` on tiny models: stories260K converted by
`pith convert` is the target, a random tiny LLaMA written by transformers with stories260K's
tokenizer is the scorer.

- kl (full weights, and LoRA merged into RUN/model) and sft run a few steps; an interrupted-and-resumed run logs exactly the losses (and the final
  held-out KL) of an uninterrupted one (CPU, bit-exact), also when SIGINT stopped it; kl lowers the
  held-out KL; sft writes its generations as a corpus with provenance, and a second run reuses them;
- bad inputs fail with one line naming the file, and leave no run folder: tokenizers that differ in
  one piece (same paths' layout, so compared by vocabulary), a target that is a BERT, a target with
  no weights, method classifier with a LLaMA folder as the classifier;
- the align metrics match a PyTorch computation (transformers' models, NumPy's ranks) of the mean
  per-token KL(target||scorer) and the Spearman correlation of surprisal on the same texts, to 1e-4,
  for two scorers: the random one (a correlation near 0), and the target plus weight noise (a KL
  near 0 and a correlation near 1).

Run by ctest with PITH_BIN and PITH_ASSETS.
"""
import json
import os
import shutil
import tempfile

import harness

run = harness.pith


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(run_dir):
    return {r["step"]: r["loss"] for r in metrics(run_dir) if "loss" in r}


def val_kl(run_dir):
    return {r["step"]: r["val_kl"] for r in metrics(run_dir) if "val_kl" in r}


def random_scorer(out, tokenizer_dir):
    torch, transformers = harness.require("torch", "transformers")
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                   tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, name), out)


def check_resume(method, common, tmp, tag=None):
    tag = tag or method
    full, part = os.path.join(tmp, f"{tag}_full"), os.path.join(tmp, f"{tag}_part")
    run("distill", *common, f"method={method}", "max_steps=8", f"output_dir={full}")
    run("distill", *common, f"method={method}", "max_steps=4", f"output_dir={part}")
    p = run("distill", *common, f"method={method}", "max_steps=8", f"output_dir={part}", "--resume")
    a, b = losses(full), losses(part)
    harness.check(sorted(a) == list(range(1, 9)) and sorted(b) == list(range(1, 9)),
                  f"{method}: steps logged {sorted(a)} and {sorted(b)}")
    for step in range(1, 9):
        harness.check(a[step] == b[step], f"{method} step {step}: loss {a[step]!r} uninterrupted, {b[step]!r} resumed")
    ka, kb = val_kl(full), val_kl(part)
    harness.check(ka.get(8) is not None and ka.get(8) == kb.get(8), f"{method}: final val_kl {ka} vs {kb}")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        harness.check(os.path.isfile(os.path.join(full, "model", name)), f"{method}: RUN/model/{name} missing")
    print(f"{tag}: 8 losses identical to the bit after resume; held-out KL {ka[0]:.4f} -> {ka[8]:.4f}")
    return full, p


def check_sigint(common, tmp):
    """SIGINT in the middle of a kl run saves a checkpoint at the step it reached (exit 130); the
    run resumed to two more steps logs the losses of an uninterrupted run of as many steps."""
    import re
    import signal
    import subprocess
    import time
    stopped, whole = os.path.join(tmp, "sigint"), os.path.join(tmp, "sigint_whole")
    args = [harness.pith_bin(), "distill", *common, "method=kl", "max_steps=100000", f"output_dir={stopped}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 120:
        time.sleep(0.2)
        path = os.path.join(stopped, "metrics.jsonl")
        if os.path.isfile(path) and len(losses(stopped)) >= 3:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    m = re.search(r"signal 2: saving a checkpoint at step (\d+)", out)
    harness.check(proc.returncode == 130 and m, f"SIGINT: exit {proc.returncode}, stdout tail {out[-300:]!r} {err!r}")
    n = int(m.group(1)) + 2
    run("distill", *common, "method=kl", f"max_steps={n}", f"output_dir={stopped}", "--resume")
    run("distill", *common, "method=kl", f"max_steps={n}", f"output_dir={whole}")
    a, b = losses(whole), losses(stopped)
    harness.check(sorted(a) == list(range(1, n + 1)) and all(a[s] == b.get(s) for s in a),
                  f"SIGINT at step {n - 2} then --resume: losses differ from an uninterrupted run")
    print(f"SIGINT at step {n - 2}: checkpoint saved, exit 130; resumed to {n}, losses identical to the bit")


def check_align_parity(target, scorer, corpus, tmp):
    torch, np, h5py = harness.require("torch", "numpy", "h5py")
    limit, max_len = 6, 48
    out = os.path.join(tmp, "align.json")
    p = run("eval", "--task", "align", "--scorer", scorer, "--target", target, "--data", corpus, "--limit", limit,
            "--max-len", max_len, "--threads", 1, "--out", out)
    ours = json.loads(p.stdout.strip().splitlines()[-1])
    harness.check(harness.read_json(out) == ours, "--out and stdout differ")
    # The same texts: the first `limit` val-split documents, [bos] + their first max_len - 1 tokens.
    with h5py.File(corpus) as f:
        split, off, toks = f["split"][:], f["tokens_offsets"][:], f["tokens"]
        rows = [i for i in range(len(split)) if split[i] == 1][:limit]
        texts = [[1] + list(toks[off[i]:off[i + 1]][:max_len - 1]) for i in rows]
    mt, ms = harness.load_causal_lm(target), harness.load_causal_lm(scorer)
    kls, st, ss = [], [], []
    with torch.no_grad():
        for ids in texts:
            x = torch.tensor([ids])
            lt = torch.log_softmax(mt(x).logits[0, :-1].double(), -1)
            ls = torch.log_softmax(ms(x).logits[0, :-1].double(), -1)
            kls.append((lt.exp() * (lt - ls)).sum(-1))
            nxt = x[0, 1:, None]
            st.append(-lt.gather(1, nxt)[:, 0])
            ss.append(-ls.gather(1, nxt)[:, 0])
    kl = torch.cat(kls).mean().item()
    st, ss = torch.cat(st).numpy(), torch.cat(ss).numpy()

    def ranks(v):  # average ranks for ties
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for val in np.unique(v):
            idx = v == val
            r[idx] = r[idx].mean()
        return r

    rho = np.corrcoef(ranks(st), ranks(ss))[0, 1]
    harness.check(ours["n_texts"] == len(texts) and ours["n_tokens"] == sum(len(t) - 1 for t in texts),
                  f"texts/tokens {ours['n_texts']}/{ours['n_tokens']} vs {len(texts)}/{sum(len(t) - 1 for t in texts)}")
    for name, a, b in (("kl", ours["kl"], kl), ("spearman", ours["spearman"], rho),
                       ("nll_target", ours["nll_target"], st.mean()), ("nll_scorer", ours["nll_scorer"], ss.mean())):
        harness.check(abs(a - b) <= 1e-4, f"align {name}: pith {a:.6f}, PyTorch {b:.6f}")
    print(f"align parity: KL {ours['kl']:.6f} (PyTorch {kl:.6f}), Spearman {ours['spearman']:.6f} "
          f"(NumPy {rho:.6f}) over {ours['n_tokens']} tokens")


def check_bench_step(target, scorer):
    """`pith bench distill-step` (scripts/bench distill's pith side) computes the kl loss of the trainer:
    its first step's loss equals KL(target || scorer) at T 2 times T^2, computed here, on its ids."""
    torch = harness.require("torch")
    B, T, temp = 2, 16, 2.0
    p = run("bench", "distill-step", "--target", target, "--scorer", scorer, "--batch", B, "--seq", T, "--steps", 1,
            "--warmup", 0, "--temperature", temp, "--threads", 1, "--json")
    ours = json.loads(p.stdout.strip().splitlines()[-1])["loss"]
    mt, ms = harness.load_causal_lm(target), harness.load_causal_lm(scorer)
    g = torch.Generator().manual_seed(5)  # pith's ids: uniform [0, 1) seeded 5, times vocab - 1, truncated
    ids = (torch.empty(B, T).uniform_(0, 1, generator=g) * (mt.config.vocab_size - 1)).long()
    with torch.no_grad():
        lt = torch.log_softmax(mt(ids).logits.double() / temp, -1)
        ls = torch.log_softmax(ms(ids).logits.double() / temp, -1)
        ref = ((lt.exp() * (lt - ls)).sum(-1).mean() * temp * temp).item()
    harness.check(abs(ours - ref) < 1e-5 * max(1.0, abs(ref)), f"bench distill-step loss {ours} vs {ref}")
    p = run("bench", "distill-step", "--target", target, ok=False)
    harness.check(p.returncode == 2 and "--scorer" in p.stderr, f"bench distill-step without --scorer: {p.stderr!r}")
    print(f"bench distill-step: the trainer's kl loss ({ours:.6f}, PyTorch {ref:.6f}); a missing --scorer refused")


def check_refusals(common, scorer, target, tmp):
    bad_tok = os.path.join(tmp, "scorer_other_tok")  # ids 300 and 301 swapped: same size and pieces
    shutil.copytree(scorer, bad_tok)
    with open(os.path.join(bad_tok, "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    p300, p301 = (next(k for k, v in vocab.items() if v == i) for i in (300, 301))
    vocab[p300], vocab[p301] = 301, 300
    with open(os.path.join(bad_tok, "tokenizer.json"), "w") as f:
        json.dump(tj, f)
    bert = os.path.join(tmp, "bert")
    os.makedirs(bert)
    harness.write_json(os.path.join(bert, "config.json"),
                       {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 512})
    no_weights = os.path.join(tmp, "no_weights")
    os.makedirs(no_weights)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(target, name), no_weights)
    cases = [
        ([f"model_name_or_path={bad_tok}"], ["different tokenizers", bad_tok, target, "id 300"]),
        ([f"target_model_name_or_path={bert}"], [os.path.join(bert, "config.json"), "not a causal LM"]),
        ([f"target_model_name_or_path={no_weights}"], [os.path.join(no_weights, "model.safetensors"), "missing"]),
        (["method=classifier"], ["not an encoder folder", scorer]),  # a LLaMA folder as the classifier
        (["loss_chunk_rows=64"], ["loss_chunk_rows", "method kl", "whole logits"]),
    ]
    for extra, wants in cases:
        keys = {e.split("=")[0] for e in extra}
        args = [c for c in common if c.split("=")[0] not in keys]
        out = os.path.join(tmp, "refused")
        p = run("distill", *args, *extra, "method=kl" if "method=classifier" not in extra else "max_steps=2",
                f"output_dir={out}", ok=False)
        err = p.stderr.strip()
        harness.check(p.returncode == 1 and len(err.splitlines()) == 1 and all(w in err for w in wants),
                      f"{extra}: exit {p.returncode}, stderr {err!r} lacks {wants}")
        harness.check(not os.path.exists(out), f"{extra}: the refused run left {out} behind")
    p = run("eval", "--task", "align", "--scorer", bad_tok, "--target", target, "--data", common[2].split("=", 1)[1],
            ok=False)
    harness.check(p.returncode == 1 and "different tokenizers" in p.stderr, f"align with another tokenizer: {p.stderr!r}")
    print(f"{len(cases) + 1} bad inputs refused with one line, no run folder left")


def main():
    harness.pith_bin()
    harness.stories_assets()
    harness.require("torch", "transformers", "numpy", "h5py")
    with tempfile.TemporaryDirectory() as tmp:
        target, corpus = harness.stories_run_inputs(tmp)
        scorer = os.path.join(tmp, "scorer")
        random_scorer(scorer, target)
        common = [f"model_name_or_path={scorer}", f"target_model_name_or_path={target}", f"train_file={corpus}",
                  "cutoff_len=32", "per_device_train_batch_size=4", "learning_rate=3e-3", "warmup_steps=2",
                  "logging_steps=1", "eval_batches=2", "align_docs=4", "threads=1", "temperature=2",
                  "generation_num_prompts=24", "generation_prompt_len=8", "generation_max_new_tokens=16"]
        kl_run, _ = check_resume("kl", common, tmp)
        k = val_kl(kl_run)
        harness.check(k[8] < k[0], f"kl: held-out KL did not fall: {k[0]:.4f} -> {k[8]:.4f}")
        # LoRA on the scorer (dropout on: its generator is resumed too), merged into RUN/model at the end:
        # the merged folder gives pith eval the held-out KL the run measured with the adapter.
        lora = ["finetuning_type=lora", "lora_rank=4", "lora_alpha=8", "lora_dropout=0.1", "learning_rate=2e-2"]
        lora_run, _ = check_resume("kl", common + lora, tmp, tag="kl_lora")
        p = run("eval", "--task", "align", "--scorer", os.path.join(lora_run, "model"), "--target", target, "--data",
                corpus, "--limit", 4, "--max-len", 33)
        merged, k = json.loads(p.stdout.strip().splitlines()[-1])["kl"], val_kl(lora_run)
        harness.check(abs(merged - k[8]) < 1e-4 and k[8] < k[0],
                      f"lora: the merged model's KL {merged} vs the run's {k[8]} (from {k[0]})")
        print(f"lora: merged RUN/model gives the run's held-out KL ({merged:.6f})")
        sft_run, _ = check_resume("sft", common, tmp)
        gen = os.path.join(sft_run, "generated.h5")
        info = run("data", "info", gen).stdout
        for want in ("documents", "target_weights_sha256=", "generation_temperature=1", "seed=42", "model.safetensors"):
            harness.check(want in info, f"generated corpus lacks {want!r} in its provenance:\n{info}")
        again = os.path.join(tmp, "sft_again")
        p = run("distill", *common, "method=sft", "max_steps=1", f"generated_file={gen}", f"output_dir={again}")
        harness.check("reusing the target's generations" in p.stdout and not os.path.exists(
            os.path.join(again, "generated.h5")), "generated_file was not reused")
        print("sft: generations with provenance, reused through generated_file")
        check_sigint(common, tmp)
        check_refusals(common, scorer, target, tmp)
        check_align_parity(target, scorer, corpus, tmp)
        check_bench_step(target, scorer)
        # A scorer close to the target (its weights plus noise): small KL, high rank correlation.
        torch = harness.require("torch")
        near = os.path.join(tmp, "near")
        m = harness.load_causal_lm(target)
        torch.manual_seed(1)
        with torch.no_grad():
            for w in m.parameters():
                w.add_(0.05 * w.std() * torch.randn_like(w))
        m.save_pretrained(near)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(target, name), near)
        check_align_parity(target, near, corpus, tmp)


if __name__ == "__main__":
    main()
