#!/usr/bin/env python3
"""pith convert on a real llama2.c model: stories260K.bin + tok512.bin into a Hugging Face folder,
then loaded by transformers (AutoModelForCausalLM + AutoTokenizer, CPU, f32, local files only).

Checks:
  1. greedy generation from "Once upon a time" (bos + the prompt's ids, as llama2.c encodes it)
     reproduces exactly what llama2.c prints at temperature 0, and pith decodes the ids alike;
  2. logits along that sequence: transformers' LLaMA on the converted folder against a direct
     PyTorch transcription of llama2.c's forward (run.c: interleaved RoPE pairs) read from the .bin
     itself, in f64 — this is what proves the wq/wk row permutation;
  3. tokenizer: on TinyStories lines and edge cases, HF `tokenizers` loading the converted
     tokenizer.json, transformers' AutoTokenizer on the folder, `pith tokenize` on the copied
     tokenizer.bin (llama2.c's encoder) and `pith tokenize` on the folder give the same ids, and
     HF decodes them back to the text;
  4. the command's contract: an existing folder is refused without --force, replaced with it;
  5. the real LLaMA-2 tokenizer.bin (32,000 pieces, on a random tiny model of that vocab size):
     merges equal transformers' own generate_merges, ids equal llama2.c's (and SentencePiece's).

Env: PITH_BIN (the pith binary), PITH_ASSETS (the assets folder). Exit 77 with a reason when
either or a Python module is missing; any mismatch prints the first differing case and exits 1.
"""
import json
import os
import struct
import tempfile

import harness
from harness import STORIES_GREEDY as EXPECTED, STORIES_PROMPT as PROMPT, fail

MAX_NEW_TOKENS = 64
N_LINES = 400  # TinyStories lines for the tokenizer comparison
EDGE_CASES = ["", " ", "  ", "a", " leading", "trailing ", "double  space", "tab\there", "new\nline\n\n",
              "caf\u00e9 na\u00efve \u2014 \u201cquoted\u201d \u2019s", "\u65e5\u672c\u8a9e \U0001F600 emoji",
              "x" * 200, "1234567890 3.14 1,000", "Lily's dog, Max, said: \"Wow!\""]
# A literal U+2581 in a text: a SentencePiece-style tokenizer.json (like SentencePiece itself) cannot
# tell it from a space, while llama2.c's encoder, whose pieces hold real spaces, byte-falls-back on
# it. So ids differ by design; HF (and pith on tokenizer.json) treat it exactly as a space.
MARKED = "\u2581already marked"


def pith_tokenize(tokenizer, texts, bos=False):
    """ids of each text (JSON lines in, so texts may hold newlines)."""
    return harness.pith_jsonl(["tokenize", "--tokenizer", tokenizer, "--jsonl", "--threads", "1"]
                              + (["--bos"] if bos else []), [{"text": t} for t in texts])


