"""`pith tokenize` never answers something other than what it was given: a NUL or invalid UTF-8 in
a text is refused with the place, in the same words `pith data ingest` uses for the same bytes (HF
tokenizers encodes "ab\\0cd" to three ids; pith used to stop at the NUL and print one); ids decode to
their whole text, NULs included (against HF's decode); and a --decode line that is not a list of
token ids is refused naming the item, where `true` read as 1 and 1.5 or 2^32+371 as "id -1" before.
"""
import json
import os
import tempfile

import harness


def main():
    Tokenizer = harness.require("tokenizers").Tokenizer
    tok_json = harness.asset("tokenizers/llama3/tokenizer.json")
    harness.pith_bin()
    hf = Tokenizer.from_file(tok_json)
    pith = lambda args, data: harness.run([harness.pith_bin(), "tokenize", "--tokenizer", tok_json, *args],
                                          ok=False, stdin=data)

    # A NUL: HF encodes it; pith refuses it (plain lines and JSONL), as ingest does.
    ids = hf.encode("ab\0cd", add_special_tokens=False).ids
    harness.check(len(ids) == 3, f"HF encodes 'ab\\0cd' to {ids}")
    for args, data, want in (
            (["--jsonl"], b'{"text": "ab\\u0000cd"}\n', "-:1: a NUL byte at byte 3 of the field 'text'"),
            ([], b"ab\0cd\n", "-:1: a NUL byte at byte 3 of the line"),
            ([], b"ab\xffcd\n", "-:1: invalid UTF-8 at byte 3 of the line (byte 0xFF)")):
        p = pith(args, data)
        err = p.stderr.decode()
        harness.check(p.returncode == 1 and want in err and p.stdout == b"",
                      f"tokenize {args} {data!r}: exit {p.returncode}, stdout {p.stdout!r}, stderr {err!r}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, data, fmt, want in (
                ("nul.txt", b"ab\0cd\n", "text", "nul.txt:1: a NUL byte at byte 3 of the line"),
                ("bad.txt", b"ab\xffcd\n", "text", "bad.txt:1: invalid UTF-8 at byte 3 of the line (byte 0xFF)"),
                ("nul.jsonl", b'{"id": "a", "abstract": "ab\\u0000cd"}\n', "arxiv", "NUL character")):
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(data)
            p = harness.pith("data", "ingest", "--tokenizer", tok_json, "--format", fmt, "--quiet", "--out",
                             os.path.join(tmp, name + ".h5"), path, ok=False)
            harness.check(p.returncode == 1 and want in p.stderr, f"ingest {name}: {p.stderr!r}")
    print(f"a NUL (HF: {ids}) and invalid UTF-8 refused by tokenize and ingest alike, with the byte")

    # Decoding: the whole text, NUL included, as HF decodes it.
    want = hf.decode(ids, skip_special_tokens=False)
    p = pith(["--decode", "--jsonl"], (json.dumps(ids) + "\n").encode())
    got = json.loads(p.stdout.decode())["text"] if p.returncode == 0 else None
    harness.check(got == want, f"decode {ids}: {got!r}, HF {want!r} ({p.stderr.decode()!r})")
    p = pith(["--decode"], (json.dumps(ids) + "\n").encode())
    harness.check(p.stdout == want.encode() + b"\n", f"decode {ids} plain: {p.stdout!r}")
    print(f"decode {ids}: {got!r}, as HF")

    for line, want in (("[370, true]", "item 2 (column 7): true is not a token id"),
                       ("[1.5]", "item 1 (column 2): 1.5 is not a token id"),
                       ("[4294967667]", "item 1 (column 2): 4294967667 is not a token id"),
                       ("[-1]", "-1 is not a token id"),
                       ('[1, "x"]', "item 2 (column 5): a string is not a token id"),
                       ("{}", "not a JSON array of ids (an object)"),
                       ("[1,", "bad JSON at column")):
        p = pith(["--decode"], (line + "\n").encode())
        err = p.stderr.decode()
        harness.check(p.returncode == 1 and want in err, f"decode {line}: exit {p.returncode}, {err!r}")
    p = pith(["--decode"], b"[128255]\n")
    harness.check(p.returncode == 0, "decode of the last id")
    p = pith(["--decode"], b"[128256]\n")
    harness.check(p.returncode == 1 and "id 128256 is not in the vocabulary" in p.stderr.decode(), "decode past the vocabulary")
    print("bad --decode lines refused, naming the item")

    # A GPT-2 style folder without its merges says so (it once reported vocab.json's lack of a "model").
    with tempfile.TemporaryDirectory() as tmp:
        gpt2 = harness.asset("tokenizers/gpt2/vocab.json")
        with open(gpt2, "rb") as f, open(os.path.join(tmp, "vocab.json"), "wb") as g:
            g.write(f.read())
        p = harness.pith("tokenize", "--tokenizer", tmp, ok=False, stdin="x\n")
        harness.check(p.returncode == 1 and "vocab.json needs merges.txt beside it" in p.stderr, p.stderr)
    print("a vocab.json without merges.txt is named as such")


if __name__ == "__main__":
    main()
