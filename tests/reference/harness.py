"""What every reference script shares: how it skips, fails, finds the pith binary and the test
assets, runs a command, and imports the peers it compares with.

A script that cannot run (a module, the binary or an asset is missing) prints "SKIP: why" and exits
77, which ctest reports as skipped; a mismatch prints "FAIL: what" and exits 1.

    import harness
    torch, transformers = harness.require("torch", "transformers")
    pith = harness.pith_bin()                       # argv[1] or PITH_BIN, else skip
    tok = harness.asset("tokenizers/llama3/tokenizer.json")   # skip when absent
    out = harness.run([pith, "tokenize", ...]).stdout
"""
import importlib
import os
import subprocess
import sys

SKIP = 77
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(SKIP)


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)


def require(*modules):
    """Import the named modules (dotted names allowed), or skip naming the one that is missing."""
    got = []
    for name in modules:
        try:
            got.append(importlib.import_module(name))
        except ImportError as e:
            skip(f"{name}: {e}")
    if "transformers" in modules:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    return got[0] if len(got) == 1 else tuple(got)


def pith_bin(from_argv=False):
    """The pith binary: sys.argv[1] when from_argv and given, else $PITH_BIN; skip when neither."""
    path = sys.argv[1] if from_argv and len(sys.argv) > 1 else os.environ.get("PITH_BIN")
    if not path:
        skip("PITH_BIN unset")
    return path


def tool_arg(name):
    """A helper binary passed as the script's first argument (llama_tool, st_dump, ...)."""
    if len(sys.argv) < 2:
        skip(f"usage: {os.path.basename(sys.argv[0])} PATH_TO_{name}")
    return sys.argv[1]


def assets_dir():
    return os.environ.get("PITH_ASSETS", os.path.join(ROOT, "..", "shared", "assets"))


def asset(rel, required=True):
    """$PITH_ASSETS/rel; skip (or None when not required) where it is absent."""
    path = os.path.join(assets_dir(), rel)
    if not os.path.exists(path):
        if required:
            skip(f"test asset {path} is absent")
        return None
    return path


def run(args, ok=True, stdin=None, timeout=600, text=False, **kw):
    """Run a command and capture its output; with ok, fail (with its stderr's tail) unless it exits 0."""
    args = [str(a) for a in args]
    p = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, text=text, **kw)
    if ok and p.returncode != 0:
        err = p.stderr if text else p.stderr.decode(errors="replace")
        fail(f"{' '.join(args)} exited {p.returncode}: {err[-2000:]}")
    return p