def llama2c_logits(path, ids, torch):
    """llama2.c's forward (run.c) over `ids`, f64, straight from the v0 checkpoint: (T, vocab)."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    w = torch.frombuffer(bytearray(data[28:]), dtype=torch.float32).double()
    hs = dim // n_heads
    kv_dim = n_kv * hs
    off = 0

    def take(*shape):
        nonlocal off
        n = 1
        for s in shape:
            n *= s
        t = w[off:off + n].view(*shape)
        off += n
        return t

    emb = take(vocab, dim)
    rms_att, wq, wk = take(n_layers, dim), take(n_layers, dim, dim), take(n_layers, kv_dim, dim)
    wv, wo, rms_ffn = take(n_layers, kv_dim, dim), take(n_layers, dim, dim), take(n_layers, dim)
    w1, w2, w3 = take(n_layers, hidden, dim), take(n_layers, dim, hidden), take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len * hs // 2)
    take(seq_len * hs // 2)
    wcls = emb if shared else take(vocab, dim)
    if off != w.numel():
        fail(f"{path}: {w.numel() - off} floats left after the weights (layout mismatch in the reference)")

    T = len(ids)
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    freq = 1.0 / (10000.0 ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))  # (hs/2,)
    ang = pos * freq  # (T, hs/2)
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rope(x, n):  # x (T, n*hs): rotate pairs (2i, 2i+1) of each head, as run.c does
        x = x.view(T, n, hs // 2, 2)
        a, b = x[..., 0], x[..., 1]
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).view(T, n * hs)

    def rmsnorm(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g

    x = emb[torch.tensor(ids)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(n_layers):
        xb = rmsnorm(x, rms_att[l])
        q, k, v = rope(xb @ wq[l].T, n_heads), rope(xb @ wk[l].T, n_kv), xb @ wv[l].T
        q = q.view(T, n_heads, hs).transpose(0, 1)
        rep = n_heads // n_kv
        k = k.view(T, n_kv, hs).transpose(0, 1).repeat_interleave(rep, 0)
        v = v.view(T, n_kv, hs).transpose(0, 1).repeat_interleave(rep, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / hs ** 0.5 + mask, dim=-1)
        x = x + (att @ v).transpose(0, 1).reshape(T, dim) @ wo[l].T
        xb = rmsnorm(x, rms_ffn[l])
        h1 = xb @ w1[l].T
        x = x + ((h1 * torch.sigmoid(h1)) * (xb @ w3[l].T)) @ w2[l].T
    return rmsnorm(x, rms_final) @ wcls.T


def main():
    harness.pith_bin()
    ckpt, tok_bin = harness.stories_assets()
    stories = harness.asset("data/tinystories/tinystories_val_head.txt")
    assets = harness.assets_dir()
    torch, tokenizers, transformers = harness.require("torch", "tokenizers", "transformers")
    Tokenizer = tokenizers.Tokenizer
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="pith_convert_") as tmp:
        out = os.path.join(tmp, "stories260K-hf")
        print(harness.convert_stories(out).stdout.rstrip())
        files = sorted(os.listdir(out))
        want = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.bin", "tokenizer.json",
                "tokenizer_config.json"]
        if files != want or os.path.exists(out + ".partial"):
            fail(f"{out} holds {files}, want {want} (and no .partial beside it)")

        # 4. An existing folder: refused without --force, replaced with it.
        p = harness.convert_stories(out, ok=False)
        err = p.stderr
        if p.returncode != 1 or "already exists" not in err or "--force" not in err:
            fail(f"converting onto an existing folder: exit {p.returncode}, stderr {err!r}")
        harness.convert_stories(out, "--force")
        if sorted(os.listdir(tmp)) != ["stories260K-hf"]:
            fail(f"after --force, {tmp} holds {sorted(os.listdir(tmp))}")

        model = harness.load_causal_lm(out, local_files_only=True)
        hf_tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
        raw_tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))

        # The prompt as llama2.c encodes it: bos + ids (pith's tokenizer on tok512.bin is llama2.c's encoder).
        pith_ids = pith_tokenize(tok_bin, [PROMPT], bos=True)[0]
        hf_ids = hf_tok(PROMPT)["input_ids"]
        if hf_ids != pith_ids:
            print(f"note: AutoTokenizer gives {hf_ids} for the prompt, pith (llama2.c) {pith_ids}: using pith's")
        ids = pith_ids

        # 1. Greedy generation: the text llama2.c prints at temperature 0.
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=2)[0].tolist()
        text = hf_tok.decode(gen, skip_special_tokens=True)
        if not text.startswith(EXPECTED):
            fail(f"greedy text differs from llama2.c's:\n  got  {text!r}\n  want {EXPECTED!r}")
        pith_text = harness.pith_jsonl(["tokenize", "--tokenizer", out, "--decode", "--skip-special", "--jsonl"],
                                       [gen])[0]["text"]
        if pith_text != text:
            fail(f"pith decodes the generated ids to {pith_text!r}, HF to {text!r}")
        print(f"greedy generation ({len(gen) - len(ids)} new tokens) matches llama2.c: {text[:len(EXPECTED)]!r}")

        # 2. Logits along the generated sequence against llama2.c's own forward on the raw checkpoint.
        with torch.no_grad():
            hf_logits = model(torch.tensor([gen])).logits[0].double()
        ref_logits = llama2c_logits(ckpt, gen, torch)
        diff = (hf_logits - ref_logits).abs().max().item()
        print(f"logits at {len(gen)} positions: max |transformers - llama2.c reference| = {diff:.2e} "
              f"(logits up to {ref_logits.abs().max().item():.1f})")
        if not diff < 1e-4:
            fail(f"logits differ from llama2.c's forward by {diff:.3e} (RoPE permutation or layout wrong?)")

        # 3. Tokenizer parity on TinyStories lines and edge cases.
        with open(stories, encoding="utf-8") as f:
            lines = [l.rstrip("\n") for l in f if l.strip()][:N_LINES]
        texts = lines + EDGE_CASES
        ref = pith_tokenize(os.path.join(out, "tokenizer.bin"), texts)   # llama2.c's encoder
        via_json = pith_tokenize(out, texts)                               # pith on tokenizer.json
        for i, t in enumerate(texts):
            got = {
                "tokenizers (tokenizer.json)": raw_tok.encode(t, add_special_tokens=False).ids,
                "transformers AutoTokenizer": hf_tok(t, add_special_tokens=False)["input_ids"],
                "pith on the folder": via_json[i],
            }
            for who, g in got.items():
                if g != ref[i]:
                    fail(f"text {i} {t[:80]!r}: {who} gives {g[:40]}..., pith on tokenizer.bin (llama2.c) "
                         f"{ref[i][:40]}...")
            back = raw_tok.decode(ref[i], skip_special_tokens=True)
            if back != t:
                fail(f"text {i} {t[:80]!r}: HF decodes its ids to {back!r}")
        marked = pith_tokenize(out, [MARKED])[0]
        as_space = raw_tok.encode(MARKED.replace("\u2581", " "), add_special_tokens=False).ids
        if raw_tok.encode(MARKED, add_special_tokens=False).ids != as_space or marked != as_space:
            fail(f"{MARKED!r}: tokenizers and pith on tokenizer.json should both encode U+2581 as a space")
        n_ids = sum(len(r) for r in ref)
        print(f"tokenizer: {len(texts)} texts, {n_ids} ids: tokenizers, transformers and pith (tokenizer.json) "
              f"equal llama2.c's encoder (pith on tokenizer.bin); HF decode round-trips. Known difference: "
              f"a literal U+2581 in the text is a space to tokenizer.json, bytes to llama2.c")
        # 5. The real LLaMA-2 vocabulary (32,000 pieces) on a random tiny model of that vocab size.
        check_llama2_vocab(assets, tmp, texts, torch, Tokenizer)
        print(f"transformers {transformers.__version__}, torch {torch.__version__}: OK")


def check_llama2_vocab(assets, tmp, texts, torch, Tokenizer):
    """Merges equal transformers' own generate_merges (score-ranked) for LLaMA-2's tokenizer.bin, and
    tokenizers on the converted tokenizer.json gives llama2.c's ids (and SentencePiece's, if present)."""
    tok_bin = os.path.join(assets, "tokenizers/llama2/tokenizer.bin")
    if not os.path.isfile(tok_bin):
        print(f"note: {tok_bin} not found: the LLaMA-2 vocabulary check is not run")
        return
    with open(tok_bin, "rb") as f:
        data = f.read()
    pieces, p = [], 4
    while p < len(data):
        score, n = struct.unpack("fi", data[p:p + 8])
        pieces.append((data[p + 8:p + 8 + n].decode("utf-8"), score))
        p += 8 + n
    dim, hidden, n_layers, n_heads, n_kv, seq_len, vocab = 4, 8, 1, 2, 1, 8, len(pieces)
    hs, kv = dim // n_heads, dim // n_heads
    n = (vocab * dim + n_layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim) + dim
         + seq_len * hs)
    ckpt = os.path.join(tmp, "llama2_vocab.bin")
    with open(ckpt, "wb") as f:
        f.write(struct.pack("7i", dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len))
        f.write(torch.randn(n, generator=torch.Generator().manual_seed(0)).float().numpy().tobytes())
    out = os.path.join(tmp, "llama2-vocab-hf")
    harness.pith("convert", "--checkpoint", ckpt, "--tokenizer", tok_bin, "--out", out)
    with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
        model = json.load(f)["model"]
    hf_pieces = ["<unk>", "<s>", "</s>"] + [s.replace(" ", "\u2581") for s, _ in pieces[3:]]
    if list(model["vocab"].items()) != [(s, i) for i, s in enumerate(hf_pieces)]:
        fail("LLaMA-2 vocab: tokenizer.json's vocab is not the pieces in id order with spaces as U+2581")
    generate_merges = None
    for mod in ("transformers.tokenization_utils_base", "transformers.convert_slow_tokenizer"):
        try:
            generate_merges = getattr(__import__(mod, fromlist=["generate_merges"]), "generate_merges")
            break
        except (ImportError, AttributeError):
            pass
    mine = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if generate_merges is None:
        print("note: this transformers has no generate_merges: merges not compared with it")
    else:
        ref = generate_merges(model["vocab"], [(s, sc) for s, (_, sc) in zip(hf_pieces, pieces)])
        if mine != ref:
            i = next(i for i in range(min(len(ref), len(mine))) if ref[i] != mine[i]) if ref[:len(mine)] != mine[:len(ref)] else min(len(ref), len(mine))
            fail(f"LLaMA-2 merges: {len(mine)} from pith, {len(ref)} from transformers; first difference at {i}: "
                 f"{mine[i:i + 1]} vs {ref[i:i + 1]}")
    raw = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    ref_ids = pith_tokenize(os.path.join(out, "tokenizer.bin"), texts)  # llama2.c's encoder
    sp = None
    sp_model = os.path.join(assets, "tokenizers/llama2/tokenizer.model")
    try:
        import sentencepiece
        if os.path.isfile(sp_model):
            sp = sentencepiece.SentencePieceProcessor(model_file=sp_model)
    except ImportError:
        print("note: sentencepiece is not installed: LLaMA-2 ids not compared with it")
    n_sp = 0
    for i, t in enumerate(texts):
        got = raw.encode(t, add_special_tokens=False).ids
        if got != ref_ids[i]:
            fail(f"LLaMA-2 vocab, text {i} {t[:80]!r}: tokenizers gives {got[:40]}, llama2.c {ref_ids[i][:40]}")
        if sp is not None and "\u2581" not in t and t.strip() == t and "  " not in t:
            n_sp += 1  # SentencePiece also normalizes whitespace runs and ends: compare where it does not
            if sp.encode(t) != got:
                fail(f"LLaMA-2 vocab, text {i} {t[:80]!r}: SentencePiece gives {sp.encode(t)[:40]}, tokenizers {got[:40]}")
    print(f"LLaMA-2 vocabulary: {len(mine)} merges equal transformers' generate_merges; {len(texts)} texts give "
          f"llama2.c's ids in tokenizers" + (f" ({n_sp} also SentencePiece's)" if sp is not None else ""))


if __name__ == "__main__":
    main()
