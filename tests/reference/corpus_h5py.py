"""h5py and h5dump read what pith's corpus writer wrote.

tests/corpus_sample.c writes a documents file and a QA file from simple formulas; this script
regenerates the same records in Python and compares them with what h5py reads: the datasets and
attributes documented in data/README.md, their dtypes, chunking and compression, every token and
every text byte, the split of every id (recomputed here with hashlib from the documented rule), and
the answers' code-point offsets (Python str slicing of the context must give the answer). Then
`h5dump -H` must read both files, and `pith data info` (when the binary is built) must describe them.

usage: corpus_h5py.py CORPUS_SAMPLE_BINARY
Exit 0 on success, 1 on any mismatch, 77 (skip, reason printed) when h5py or h5dump is missing.
"""
import hashlib
import os
import shutil
import sys
import tempfile

import harness
from harness import expect as check

h5py, np = harness.require("h5py", "numpy")

VOCAB = 5000


def split_of(id_, val_fraction, test_fraction):
    """The documented rule: first 8 bytes of sha256(id), big-endian, mod 1e6, against thresholds."""
    b = int.from_bytes(hashlib.sha256(id_.encode()).digest()[:8], "big") % 1_000_000
    if b < round(test_fraction * 1_000_000):
        return 2
    if b < round((test_fraction + val_fraction) * 1_000_000):
        return 1
    return 0


def ragged(f, name, i):
    off = f[name + "_offsets"]
    return f[name][off[i]:off[i + 1]]


def text(f, name, i):
    return bytes(ragged(f, name, i)).decode("utf-8")


def check_common(f, kind, n, command, val, test):
    a = f.attrs
    check(a["schema"] == "pith.corpus", f"schema attr {a['schema']!r}")
    check(int(a["schema_version"]) == 1, "schema_version")
    check(a["kind"] == kind, f"kind {a['kind']!r}")
    fp = hashlib.sha256(b"pith-test-tokenizer").hexdigest()
    check(a["tokenizer_sha256"] == fp, "tokenizer_sha256")
    check(int(a["vocab_size"]) == VOCAB, "vocab_size")
    check(a["command"] == command, f"command {a['command']!r}")
    check(float(a["val_fraction"]) == val and float(a["test_fraction"]) == test, "fractions")
    check(int(a["n_records"]) == n, "n_records")
    check("split_rule" in a, "split_rule attribute")
    ids = [text(f, "id", i) for i in range(n)]
    want = [split_of(x, val, test) for x in ids]
    check(list(f["split"][:]) == want, "split of every id (hashlib recomputation)")
    counts = [want.count(s) for s in range(3)]
    check([int(a["n_train"]), int(a["n_val"]), int(a["n_test"])] == counts, f"split counts {counts}")
    for name, ds in f.items():
        check(ds.ndim == 1, f"{name} is 1-D")
        check(ds.chunks is not None and ds.compression == "gzip", f"{name} chunked + deflate")
        if name.endswith("_offsets"):
            check(ds.dtype == np.int64 and ds[0] == 0, f"{name} int64 from 0")
            check(bool(np.all(np.diff(ds[:]) >= 0)), f"{name} non-decreasing")
    return ids


def check_docs(path):
    with h5py.File(path, "r") as f:
        want_names = {"id", "id_offsets", "split", "tokens", "tokens_offsets", "text", "text_offsets"}
        check(set(f.keys()) == want_names, f"documents datasets {sorted(f.keys())}")
        ids = check_common(f, "documents", 300, "corpus_sample docs", 0.1, 0.1)
        check(list(f.attrs["source_paths"]) == ["arxiv/abstracts.jsonl", "arxiv/more.jsonl"], "source_paths")
        check(list(f.attrs["source_sha256"]) == ["00112233", "44556677"], "source_sha256")
        check(f["tokens"].dtype == np.int32 and f["text"].dtype == np.uint8, "dtypes")
        total = 0
        for i in range(300):
            n = (i * 37) % 97
            total += n
            toks = [(i * 131 + j * 17) % VOCAB for j in range(n)]
            check(ids[i] == f"doc-{i}", f"id {i}")
            check(list(ragged(f, "tokens", i)) == toks, f"tokens of doc {i}")
            check(text(f, "text", i) == f"Document {i}: café 漢字 🙂 " + "x" * (i % 7), f"text of doc {i}")
        check(int(f.attrs["n_tokens"]) == total, "n_tokens")


