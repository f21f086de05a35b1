// train_state: training checkpoints that let `--resume` continue a run bit-exactly (on CPU).
//
// A checkpoint holds what the next step depends on: the trainable tensors (in their own dtype, so
// the bytes come back unchanged), AdamW's exp_avg / exp_avg_sq and step count, the data loader's
// cursor (one line), the RNG states (opaque bytes from pt_gen_get_state), the step, and the
// resolved config text. It is a folder, built beside its final name and renamed into place once
// complete, so a crash at any moment leaves either the previous checkpoints or the new one:
//
//   RUN_DIR/checkpoints/step-00001200/       (step printed with at least 8 digits)
//     params.safetensors     the trainable tensors under their names; __metadata__: format,
//                            format_version, step
//     optimizer.safetensors  exp_avg.NAME and exp_avg_sq.NAME per tensor; __metadata__: format,
//                            format_version, steps (AdamW's step count). Absent when saved
//                            without an optimizer.
//     state.json             the manifest: {"format": "pith-train-state", "format_version": 1,
//                            "step", "optimizer_steps" (or null), "loader_cursor" (or null),
//                            "rng": {"encoding": "base64", "bytes": N, "data"} (or null),
//                            "tensors": [{"name", "dtype", "shape"}, ...] in the caller's order,
//                            "files": {"params.safetensors": BYTES, ...}, "created" (UTC ISO 8601),
//                            "created_unix", "pith_version", "libtorch_version", "metrics"}
//     config.yaml            the resolved config (absent when none was given)
//     DONE                   written last: the folder is complete
//
// While being written the folder is named step-NNNNNNNN.tmp-PID; a checkpoint being deleted is
// first renamed step-NNNNNNNN.del-PID. Readers look only at folders named step-DIGITS that hold
// DONE. A later save removes temp/del folders whose process is gone (a crashed save).
//
// Test hook: when the environment variable PITH_TRAIN_STATE_PAUSE_MS is a positive number, a save
// sleeps that many milliseconds after each file it writes in the temp folder (and after DONE,
// before the rename), so a test can kill it at a known point. Leave it unset in real runs.
//
// Errors are one line naming the file and the problem, in a pith_err (data/base.h). Shim errors
// met on the way are moved into the pith_err and cleared; a save or load refuses to start while a
// shim error is pending.
#ifndef PITH_TRAIN_STATE_H
#define PITH_TRAIN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "torch_shim.h"

#define TRAIN_STATE_FORMAT "pith-train-state"
#define TRAIN_STATE_VERSION 1          // the state.json / safetensors metadata version written
#define TRAIN_STATE_DONE "DONE"

typedef struct {
  int n;                            // trainable tensors
  pt_tensor *const *params;         // (n) kept handles, any shape/dtype (saved in their own dtype)
  const char *const *names;         // (n) unique non-empty names, e.g. "lora.0.q_proj.A", "compress"
  pt_adamw *opt;                    // built over params in the same order (its exp_avg/exp_avg_sq
                                    // i belong to params[i]) with its step count; may be NULL
  int64_t step;                     // optimizer steps done (names the folder), >= 0
  const char *loader_cursor;        // one line (no newline), may be NULL
  const void *rng; size_t rng_len;  // (rng_len) opaque RNG bytes, may be NULL/0
  const char *config_yaml;          // resolved config text, may be NULL
  const char *metrics_json;         // a small JSON value (e.g. {"loss": 2.31}) for the manifest,
                                    // may be NULL; must parse as JSON
  const char *pith_version;         // recorded in the manifest; NULL means "dev"
} train_state;

// Write RUN_DIR/checkpoints/step-%08lld/ atomically (RUN_DIR and checkpoints/ are created when
// missing): every file fsynced in a temp folder beside it, DONE last, the folder fsynced, renamed
// to its final name (an existing checkpoint of the same step is swapped out and removed), the
// parent fsynced. Then complete checkpoints beyond the newest keep_last (by step) are removed
// (0 = keep all); the one just written is never removed. 0, or -1 with err.
int train_state_save(const char *run_dir, const train_state *s, int keep_last, pith_err *err);

// The newest (highest step) folder under RUN_DIR/checkpoints named step-DIGITS that holds DONE;
// temp folders and folders without DONE are ignored. 0 with its path in path (len bytes), 1 when
// there is none (or no checkpoints folder), -1 on error.
int train_state_latest(const char *run_dir, char *path, size_t len, pith_err *err);

// Load a checkpoint folder into the given tensors (names must match the saved ones exactly, as a
// set; each with the same shape and dtype) and, when opt is not NULL, into the optimizer (built
// over params in the same order; the checkpoint must have optimizer state). Everything is checked
// before anything is copied, so a failed load leaves params and opt untouched. Out-pointers may be
// NULL when not wanted: *step the step; *loader_cursor a malloc'd copy or NULL when none was saved;
// *rng malloc'd bytes (NULL when none) and *rng_len their count. On error they are NULL/0 and
// nothing needs freeing. 0, or -1 with err.
int train_state_load(const char *ckpt_dir, pt_tensor *const *params, const char *const *names, int n,
                     pt_adamw *opt, int64_t *step, char **loader_cursor, void **rng, size_t *rng_len,
                     pith_err *err);

#endif
