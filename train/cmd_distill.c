// pith distill: align a small scorer LM to a target LLM (the scorer that hard prompt compression
// reads surprisal from). Arguments → the resolved config → checks that refuse a bad run before its
// folder exists (distill.h) → for sft, the target's generations (made once, reused) → one training
// run of the trainer (trainer.h), which writes the aligned scorer to RUN/model.
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "distill.h"
#include "run_config.h"
#include "train_args.h"
#include "train_state.h"
#include "trainer.h"

static void usage(FILE *out) {
  rc_key schema[TRAIN_ARGS_MAX_KEYS];
  int n = train_args_schema(TRAIN_DISTILL, schema);
  fprintf(out,
          "usage: pith distill --config FILE.yaml [key=value ...] [--resume]\n\n"
          "Aligns a small scorer LM (model_name_or_path) to a target LLM (target_model_name_or_path), both\n"
          "LLaMA-family Hugging Face folders with one tokenizer:\n"
          "  sft         LLMLingua's distribution alignment: the target continues prompts drawn from\n"
          "              train_file; its generations are written as a corpus (generated_file, with the\n"
          "              target's fingerprint, decoding settings and seed; an existing one is reused)\n"
          "              and the scorer is fine-tuned on them (next-token cross-entropy).\n"
          "  kl          token-level distillation on train_file: forward KL(target || scorer) of the\n"
          "              next-token distributions at `temperature` (times its square), the target's\n"
          "              logits computed online with gradients off.\n"
          "  classifier  LLMLingua-2's keep/drop token classifier: a BERT / XLM-R encoder (model_name_or_path,\n"
          "              or random weights of model_config with tokenizer) trained with cross-entropy on word\n"
          "              labels given to each of the word's tokens. Labels from label_file (JSONL pairs\n"
          "              {\"original\", \"compressed\"}, the compressed words aligned in order onto the\n"
          "              original's), or from the target: llmlingua (as pith compress --method llmlingua) run\n"
          "              with the target as its own scorer on label_num_texts texts of train_file at\n"
          "              label_rate; a word is kept when one of the target's kept tokens overlaps it. The\n"
          "              last val_size of the texts is held out: keep precision/recall/F1 and the keep share\n"
          "              (val_precision, val_recall, val_f1, val_keep_share in metrics.jsonl); the labels are\n"
          "              written to RUN/labels.jsonl and the classifier to RUN/model (transformers'\n"
          "              AutoModelForTokenClassification loads it).\n"
          "finetuning_type: full (every weight) or lora (adapters on the frozen scorer, merged into its\n"
          "weights when RUN/model is written).\n"
          "Held-out KL(target || scorer) and the Spearman correlation of their per-token surprisal\n"
          "(align_docs texts of train_file's val split) are logged before training, at every eval_steps and\n"
          "at the end (val_kl, val_spearman in metrics.jsonl). The run folder holds config.yaml,\n"
          "metrics.jsonl, checkpoints/ (--resume continues bit for bit on CPU; SIGINT/SIGTERM save and\n"
          "stop), generated.h5 (sft) and the aligned scorer in RUN/model (config.json,\n"
          "model.safetensors, tokenizer files). pith eval --task align measures any scorer/target pair.\n\n"
          "keys:\n");
  run_config_print_schema(out, schema, n);
}

// The run: config → checks → (sft: generations) → trainer. 0, 128 + N (signal N stopped it) or -1.
// *made: the run folder did not exist before.
static int run(run_config *cfg, int resume, const char *cmd, int *made, char *run_dir, size_t run_len, pith_err *err) {
  rc_key schema[TRAIN_ARGS_MAX_KEYS];
  train_args a;
  if (run_config_resolve(cfg, schema, train_args_schema(TRAIN_DISTILL, schema), err) ||
      train_args_read(&a, TRAIN_DISTILL, cfg, err) || distill_preflight(&a, err))
    return -1;
  if (*a.output_dir)
    snprintf(run_dir, run_len, "%s", a.output_dir);
  else
    snprintf(run_dir, run_len, "runs/%s", a.run_name);
  if (resume && !pith_is_dir(run_dir)) return pith_fail(err, "--resume: %s: no such run folder", run_dir);
  *made = !pith_is_dir(run_dir);
  char generated[2304];
  // The trainer makes the run folder (with config.yaml) once everything has loaded; only the
  // generations, which come first, may need it earlier.
  if (a.distill == DISTILL_SFT) {
    if (*a.generated_file) {
      snprintf(generated, sizeof generated, "%s", a.generated_file);
    } else {
      snprintf(generated, sizeof generated, "%s/generated.h5", run_dir);
      if (pith_mkdirs(run_dir, err)) return -1;
    }
    if (pith_is_file(generated))
      printf("reusing the target's generations in %s\n", generated);
    else if (distill_generate(&a, generated, err))
      return -1;
    a.train_file = generated;  // the scorer trains on them; held-out KL stays on align_file
  }
  return trainer_run(&a, cfg, run_dir, resume, cmd, err);
}

int cmd_distill(int argc, char **argv) {
  pith_err err = {{0}};
  run_config *cfg = run_config_new();
  int resume = 0, rc = 0, made = 0;
  char run_dir[2048] = "";
  for (int i = 1; i < argc && !rc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      run_config_free(cfg);
      return 0;
    } else if (!strcmp(argv[i], "--resume")) {
      resume = 1;
    } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      rc = run_config_load(cfg, argv[++i], &err);
    } else if (strchr(argv[i], '=')) {
      rc = run_config_set(cfg, argv[i], &err);
    } else {
      fprintf(stderr, "pith distill: unexpected argument '%s'\n", argv[i]);
      usage(stderr);
      run_config_free(cfg);
      return 2;
    }
  }
  if (!rc) rc = run(cfg, resume, argv[0], &made, run_dir, sizeof run_dir, &err);
  if (rc < 0) {
    fprintf(stderr, "pith distill: %s\n", err.msg[0] ? err.msg : pt_error());
    // A run refused before its first checkpoint leaves nothing behind (a folder it made itself).
    // Generations already made are kept for the next try.
    char ckpt[2048], gen[2304];
    pith_err ignore = {{0}};
    snprintf(gen, sizeof gen, "%s/generated.h5", run_dir);
    if (made && !pith_is_file(gen) && train_state_latest(run_dir, ckpt, sizeof ckpt, &ignore) == 1)
      pith_remove_tree(run_dir);
  }
  run_config_free(cfg);
  return rc < 0 ? 1 : rc;  // 128 + N when signal N stopped the run
}