def check_qa(path):
    with h5py.File(path, "r") as f:
        want_names = {"id", "id_offsets", "split", "answer_offsets", "answer_char_start"}
        for col in ("context", "question", "answer"):
            want_names |= {f"{col}_tokens", f"{col}_tokens_offsets", f"{col}_text", f"{col}_text_offsets"}
        check(set(f.keys()) == want_names, f"qa datasets {sorted(f.keys())}")
        ids = check_common(f, "qa", 120, "corpus_sample qa", 0.2, 0.1)
        check(len(f.attrs["source_paths"]) == 0, "no sources")
        check(int(f.attrs["n_answers"]) == sum(i % 3 for i in range(120)), "n_answers")
        ao = f["answer_offsets"][:]
        for i in range(120):
            check(ids[i] == f"qa-{i}", f"id {i}")
            ctx = text(f, "context_text", i)
            check(ctx == f"Context {i}: été answer{i} end", f"context {i}")
            check(list(ragged(f, "context_tokens", i)) == [(i + j) % VOCAB for j in range(10 + i % 5)], f"ctx tok {i}")
            check(text(f, "question_text", i) == f"What is {i}?", f"question {i}")
            check(list(ragged(f, "question_tokens", i)) == [(i * 3 + j) % VOCAB for j in range(4)], f"q tok {i}")
            check(ao[i + 1] - ao[i] == i % 3, f"answer count {i}")
            for k in range(ao[i + 1] - ao[i]):
                row = ao[i] + k
                ans = text(f, "answer_text", row)
                check(ans == [f"answer{i}", "end", "zzz"][k], f"answer {i}.{k}")
                toks = [(i * 7 + k * 11 + j) % VOCAB for j in range(k + 1)]
                check(list(ragged(f, "answer_tokens", row)) == toks, f"answer tokens {i}.{k}")
                start = int(f["answer_char_start"][row])
                if k < 2:
                    check(ctx[start:start + len(ans)] == ans, f"answer {i}.{k} at code point {start}")
                else:
                    check(start == -1, f"answer {i}.{k} has no offset")


def check_h5dump(paths):
    h5dump = shutil.which("h5dump")
    if not h5dump:
        harness.skip("h5dump not found (Debian package hdf5-tools)")
    for p in paths:
        r = harness.run([h5dump, "-H", p], ok=False, text=True)
        check(r.returncode == 0, f"h5dump -H {p} exit {r.returncode}: {r.stderr[-300:]}")
        check('ATTRIBUTE "schema"' in r.stdout and 'DATASET "id_offsets"' in r.stdout, f"h5dump header of {p}")
        check("H5T_STD_I64LE" in r.stdout and "H5T_STD_I32LE" in r.stdout, f"h5dump types of {p}")


def check_info(docs, qa):
    pith = os.environ.get("PITH_BIN", "")
    if not (pith and os.access(pith, os.X_OK)):
        print(f"note: pith binary not built ({pith or 'PITH_BIN unset'}); `pith data info` not checked")
        return
    r = harness.run([pith, "data", "info", docs], ok=False, text=True)
    check(r.returncode == 0, f"pith data info exit {r.returncode}: {r.stderr}")
    for want in ("documents", "300", "arxiv/abstracts.jsonl", "pith.corpus"):
        check(want in r.stdout, f"pith data info mentions {want!r}")
    r = harness.run([pith, "data", "info", qa], ok=False, text=True)
    check(r.returncode == 0 and "qa" in r.stdout and "120" in r.stdout, "pith data info on the qa file")


def write_with_h5py(path):
    """A corpus made by h5py alone, following data/README.md (contiguous datasets, int64 attributes)."""
    docs = [("a", [1, 2, 3], "héllo"), ("b", [], ""), ("c", [4] * 40, "x" * 40)]
    with h5py.File(path, "w") as f:
        for name, rows in (("id", [d[0].encode() for d in docs]), ("text", [d[2].encode() for d in docs])):
            f[name] = np.frombuffer(b"".join(rows), dtype=np.uint8)
            f[name + "_offsets"] = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
        f["tokens"] = np.array(sum((d[1] for d in docs), []), dtype=np.int32)
        f["tokens_offsets"] = np.cumsum([0] + [len(d[1]) for d in docs]).astype(np.int64)
        f["split"] = np.array([split_of(d[0], 0.5, 0.0) for d in docs], dtype=np.uint8)
        a = f.attrs
        a["schema"], a["schema_version"], a["kind"] = "pith.corpus", 1, "documents"
        a["tokenizer_sha256"], a["vocab_size"], a["command"] = "py", 10, "corpus_h5py.py"
        a["source_paths"], a["source_sha256"] = ["in.txt"], ["ab" * 32]
        a["val_fraction"], a["test_fraction"] = 0.5, 0.0
        a["n_records"], a["n_answers"], a["n_tokens"] = 3, 0, 43
        counts = [int((f["split"][:] == s).sum()) for s in range(3)]
        a["n_train"], a["n_val"], a["n_test"] = counts


def check_python_written(d):
    pith = os.environ.get("PITH_BIN", "")
    if not (pith and os.access(pith, os.X_OK)):
        print("note: pith binary not built; the h5py-written corpus is not read back by pith")
        return
    path = os.path.join(d, "from_python.h5")
    write_with_h5py(path)
    r = harness.run([pith, "data", "info", path], ok=False, text=True)
    check(r.returncode == 0 and "records      3" in r.stdout and "in.txt" in r.stdout,
          f"pith reads an h5py-written corpus: {r.stdout[-400:]} {r.stderr}")


def main():
    sample = harness.tool_arg("corpus_sample")
    with tempfile.TemporaryDirectory(prefix="pith_corpus_h5py_") as d:
        docs, qa = os.path.join(d, "docs.h5"), os.path.join(d, "qa.h5")
        harness.run([sample, docs, qa], text=True)
        check(sorted(os.listdir(d)) == ["docs.h5", "qa.h5"], f"only the final files remain: {os.listdir(d)}")
        check_docs(docs)
        check_qa(qa)
        check_h5dump([docs, qa])
        check_info(docs, qa)
        check_python_written(d)
    print(f"corpus_h5py: {len(harness.MISMATCHES)} mismatches")
    return 1 if harness.MISMATCHES else 0


if __name__ == "__main__":
    sys.exit(main())
