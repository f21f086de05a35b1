// pith export: a trained compressor's checkpoint into what an inference path reads: a PEFT LoRA
// adapter, the compress-token embeddings and a manifest. The work is checkpoints/export.c's; this
// file parses the command line and prints what it wrote.
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "export.h"

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
      .about = "Exports a soft-token compressor (500x or ICAE) trained by pith pretrain/finetune. Given a\n"
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
