"""`pith data generate --task qa` end to end with stories260K (converted by `pith convert`) as the
writer, on a handful of TinyStories stories given as arXiv JSONL abstracts:

- the template primes each answer ("Answer: Once"; stop ","), so greedy stories260K completes
  "Once upon a time" — a span of the stories that begin so and of no other; the kept pairs, the
  drop counts and the printed summary are checked against an independent Python reading of the
  generations (FILE.generations.jsonl) under the rules of data/qa_generate.h (prompt tail, line
  parsing, whitespace normalisation, exact span);
- the QA corpus (h5py) holds exactly the kept pairs, contexts = the normalised (cut) abstracts,
  answer offsets = Python's str.find, and its provenance: the model's weights sha256, the input's,
  the template's, the decoding settings and seed (hashlib);
- sampling is reproducible by seed; a documents corpus is read as input like the JSONL;
- generations cut by max_new_tokens are dropped as truncated (nothing kept: exit 1, no corpus);
- bad inputs fail with one line naming what is wrong.

Run by ctest with PITH_BIN and PITH_ASSETS.
"""
import hashlib
import json
import os
import re
import tempfile

import harness

run = harness.pith
TEMPLATE = "Story: {abstract}\\nQuestion: How does the story begin?\\nAnswer: Once"
COMMON = ["max_abstract_words=40", f"prompt_template={TEMPLATE}", "stop=,", "max_new_tokens=20", "--threads", "1"]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def norm(s):
    return re.sub(r"[ \t\n\v\f\r]+", " ", s).strip(" ")


def stories(n):
    with open(harness.asset("data/tinystories/tinystories_val_head.txt")) as f:
        blocks = [b.strip() for b in f.read().split("\n\n") if b.strip()]
    return blocks[:n]


def reparse(text, complete, context, max_words=24, max_pairs=8):
    """data/qa_generate.h's parsing, written again: (kept pairs, drop counts)."""
    kept, drops, open_q = [], {}, None

    def drop(why):
        drops[why] = drops.get(why, 0) + 1

    lines = text.split("\n")
    for i, line in enumerate(lines):
        s = line.lstrip(" \t")
        m = re.match(r"(?i)(question:|q:|answer:|a:)", s)
        if not m:
            continue
        rest, answer = s[m.end():], None
        if m.group(1).lower() in ("question:", "q:"):
            if open_q is not None:
                drop("no_answer")
            im = re.search(r"(?i)[ \t]answer:", rest)
            if im:
                rest, answer = rest[:im.start()], rest[im.end():]
            open_q = norm(rest)
        elif open_q is None:
            drop("orphan_answer")
        else:
            answer = rest
        if answer is not None and open_q is not None:
            q, a = open_q, norm(answer)
            open_q = None
            if i == len(lines) - 1 and not complete:
                drop("truncated")
            elif not q or not a:
                drop("empty")
            elif len(a.split(" ")) > max_words:
                drop("too_long")
            elif a not in context:
                drop("not_a_span")
            elif q in [p[0] for p in kept]:
                drop("duplicate")
            elif len(kept) >= max_pairs:
                drop("over_limit")
            else:
                kept.append((q, a))
    if open_q is not None:
        drop("no_answer" if complete else "truncated")
    return kept, drops


def read_qa(path):
    h5py = harness.require("h5py")
    with h5py.File(path) as f:
        def texts(name):
            data, off = f[name][:].tobytes(), f[name + "_offsets"][:]
            return [data[off[i]:off[i + 1]].decode() for i in range(len(off) - 1)]
        return (texts("id"), texts("context_text"), texts("question_text"), texts("answer_text"),
                list(f["answer_char_start"][:]), dict(f.attrs))


def summary_counts(stdout):
    m = re.search(r"pairs generated (\d+), kept (\d+) \(from \d+ abstracts\), dropped (\d+):(.*)", stdout)
    harness.check(m, f"no summary line in:\n{stdout}")
    drops = {k: int(v) for k, v in re.findall(r" (\w+) (\d+)", m.group(4))}
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), drops


