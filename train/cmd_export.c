// pith export: a trained compressor's checkpoint into what an inference path reads: a PEFT LoRA
// adapter, the compress-token embeddings and a manifest. The work is checkpoints/export.c's; this
// file parses the command line and prints what it wrote.
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "export.h"
#include "export_scorer.h"

#include <math.h>
#include <string.h>

// A pith distill run (RUN/config.yaml names method sft, kl or classifier): RUN/model as an HF folder.
static int export_scorer(const char *run, const char *out, int force, int argc, char **argv) {
  char cmd[8192] = "pith";
  for (int i = 0; i < argc; i++) {
    size_t n = strlen(cmd);
    snprintf(cmd + n, sizeof cmd - n, " %s", argv[i]);
  }
  export_scorer_options opt = {.force = force, .command = cmd};
  export_scorer_info x;
  pith_err err = {{0}};
  if (export_scorer_run(run, out, &opt, &x, &err) != 0) {
    fprintf(stderr, "pith export: %s\n", err.msg);
    return 1;
  }
  printf("pith export: %s/model -> %s: %s scorer (%s, method %s), %d files\n", run, out, x.kind, x.model_type,
         x.method, x.n_files);
  if (!isnan(x.initial_kl) && !isnan(x.final_kl))
    printf("  held-out KL(target||scorer) %.4f -> %.4f, Spearman %.4f -> %.4f\n", x.initial_kl, x.final_kl,
           x.initial_spearman, x.final_spearman);
  if (*x.target && !x.target_found)
    fprintf(stderr, "pith export: warning: the target's weights (%s) are not readable here; the manifest records its "
                    "path without a sha256\n", x.target);
  return 0;
}

int cmd_export(int argc, char **argv) {
  const char *run = NULL, *out = NULL;
  export_options opt = {0};
  const cli_opt opts[] = {
      {"--run", CLI_STR, &run, .metavar = "PATH", .flags = CLI_REQUIRED, .help = "run folder or checkpoint folder"},
      {"--out", CLI_STR, &out, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "output folder (must not exist unless --force)"},
      {"--force", CLI_FLAG, &opt.force, .help = "replace DIR if present"},
  };
  const cli_spec spec = {
      "pith export", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "Exports what pith trained.\n"
               "A scorer (a pith distill run: RUN/config.yaml says method sft, kl or classifier): RUN/model's\n"
               "config.json, weights and tokenizer files, copied so that transformers' AutoModelForCausalLM\n"
               "(sft, kl) or AutoModelForTokenClassification (classifier) and LLMLingua load DIR unchanged,\n"
               "plus manifest.json: kind (causal-lm or token-classifier), the target (path, weights sha256),\n"
               "the alignment method, the held-out val_kl / val_spearman before training (step 0) and at the\n"
               "end, the run's config, pith version and this command.\n"
               "A soft-token compressor (500x or ICAE) trained by pith pretrain/finetune: given a\n"
               "run folder, its newest complete checkpoint is exported; given checkpoints/step-N/, that one.\n"
               "DIR receives:\n"
               "  adapter_config.json, adapter_model.safetensors  the encoder's LoRA as a PEFT adapter\n"
               "                      (PeftModel.from_pretrained(base_model, DIR) loads it)\n"
               "  compress.safetensors  'compress' (k, dim) compress-token embeddings; 'ae' (1, dim) for ICAE\n"
               "  manifest.json         format, method, k, position_policy, base model, tokenizer, and the\n"
               "                        source checkpoint (step, config sha256 and values)\n"
               "The folder is built as DIR.partial and renamed to DIR when complete.\n\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  pith_err err = {{0}};
  if (export_is_scorer_run(run)) return export_scorer(run, out, opt.force, argc, argv);
  char ckpt[4096] = "";
  if (export_run(run, out, &opt, ckpt, sizeof ckpt, &err) != 0) {
    fprintf(stderr, "pith export: %s\n", err.msg);
    return 1;
  }
  export_info info;
  if (export_read_info(out, &info, &err) != 0) {
    fprintf(stderr, "pith export: %s\n", err.msg);
    return 1;
  }
  printf("pith export: %s (step %lld) -> %s: %s, k=%d, LoRA r=%d, base %s\n", ckpt,
         (long long)info.step, out, info.comp.method == COMP_ICAE ? "icae" : "500x", info.comp.k, info.lora.rank,
         info.base_model);
  return 0;
}
