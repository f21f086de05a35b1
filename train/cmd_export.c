// pith export: a trained compressor's checkpoint into what an inference path reads: a PEFT LoRA
// adapter, the compress-token embeddings and a manifest. The work is checkpoints/export.c's; this
// file parses the command line and prints what it wrote.
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "export.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: pith export --run RUN_DIR|CHECKPOINT_DIR --out DIR [--force]\n\n"
          "Exports a soft-token compressor (500x or ICAE) trained by pith pretrain/finetune. Given a\n"
          "run folder, its newest complete checkpoint is exported; given checkpoints/step-N/, that one.\n"
          "DIR receives:\n"
          "  adapter_config.json, adapter_model.safetensors  the encoder's LoRA as a PEFT adapter\n"
          "                      (PeftModel.from_pretrained(base_model, DIR) loads it)\n"
          "  compress.safetensors  'compress' (k, dim) compress-token embeddings; 'ae' (1, dim) for ICAE\n"
          "  manifest.json         format, method, k, position_policy, base model, tokenizer, and the\n"
          "                        source checkpoint (step, config sha256 and values)\n"
          "The folder is built as DIR.partial and renamed to DIR when complete.\n\n"
          "  --run PATH   run folder or checkpoint folder\n"
          "  --out DIR    output folder (must not exist unless --force)\n"
          "  --force      replace DIR if present\n");
}

int cmd_export(int argc, char **argv) {
  const char *run = NULL, *out = NULL;
  export_options opt = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--force")) {
      opt.force = 1;
    } else if (!strcmp(a, "--run") && val) {
      run = argv[++i];
    } else if (!strcmp(a, "--out") && val) {
      out = argv[++i];
    } else {
      fprintf(stderr, "pith export: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!run || !out) {
    fprintf(stderr, "pith export: --run and --out are required\n");
    usage(stderr);
    return 2;
  }
  pith_err err = {{0}};
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
