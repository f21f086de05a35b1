// trainer: one training run of `pith pretrain`, `pith finetune` or `pith lm`, from typed arguments
// to a finished run folder: tokenizer, model (and compressor), loader → steps of AdamW → the
// progress line, metrics.jsonl, validation losses, checkpoints (resumable bit for bit on CPU),
// and for `pith lm` RUN/model. SIGINT/SIGTERM save a checkpoint and stop.
#ifndef PITH_TRAINER_H
#define PITH_TRAINER_H

#include "run_config.h"
#include "train_args.h"

// a: read from cfg (which each checkpoint records). run_dir is created, with cfg saved as
// config.yaml, once the model and data have loaded, so a run refused before that leaves nothing.
// resume: continue from the newest complete checkpoint in run_dir. cmd names the command in
// messages ("pretrain"). 0 when done; 128 + N when signal N stopped it (after saving a
// checkpoint), the shell's exit status for it; -1 with err.
int trainer_run(const train_args *a, const run_config *cfg, const char *run_dir, int resume, const char *cmd,
                pith_err *err);

#endif
