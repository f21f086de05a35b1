#!/usr/bin/env python3
"""`pith data ingest` on the real assets, checked independently with h5py, h5dump and HF tokenizers.

- arXiv (both files under $PITH_ASSETS/data/arxiv/): every abstract comes back, in order, as the
  documented normalisation of the source (re.sub(r"[ \\t\\n\\v\\f\\r]+", " ", s).strip(" ")), with the
  id from "id" (BASENAME:LINE where it is null), the split from the documented sha256 rule, and
  token ids equal to HF tokenizers' LLaMA-3 ids for the same text (which decode back to it).
- SQuAD v1.1 dev: 10,570 questions over 2,067 paragraphs and 34,726 answers; every context,
  question and answer text and every answer_start equals the source, Python's str slicing of the
  context at answer_char_start gives the answer, and all token ids equal HF's.
- The attributes say what made the files (tokenizer fingerprint, source sha256, command).
- The same files come out with 1 thread and with all of them; h5dump -H and `pith data info` read them.
- An ingest killed half-way leaves no output file, and its .partial is not a valid corpus.
- `pith data synth`: the same seed gives byte-identical files; HF tokenizers loads the generated
  tokenizer and gives pith's ids; every answer sits at its offset.

usage: ingest_roundtrip.py   (env: PITH_BIN, the pith binary; PITH_ASSETS, the assets folder)
Exit 0 on success, 1 on any mismatch, 77 (skip, reason printed) when a module, h5dump, the binary
or an asset is missing.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import harness

h5py, np, tokenizers = harness.require("h5py", "numpy", "tokenizers")
Tokenizer = tokenizers.Tokenizer


def check(cond, what):
    return harness.expect(cond, what, show=30)


def split_of(id_, val, test):
    b = int.from_bytes(hashlib.sha256(id_.encode()).digest()[:8], "big") % 1_000_000
    return 2 if b < round(test * 1e6) else 1 if b < round((test + val) * 1e6) else 0


def normalize(s):
    return re.sub(r"[ \t\n\v\f\r]+", " ", s).strip(" ")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(tok_json):
    """The documented tokenizer fingerprint: sha256 of "<sha256>  <basename>\\n" per source file."""
    d = os.path.dirname(tok_json)
    files = [tok_json] + [os.path.join(d, n) for n in ("tokenizer_config.json", "generation_config.json", "config.json")
                          if os.path.exists(os.path.join(d, n))]
    return hashlib.sha256("".join(f"{sha256_file(p)}  {os.path.basename(p)}\n" for p in files).encode()).hexdigest()


def ragged(f, name):
    """All rows of a ragged column as a list of numpy arrays."""
    data, off = f[name][:], f[name + "_offsets"][:]
    return [data[off[i]:off[i + 1]] for i in range(len(off) - 1)]


def texts(f, name):
    return [bytes(r).decode("utf-8") for r in ragged(f, name)]


def run(args, **kw):
    p = harness.run(args, ok=False, timeout=None, text=True, **kw)
    if p.returncode != 0:
        print(f"command failed ({p.returncode}): {' '.join(args)}\n{p.stdout}{p.stderr}")
    return p


def same_datasets(a, b):
    with h5py.File(a) as x, h5py.File(b) as y:
        if sorted(x.keys()) != sorted(y.keys()):
            return False
        return all(np.array_equal(x[k][:], y[k][:]) for k in x.keys())


def check_attrs(f, kind, tok_json, sources, n):
    a = f.attrs
    check(a["schema"] == "pith.corpus" and int(a["schema_version"]) == 1 and a["kind"] == kind, f"{kind}: schema attrs")
    check(a["tokenizer_sha256"] == fingerprint(tok_json), f"{kind}: tokenizer_sha256 {a['tokenizer_sha256']}")
    check(list(a["source_paths"]) == sources, f"{kind}: source_paths {list(a['source_paths'])}")
    check(list(a["source_sha256"]) == [sha256_file(p) for p in sources], f"{kind}: source_sha256")
    check(a["command"].startswith("pith data "), f"{kind}: command {a['command']!r}")
    check(int(a["n_records"]) == n, f"{kind}: n_records {int(a['n_records'])} != {n}")


def check_ids(what, got, want_texts, tok, n_show=3):
    """Token ids (list of arrays) equal HF's for the texts, and HF decodes them back to the texts."""
    hf = tok.encode_batch(want_texts, add_special_tokens=False)
    bad = [i for i, (g, h) in enumerate(zip(got, hf)) if list(g) != h.ids]
    check(len(got) == len(want_texts) and not bad, f"{what}: {len(bad)} of {len(want_texts)} token rows differ from HF "
          f"(first at {bad[:n_show]})")
    dec = tok.decode_batch([list(map(int, g)) for g in got], skip_special_tokens=True)
    # A tokenizer that adds a prefix space when encoding (the synthetic world's) gives it back.
    bad = [i for i, (d, t) in enumerate(zip(dec, want_texts)) if d != t and not (d[:1] == " " and d[1:] == t)]
    check(not bad, f"{what}: {len(bad)} rows do not decode back to their text (first at {bad[:n_show]})")


