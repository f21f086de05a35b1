// compress_train: the command line shared by `pith pretrain` (regeneration) and `pith finetune`
// (QA) for soft-token compressors (500x, ICAE), and by `pith lm`, which trains the base model
// itself (the demo's frozen LLM). The drivers only choose the task; the keys are train_args.h's,
// the run is trainer.h's.
#ifndef PITH_COMPRESS_TRAIN_H
#define PITH_COMPRESS_TRAIN_H

#include "train_args.h"

// argv: [command, --config FILE, key=value..., --resume, --help]; returns the exit code.
int compress_train_main(train_task task, int argc, char **argv);

#endif
