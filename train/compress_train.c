// compress_train: the command line of `pith pretrain`, `pith finetune` and `pith lm`: arguments →
// the resolved config (saved in the run folder) → typed arguments → one training run (trainer.h).
#include "compress_train.h"

#include <stdio.h>
#include <string.h>

#include "run_config.h"
#include "train_args.h"
#include "trainer.h"

static const char *task_name(train_task task) {
  return task == TRAIN_PRETRAIN ? "pretrain" : task == TRAIN_FINETUNE ? "finetune" : "lm";
}

static void usage(train_task task, FILE *out) {
  rc_key schema[TRAIN_ARGS_MAX_KEYS];
  int n = train_args_schema(task, schema);
  if (task == TRAIN_LM) {
    fprintf(out,
            "usage: pith lm --config FILE.yaml [key=value ...] [--resume]\n\n"
            "Trains a base language model, every weight: from random weights shaped by model_config (a\n"
            "config.json), or continuing a model folder. Documents train as [bos] text eos; a QA corpus as\n"
            "[bos] context \"Question: \" question \" Answer: \" answer eos, the prompt the compressors'\n"
            "decoder reads. The trained model is written to RUN/model (config.json, model.safetensors and\n"
            "the tokenizer's files). Checkpoints, --resume and signals work as in pith pretrain.\n\nkeys:\n");
    run_config_print_schema(out, schema, n);
    return;
  }
  const char *name = task_name(task);
  fprintf(out,
          "usage: pith %s --config FILE.yaml [key=value ...] [--resume]\n\n"
          "%s a soft-token compressor (500xCompressor or ICAE) on a frozen LLaMA-family model.\n"
          "Every key can be set in the YAML file or on the command line; the resolved config is saved\n"
          "in the run folder with metrics.jsonl and checkpoints/. --resume continues from the newest\n"
          "checkpoint of the run. SIGINT/SIGTERM save a checkpoint and stop.\n\nkeys:\n",
          name, task == TRAIN_PRETRAIN ? "Pretrains (text regeneration)" : "Fine-tunes (extractive QA)");
  run_config_print_schema(out, schema, n);
}

// The run: config → typed arguments → trainer. 0, 128 + N (signal N stopped it) or -1.
static int run(train_task task, run_config *cfg, int resume, const char *cmd, pith_err *err) {
  rc_key schema[TRAIN_ARGS_MAX_KEYS];
  train_args a;
  if (run_config_resolve(cfg, schema, train_args_schema(task, schema), err) || train_args_read(&a, task, cfg, err))
    return -1;
  char run_dir[2048];
  if (*a.output_dir) snprintf(run_dir, sizeof run_dir, "%s", a.output_dir);
  else snprintf(run_dir, sizeof run_dir, "runs/%s", a.run_name);
  return trainer_run(&a, cfg, run_dir, resume, cmd, err);
}

int compress_train_main(train_task task, int argc, char **argv) {
  pith_err err = {{0}};
  run_config *cfg = run_config_new();
  int resume = 0, rc = 0;
  for (int i = 1; i < argc && !rc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(task, stdout);
      run_config_free(cfg);
      return 0;
    } else if (!strcmp(argv[i], "--resume")) {
      resume = 1;
    } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      rc = run_config_load(cfg, argv[++i], &err);
    } else if (strchr(argv[i], '=')) {
      rc = run_config_set(cfg, argv[i], &err);
    } else {
      fprintf(stderr, "pith %s: unexpected argument '%s'\n", argv[0], argv[i]);
      usage(task, stderr);
      run_config_free(cfg);
      return 2;
    }
  }
  if (!rc) rc = run(task, cfg, resume, argv[0], &err);
  if (rc < 0) fprintf(stderr, "pith %s: %s\n", argv[0], err.msg[0] ? err.msg : pt_error());
  run_config_free(cfg);
  return rc < 0 ? 1 : rc;
}