def test_arxiv(pith, assets, tmp, tok, tok_json):
    files = [os.path.join(assets, "data/arxiv", n) for n in ("arxiv-metadata-oai-snapshot.first200.jsonl",
                                                             "arxiv_abstracts_4000.jsonl")]
    want_ids, want_texts = [], []
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                d = json.loads(line)
                text = normalize(d["abstract"])
                if not text:
                    continue
                want_ids.append(d["id"] if d.get("id") is not None else f"{os.path.basename(path)}:{line_no}")
                want_texts.append(text)
    outs = {}
    for threads in (1, os.cpu_count() or 2):
        out = os.path.join(tmp, f"arxiv_t{threads}.h5")
        p = run([pith, "data", "ingest", "--tokenizer", tok_json, "--format", "arxiv", "--out", out,
                 "--threads", str(threads), *files])
        if not check(p.returncode == 0 and os.path.exists(out), f"arxiv ingest with {threads} threads"):
            return []
        outs[threads] = out
    out = outs[1]
    with h5py.File(out) as f:
        check_attrs(f, "documents", tok_json, files, len(want_texts))
        got_ids, got_texts = texts(f, "id"), texts(f, "text")
        check(len(got_texts) == len(want_texts) == 4200, f"arxiv: {len(got_texts)} documents, source has {len(want_texts)}")
        bad = [i for i, (g, w) in enumerate(zip(got_texts, want_texts)) if g != w]
        check(not bad, f"arxiv: {len(bad)} texts differ from the normalised abstracts (first at {bad[:3]})")
        check(got_ids == want_ids, "arxiv: ids differ from the source")
        splits = f["split"][:]
        check(all(int(s) == split_of(i, 0.01, 0.01) for s, i in zip(splits, got_ids)), "arxiv: splits off the sha256 rule")
        toks = ragged(f, "tokens")
        check(int(f.attrs["n_tokens"]) == sum(len(t) for t in toks), "arxiv: n_tokens attribute")
        check_ids("arxiv", toks, want_texts, tok)
    check(same_datasets(outs[1], outs[max(outs)]), f"arxiv: the file with {max(outs)} threads differs from 1 thread's")
    print(f"arxiv: {len(want_texts)} documents round-trip; ids equal HF's; same with {max(outs)} threads")
    return list(outs.values())


def test_squad(pith, assets, tmp, tok, tok_json):
    path = os.path.join(assets, "data/squad/dev-v1.1.json")
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    qs = [(p["context"], q) for art in data for p in art["paragraphs"] for q in p["qas"]]
    n_paragraphs = sum(len(art["paragraphs"]) for art in data)
    outs = {}
    for threads in (1, os.cpu_count() or 2):
        out = os.path.join(tmp, f"squad_t{threads}.h5")
        p = run([pith, "data", "ingest", "--tokenizer", tok_json, "--format", "squad", "--out", out,
                 "--threads", str(threads), path])
        if not check(p.returncode == 0, f"squad ingest with {threads} threads"):
            return []
        check("answers found away" not in p.stderr and "not in their context" not in p.stderr,
              f"squad: answers reported misplaced: {p.stderr[:500]}")
        outs[threads] = out
    with h5py.File(outs[1]) as f:
        check_attrs(f, "qa", tok_json, [path], len(qs))
        check(len(qs) == 10570 and n_paragraphs == 2067, f"squad source: {len(qs)} questions, {n_paragraphs} paragraphs")
        ctx, ques, ans = texts(f, "context_text"), texts(f, "question_text"), texts(f, "answer_text")
        ids, starts, aoff = texts(f, "id"), f["answer_char_start"][:], f["answer_offsets"][:]
        check(len(ctx) == 10570 and len(set(ctx)) == len({c for c, _ in qs}), f"squad: {len(ctx)} examples, "
              f"{len(set(ctx))} distinct contexts")
        want_ans = [a for _, q in qs for a in q["answers"]]
        check(len(ans) == len(want_ans) == 34726 and int(f.attrs["n_answers"]) == len(want_ans),
              f"squad: {len(ans)} answers, source {len(want_ans)}")
        bad_ctx = bad_q = bad_a = bad_slice = 0
        for i, (c, q) in enumerate(qs):
            bad_ctx += ctx[i] != c
            bad_q += ques[i] != q["question"] or ids[i] != q["id"]
            rows = range(aoff[i], aoff[i + 1])
            bad_a += [ans[r] for r in rows] != [a["text"] for a in q["answers"]]
            bad_a += [int(starts[r]) for r in rows] != [a["answer_start"] for a in q["answers"]]
            bad_slice += any(ctx[i][starts[r]:starts[r] + len(ans[r])] != ans[r] for r in rows)
        check(bad_ctx == 0 and bad_q == 0 and bad_a == 0 and bad_slice == 0,
              f"squad: {bad_ctx} contexts, {bad_q} questions/ids, {bad_a} answers, {bad_slice} offsets differ")
        check_ids("squad contexts", ragged(f, "context_tokens"), ctx, tok)
        check_ids("squad questions", ragged(f, "question_tokens"), ques, tok)
        check_ids("squad answers", ragged(f, "answer_tokens"), ans, tok)
    check(same_datasets(outs[1], outs[max(outs)]), f"squad: the file with {max(outs)} threads differs from 1 thread's")
    print(f"squad: {len(qs)} questions, {n_paragraphs} paragraphs, {len(want_ans)} answers round-trip; ids equal HF's")
    return list(outs.values())