def check_run(model, inp, out, stdout, abstracts):
    gens = [json.loads(l) for l in open(out[:-3] + ".generations.jsonl")]
    harness.check([g["id"] for g in gens] == [a["id"] for a in abstracts], "generations: ids or order differ")
    want_kept, want_drops = [], {}
    for g, a in zip(gens, abstracts):
        context = " ".join(norm(a["abstract"]).split(" ")[:40])
        tail = "Question: How does the story begin?\nAnswer: Once"
        kept, drops = reparse(tail + g["generation"], g["ended"] != "max_new_tokens", context)
        harness.check(g["kept"] == len(kept), f"{g['id']}: pith kept {g['kept']}, the Python reading {len(kept)}")
        want_kept += [(f"{a['id']}#q{k + 1}", context, q, ans) for k, (q, ans) in enumerate(kept)]
        for k, v in drops.items():
            want_drops[k] = want_drops.get(k, 0) + v
    seen, kept_n, dropped, drops = summary_counts(stdout)
    harness.check(kept_n == len(want_kept) and seen == kept_n + dropped, f"summary {seen}/{kept_n}/{dropped}")
    harness.check({k: v for k, v in drops.items() if v} == want_drops, f"drops {drops} vs Python's {want_drops}")
    return want_kept, gens


def main():
    harness.pith_bin()
    harness.stories_assets()
    h5py = harness.require("h5py")
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "stories260K")
        harness.convert_stories(model)
        abstracts = [{"id": f"ts-{i}", "title": f"Story {i}", "abstract": s} for i, s in enumerate(stories(8))]
        inp = os.path.join(tmp, "abstracts.jsonl")
        with open(inp, "w") as f:
            for a in abstracts:
                f.write(json.dumps(a) + "\n")
        begins = sum(norm(a["abstract"]).startswith("Once upon a time") for a in abstracts)
        harness.check(0 < begins < len(abstracts), f"the test stories: {begins} of {len(abstracts)} begin 'Once upon a time'")

        # Greedy: every kept answer is a span; the corpus holds exactly the kept pairs.
        out = os.path.join(tmp, "qa.h5")
        p = run("data", "generate", "--task", "qa", "--model", model, "--input", inp, "--out", out, "temperature=0",
                *COMMON)
        print(p.stdout.strip())
        want, gens = check_run(model, inp, out, p.stdout, abstracts)
        harness.check(len(want) >= begins, f"kept {len(want)} pairs; {begins} stories begin with the primed answer")
        ids, contexts, questions, answers, starts, attrs = read_qa(out)
        harness.check(list(zip(ids, contexts, questions, answers)) == want, f"corpus rows differ from the kept pairs")
        harness.check(all(c.find(a) == s for c, a, s in zip(contexts, answers, starts)), f"answer offsets {starts}")
        cmd = attrs["command"]
        for want_text in (f"model_weights_sha256={sha256(os.path.join(model, 'model.safetensors'))}",
                          f"input_sha256={sha256(inp)}", "temperature=0 ", "seed=42 ", "max_new_tokens=20 ",
                          "prompt_template_sha256=" + hashlib.sha256(
                              TEMPLATE.replace("\\n", "\n").encode()).hexdigest(), f"model={model}"):
            harness.check(want_text in cmd, f"provenance lacks {want_text!r}: {cmd}")
        harness.check(attrs["kind"] == "qa" and list(attrs["source_paths"]) == [out[:-3] + ".qa.jsonl"], "corpus attrs")
        info = run("data", "info", out).stdout
        harness.check("qa" in info, f"pith data info: {info}")
        print(f"greedy: {len(want)} pairs kept of {len(gens)} abstracts, matching the Python reading; corpus and "
              f"provenance checked")

        # Sampling: the same seed, the same generations; a documents corpus as input reads the same texts.
        outs = []
        for name in ("s1.h5", "s2.h5"):
            o = os.path.join(tmp, name)
            p = run("data", "generate", "--task", "qa", "--model", model, "--input", inp, "--out", o, "temperature=0.8",
                    "seed=7", *COMMON, ok=False)
            harness.check(p.returncode in (0, 1), f"sampled run: exit {p.returncode}: {p.stderr}")
            outs.append([json.loads(l)["generation"] for l in open(o[:-3] + ".generations.jsonl")])
        harness.check(outs[0] == outs[1], "the same seed gave different generations")
        docs = os.path.join(tmp, "docs.h5")
        run("data", "ingest", "--format", "arxiv", "--tokenizer", model, "--out", docs, "--quiet", inp)
        o = os.path.join(tmp, "from_docs.h5")
        run("data", "generate", "--task", "qa", "--model", model, "--input", docs, "--out", o, "temperature=0", *COMMON)
        harness.check(read_qa(o)[:4] == read_qa(out)[:4], "a documents corpus as input gave other pairs")
        print("sampling reproducible by seed; a documents corpus reads as the JSONL")

        # Cut by max_new_tokens: the primed answers are incomplete, nothing is kept.
        o = os.path.join(tmp, "cut.h5")
        args = [a if a != "max_new_tokens=20" else "max_new_tokens=1" for a in COMMON]
        p = run("data", "generate", "--task", "qa", "--model", model, "--input", inp, "--out", o, "temperature=0",
                *args, ok=False)
        seen, kept_n, dropped, drops = summary_counts(p.stdout)
        harness.check(p.returncode == 1 and kept_n == 0 and drops.get("truncated") == len(abstracts) and
                      "no pair was kept" in p.stderr and not os.path.exists(o), f"max_new_tokens=1: {p.stdout} {p.stderr}")
        print(f"max_new_tokens=1: {drops['truncated']} truncated, nothing written")

        # Bad inputs: one line naming what is wrong.
        bad = os.path.join(tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write(json.dumps(abstracts[0]) + "\n" + json.dumps({"id": "x", "summary": "no abstract"}) + "\n")
        base = ["data", "generate", "--task", "qa", "--model", model]
        cases = [
            (["--input", bad, "--out", os.path.join(tmp, "b.h5")], [bad + ":2", "no \"abstract\""]),
            (["--input", inp, "--out", os.path.join(tmp, "b.h5"), "prompt_template=Q: {title}"], ["no {abstract}"]),
            (["--input", inp, "--out", os.path.join(tmp, "b.h5"), "prompt_template={abstract} {abstrct}"],
             ["{abstrct}"]),
            (["--input", inp, "--out", out], [out, "exists", "--force"]),
            (["--input", inp, "--out", os.path.join(tmp, "b.jsonl")], ["FILE.h5"]),
            (["--input", os.path.join(tmp, "none.jsonl"), "--out", os.path.join(tmp, "b.h5")], ["none.jsonl"]),
            (["--input", inp, "--out", os.path.join(tmp, "b.h5"), "temprature=1"], ["temprature"]),
            (["--input", inp, "--out", os.path.join(tmp, "b.h5"), "top_p=0"], ["top_p"]),
        ]
        for extra, wants in cases:
            p = run(*base, *extra, ok=False)
            err = p.stderr.strip()
            harness.check(p.returncode == 1 and len(err.splitlines()) == 1 and all(w in err for w in wants),
                          f"{extra}: exit {p.returncode}, stderr {err!r} lacks {wants}")
            harness.check(not os.path.exists(os.path.join(tmp, "b.h5")), f"{extra}: left b.h5 behind")
        print(f"{len(cases)} bad inputs refused with one line")
    print("data_generate_qa: OK")


if __name__ == "__main__":
    main()
