"""TensorBoard reads what `pith lm` writes: the run folder's events files (every record's CRCs
checked by TensorBoard's own record reader, the first one file_version "brain.Event:2") give,
through `tensorboard`'s EventAccumulator, every scalar of metrics.jsonl under its name at its step
with its value (1e-6 relative, as float32), and nothing else. A run resumed after a kill (its last
checkpoint removed, so it resumes from an earlier one and logs those steps again) shows each step
once; a run resumed with TensorBoard turned on after a stretch without it shows the whole history;
a new run in an old folder shows only itself; tensorboard=false writes no events file; a bad value for the key fails in one line.

Run by ctest with PITH_BIN (the pith binary).
"""
import json
import math
import os
import shutil
import struct
import tempfile

import harness
import tiny_world

run = harness.pith


def metrics_scalars(run_dir):
    """{(tag, step): value} of every number in metrics.jsonl but the step; fails on a duplicate."""
    out = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            for k, v in rec.items():
                if k == "step" or not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                if (k, rec["step"]) in out:
                    harness.fail(f"{run_dir}/metrics.jsonl: {k} at step {rec['step']} twice")
                out[(k, rec["step"])] = v
    return out


def events_files(run_dir):
    return sorted(n for n in os.listdir(run_dir) if n.startswith("events.out.tfevents."))


def check_records(run_dir):
    """Every events file reads through TensorBoard's record reader (which checks both CRCs of each
    record); its first event is the file_version."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
    n = 0
    for name in events_files(run_dir):
        path = os.path.join(run_dir, name)
        reader = pywrap_tensorflow.PyRecordReader_New(path.encode())
        first = True
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                break
            except errors.DataLossError as e:
                harness.fail(f"{path}: TensorBoard's record reader: {e}")
            ev = event_pb2.Event.FromString(reader.record())
            if first and ev.file_version != "brain.Event:2":
                harness.fail(f"{path}: first event {ev}")
            first = False
            n += 1
    return n


def tensorboard_scalars(run_dir):
    """{(tag, step): [values]} as TensorBoard's EventAccumulator reads the folder."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    acc = ea.EventAccumulator(run_dir, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        for e in acc.Scalars(tag):
            out.setdefault((tag, e.step), []).append(e.value)
    return out


def compare(run_dir, what):
    want, got = metrics_scalars(run_dir), tensorboard_scalars(run_dir)
    records = check_records(run_dir)
    if not want:
        harness.fail(f"{what}: metrics.jsonl holds no scalar")
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        harness.fail(f"{what}: TensorBoard lacks {missing[:8]} and has what metrics.jsonl lacks {extra[:8]}")
    for key, v in sorted(want.items()):
        vals = got[key]
        if len(vals) != 1:
            harness.fail(f"{what}: TensorBoard holds {key} {len(vals)} times: {vals}")
        ref = struct.unpack("f", struct.pack("f", v))[0]  # the float32 an event holds
        if not math.isclose(vals[0], ref, rel_tol=1e-6, abs_tol=1e-30):
            harness.fail(f"{what}: {key}: TensorBoard {vals[0]!r}, metrics.jsonl {v!r}")
    tags = sorted({k for k, _ in want})
    print(f"{what}: {len(want)} scalars ({', '.join(tags)}) in {len(events_files(run_dir))} events file(s), "
          f"{records} records, equal to metrics.jsonl")
    return tags


def main():
    harness.pith_bin()
    harness.require("tensorboard.backend.event_processing.event_accumulator")
    with tempfile.TemporaryDirectory() as tmp:
        world, vocab = tiny_world.make_world(tmp, 60)
        shape = tiny_world.write_shape(os.path.join(tmp, "shape.json"), vocab, hidden=32, layers=2, heads=2, kv_heads=1)
        common = [f"model_config={shape}", f"tokenizer={os.path.join(world, 'tokenizer')}",
                  f"train_file={os.path.join(world, 'qa.h5')}", "per_device_train_batch_size=2", "cutoff_len=64",
                  "max_target_len=32", "learning_rate=1e-2", "warmup_steps=2", "logging_steps=1", "eval_steps=3",
                  "eval_batches=1", "threads=1", "seed=3", "peak_tflops=0.001"]

        full = os.path.join(tmp, "full")
        run("lm", *common, "max_steps=8", f"output_dir={full}")
        tags = compare(full, "lm, 8 steps")
        for t in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "val_loss"):
            if t not in tags:
                harness.fail(f"no {t} among the scalars {tags}")

        # A new run (no --resume) in the same folder: the first run's events go with its metrics.
        run("lm", *common, "max_steps=2", f"output_dir={full}")
        if len(events_files(full)) != 1:
            harness.fail(f"a new run in an old folder left {events_files(full)}")
        compare(full, "lm, 2 steps over the 8-step run's folder")

        # A kill after step 8 logged but before its checkpoint: the resume starts from step 4 and
        # logs 5..8 again; the first run's events after step 4 must not linger.
        part = os.path.join(tmp, "part")
        run("lm", *common, "max_steps=8", "save_steps=4", f"output_dir={part}")
        ckpts = sorted(os.listdir(os.path.join(part, "checkpoints")))
        if len(ckpts) < 2:
            harness.fail(f"expected checkpoints at steps 4 and 8: {ckpts}")
        shutil.rmtree(os.path.join(part, "checkpoints", ckpts[-1]))
        before = events_files(part)
        p = run("lm", *common, "max_steps=8", "save_steps=4", f"output_dir={part}", "--resume")
        after = events_files(part)
        if len(after) != len(before) + 1 or after[:len(before)] != before:
            harness.fail(f"resume: events files {before} -> {after} (want one more, sorting last)")
        compare(part, "lm resumed from step 4 after a kill at 8")

        # TensorBoard off for the first 4 steps, on for the resumed rest: the whole history.
        late = os.path.join(tmp, "late")
        run("lm", *common, "max_steps=4", "tensorboard=false", f"output_dir={late}")
        if events_files(late):
            harness.fail(f"tensorboard=false wrote {events_files(late)}")
        run("lm", *common, "max_steps=6", f"output_dir={late}", "--resume")
        steps = {s for (t, s) in metrics_scalars(late) if t == "loss"}
        if steps != set(range(1, 7)):
            harness.fail(f"late: loss logged at {sorted(steps)}")
        compare(late, "lm, tensorboard=false for 4 steps then resumed with it on to 6")

        p = run("lm", *common, "max_steps=1", "tensorboard=maybe", f"output_dir={os.path.join(tmp, 'bad')}", ok=False)
        if p.returncode == 0 or "tensorboard" not in p.stderr or "maybe" not in p.stderr:
            harness.fail(f"tensorboard=maybe: exit {p.returncode}, stderr {p.stderr!r}")
        print(f"tensorboard=maybe refused: {p.stderr.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