def test_readers(pith, files):
    for path in files:
        p = run(["h5dump", "-H", path])
        check(p.returncode == 0 and "tokens_offsets" in p.stdout and 'ATTRIBUTE "schema"' in p.stdout,
              f"h5dump -H {path}")
        p = run([pith, "data", "info", path])
        check(p.returncode == 0 and "pith.corpus" in p.stdout, f"pith data info {path}")
    print(f"h5dump -H and pith data info read {len(files)} files")


def test_killed(pith, assets, tmp, tok_json):
    """A long ingest killed half-way: no output, and the .partial is not a corpus."""
    src = os.path.join(assets, "data/arxiv/arxiv_abstracts_4000.jsonl")
    out = os.path.join(tmp, "killed.h5")
    proc = subprocess.Popen([pith, "data", "ingest", "--tokenizer", tok_json, "--format", "arxiv", "--out", out,
                             "--threads", "1", "--quiet"] + [src] * 200, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = out + ".partial"
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(partial) and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not check(not finished, "killed ingest: it finished before it could be killed"):
        return
    check(not os.path.exists(out), "killed ingest: the output file exists")
    if os.path.exists(partial):
        try:
            with h5py.File(partial) as f:
                check("schema" not in f.attrs, "killed ingest: the .partial has a schema attribute")
        except OSError:
            pass  # not even an HDF5 file: fine
        p = harness.run([pith, "data", "info", partial], ok=False, text=True)
        check(p.returncode != 0, "killed ingest: pith data info accepts the .partial")
    print("killed ingest: no output file; the .partial is not a valid corpus")


def test_synth(pith, tmp):
    dirs = [os.path.join(tmp, "synth_a"), os.path.join(tmp, "synth_b")]
    for i, d in enumerate(dirs):
        p = run([pith, "data", "synth", "--dir", d, "--docs", "400", "--seed", "3", "--threads", str(1 + 2 * i)])
        if not check(p.returncode == 0, "pith data synth"):
            return
    for name in ("docs.jsonl", "qa.jsonl", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
                 "bert_tokenizer/tokenizer.json"):
        with open(os.path.join(dirs[0], name), "rb") as x, open(os.path.join(dirs[1], name), "rb") as y:
            check(x.read() == y.read(), f"synth: {name} differs between two runs with the same seed")
    for name in ("docs.h5", "qa.h5"):
        check(same_datasets(os.path.join(dirs[0], name), os.path.join(dirs[1], name)), f"synth: {name} datasets differ")
    tok = Tokenizer.from_file(os.path.join(dirs[0], "tokenizer/tokenizer.json"))
    with open(os.path.join(dirs[0], "docs.jsonl")) as fh:
        docs = [json.loads(l) for l in fh]
    with open(os.path.join(dirs[0], "qa.jsonl")) as fh:
        qa = [json.loads(l) for l in fh]
    with h5py.File(os.path.join(dirs[0], "docs.h5")) as f:
        check(texts(f, "text") == [d["abstract"] for d in docs], "synth: docs.h5 texts")
        check_ids("synth docs", ragged(f, "tokens"), [d["abstract"] for d in docs], tok)
    with h5py.File(os.path.join(dirs[0], "qa.h5")) as f:
        ctx, ans, starts = texts(f, "context_text"), texts(f, "answer_text"), f["answer_char_start"][:]
        check(len(ctx) == len(qa) and len(ans) == len(qa), f"synth: {len(ctx)} QA examples, {len(qa)} in qa.jsonl")
        check(all(c[s:s + len(a)] == a for c, a, s in zip(ctx, ans, starts)), "synth: an answer is not at its offset")
        check(all(q["answers"][0]["text"] == a for q, a in zip(qa, ans)), "synth: answers differ from qa.jsonl")
        check_ids("synth questions", ragged(f, "question_tokens"), texts(f, "question_text"), tok)
        check_ids("synth answers", ragged(f, "answer_tokens"), ans, tok)
    # The WordPiece tokenizer for token classifiers: pith's ids are HF's, and no text of the world
    # (documents, questions) meets [UNK] (id 1).
    bert_dir = os.path.join(dirs[0], "bert_tokenizer")
    bert = Tokenizer.from_file(os.path.join(bert_dir, "tokenizer.json"))
    world = [d["abstract"] for d in docs] + [q["question"] for q in qa]
    listing = os.path.join(tmp, "world_texts.txt")
    with open(listing, "w") as f:
        f.write("\n".join(world) + "\n")
    p = run([pith, "tokenize", "--tokenizer", bert_dir, "--bos", listing])
    ours = [json.loads(l) for l in p.stdout.splitlines()]
    ref = [e.ids for e in bert.encode_batch(world)]
    check(ours == ref, f"synth bert_tokenizer: {sum(a != b for a, b in zip(ours, ref))} of {len(ref)} rows differ from HF")
    check(ref[0][0] == 2 and ref[0][-1] == 3 and not any(1 in r for r in ref), "synth bert_tokenizer: [CLS]/[SEP] or [UNK]")
    print(f"synth: deterministic; {len(docs)} documents, {len(qa)} questions; HF tokenizers gives pith's ids "
          f"(vocabulary {tok.get_vocab_size()}; the WordPiece one {bert.get_vocab_size()}, no [UNK] in the world)")


def test_existing(pith, tmp, tok_json):
    """An existing output is replaced only with --force, and a failed ingest leaves it as it was."""
    good, bad = os.path.join(tmp, "good.jsonl"), os.path.join(tmp, "bad.jsonl")
    with open(good, "w") as f:
        f.write(json.dumps({"id": "a", "abstract": "One abstract."}) + "\n")
    with open(bad, "w") as f:
        f.write("not json\n")
    out = os.path.join(tmp, "existing.h5")
    args = [pith, "data", "ingest", "--tokenizer", tok_json, "--format", "arxiv", "--quiet", "--out", out]
    check(run(args + [good]).returncode == 0, "existing: first ingest")
    with open(out, "rb") as f:
        before = hashlib.sha256(f.read()).hexdigest()

    def unchanged():
        with open(out, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == before

    p = run(args + [good])
    check(p.returncode == 1 and "existing.h5 exists; nothing written (--force replaces it)" in p.stderr and unchanged(),
          f"existing: without --force: exit {p.returncode}, {p.stderr!r}")
    p = run(args + ["--force", bad])
    check(p.returncode == 1 and "nothing written (" + out + " is as it was)" in p.stderr and unchanged(),
          f"existing: a failed --force ingest: exit {p.returncode}, {p.stderr!r}")
    p = run(args + ["--force", bad.replace("bad", "absent")])
    check(p.returncode == 1 and unchanged(), "existing: a missing input with --force")
    fresh = os.path.join(tmp, "fresh.h5")
    p = run([a if a != out else fresh for a in args] + [bad])
    check(p.returncode == 1 and "nothing written (" + fresh + " does not exist)" in p.stderr,
          f"fresh: a failed ingest: {p.stderr!r}")
    p = run(args + ["--force", good, good])
    check(p.returncode == 0 and not unchanged(), "existing: --force replaces it")
    print("existing output: kept without --force and on failure, replaced with --force")


def main():
    tok_json = harness.asset("tokenizers/llama3/tokenizer.json")
    for rel in ("data/squad/dev-v1.1.json", "data/arxiv/arxiv_abstracts_4000.jsonl",
                "data/arxiv/arxiv-metadata-oai-snapshot.first200.jsonl"):
        harness.asset(rel)
    assets = harness.assets_dir()
    pith = harness.pith_bin()
    if not shutil.which("h5dump"):
        harness.skip("h5dump is not installed (Debian: hdf5-tools)")
    tok = Tokenizer.from_file(tok_json)
    tmp = tempfile.mkdtemp(prefix="pith_ingest_rt_")
    try:
        files = test_arxiv(pith, assets, tmp, tok, tok_json)
        files += test_squad(pith, assets, tmp, tok, tok_json)
        test_readers(pith, files)
        test_killed(pith, assets, tmp, tok_json)
        test_existing(pith, tmp, tok_json)
        test_synth(pith, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if harness.MISMATCHES:
        print(f"FAILED: {len(harness.MISMATCHES)} mismatches")
        return 1
    print("ingest_roundtrip: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
