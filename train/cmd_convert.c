// pith convert: a llama2.c checkpoint (legacy v0 format) and its tokenizer.bin into a Hugging Face
// LLaMA model folder that transformers and pith load. The work is checkpoints/llama2c.c's; this
// file parses the command line and prints progress.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "llama2c.h"

static void print_progress(void *ctx, const char *line) {
  (void)ctx;
  printf("pith convert: %s\n", line);
  fflush(stdout);
}

int cmd_convert(int argc, char **argv) {
  const char *checkpoint = NULL, *tokenizer = NULL, *out = NULL;
  int force = 0;
  const cli_opt opts[] = {
      {"--checkpoint", CLI_STR, &checkpoint, .metavar = "FILE", .flags = CLI_REQUIRED,
       .help = "llama2.c v0 checkpoint (7 int32 header, then f32 weights)"},
      {"--tokenizer", CLI_STR, &tokenizer, .metavar = "FILE", .flags = CLI_REQUIRED,
       .help = "llama2.c tokenizer.bin with exactly vocab_size tokens"},
      {"--out", CLI_STR, &out, .metavar = "DIR", .flags = CLI_REQUIRED,
       .help = "output folder (must not exist unless --force)"},
      {"--force", CLI_FLAG, &force, .help = "replace DIR (and a stale DIR.partial) if present"},
  };
  const cli_spec spec = {
      "pith convert", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "Converts a llama2.c checkpoint (the legacy v0 format run.c reads, e.g. stories15M.bin)\n"
               "and its tokenizer.bin into a Hugging Face LLaMA folder: config.json, model.safetensors\n"
               "(f32; wq/wk rows permuted from llama2.c's interleaved RoPE to HF's rotate-half),\n"
               "tokenizer.json, tokenizer_config.json, generation_config.json and a copy of tokenizer.bin.\n"
               "The folder is built as DIR.partial and renamed to DIR when complete.\n\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  pith_err err = {{0}};
  if (llama2c_convert_ex(checkpoint, tokenizer, out, force, print_progress, NULL, &err) != 0) {
    fprintf(stderr, "pith convert: %s\n", err.msg);
    if (strstr(err.msg, "without force") || strstr(err.msg, "with force"))
      fprintf(stderr, "HINT: pass --force to replace it, or choose another --out\n");
    return 1;
  }
  return 0;
}
