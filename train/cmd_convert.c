// pith convert: a llama2.c checkpoint (legacy v0 format) and its tokenizer.bin into a Hugging Face
// LLaMA model folder that transformers and pith load. The work is checkpoints/llama2c.c's; this
// file parses the command line and prints progress.
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "llama2c.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: pith convert --checkpoint FILE --tokenizer FILE --out DIR [--force]\n\n"
          "Converts a llama2.c checkpoint (the legacy v0 format run.c reads, e.g. stories15M.bin)\n"
          "and its tokenizer.bin into a Hugging Face LLaMA folder: config.json, model.safetensors\n"
          "(f32; wq/wk rows permuted from llama2.c's interleaved RoPE to HF's rotate-half),\n"
          "tokenizer.json, tokenizer_config.json, generation_config.json and a copy of tokenizer.bin.\n"
          "The folder is built as DIR.partial and renamed to DIR when complete.\n\n"
          "  --checkpoint FILE  llama2.c v0 checkpoint (7 int32 header, then f32 weights)\n"
          "  --tokenizer FILE   llama2.c tokenizer.bin with exactly vocab_size tokens\n"
          "  --out DIR          output folder (must not exist unless --force)\n"
          "  --force            replace DIR (and a stale DIR.partial) if present\n");
}

static void print_progress(void *ctx, const char *line) {
  (void)ctx;
  printf("pith convert: %s\n", line);
  fflush(stdout);
}

int cmd_convert(int argc, char **argv) {
  const char *checkpoint = NULL, *tokenizer = NULL, *out = NULL;
  int force = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--force")) {
      force = 1;
    } else if (!strcmp(a, "--checkpoint") && val) {
      checkpoint = argv[++i];
    } else if (!strcmp(a, "--tokenizer") && val) {
      tokenizer = argv[++i];
    } else if (!strcmp(a, "--out") && val) {
      out = argv[++i];
    } else {
      fprintf(stderr, "pith convert: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!checkpoint || !tokenizer || !out) {
    fprintf(stderr, "pith convert: --checkpoint, --tokenizer and --out are required\n");
    usage(stderr);
    return 2;
  }
  pith_err err = {{0}};
  if (llama2c_convert_ex(checkpoint, tokenizer, out, force, print_progress, NULL, &err) != 0) {
    fprintf(stderr, "pith convert: %s\n", err.msg);
    if (strstr(err.msg, "without force") || strstr(err.msg, "with force"))
      fprintf(stderr, "HINT: pass --force to replace it, or choose another --out\n");
    return 1;
  }
  return 0;
}
