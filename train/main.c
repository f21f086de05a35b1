// pith: training learned prompt compressors. This file only dispatches to the subcommands.
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command COMMANDS[] = {
  {"demo", cmd_demo, "the whole pipeline on a synthetic world, no downloads: train, evaluate, export (~15 min)"},
  {"pretrain", cmd_pretrain, "train a soft-token compressor to regenerate texts (500x, ICAE)"},
  {"finetune", cmd_finetune, "train a soft-token compressor to answer questions (500x, ICAE)"},
  {"lm", cmd_lm, "train a base language model (every weight), from random weights or a model folder"},
  {"distill", cmd_distill, "align a small scorer LM to a target LLM (sft on its generations, or token-level KL)"},
  {"bench", cmd_bench, "measure speed against the PyTorch equivalent"},
  {"tokenize", cmd_tokenize, "text to token ids and back (any tokenizer pith reads)"},
  {"data", cmd_data, "corpus files (HDF5): inspect and build them"},
  {"export", cmd_export, "a trained compressor (PEFT adapter + compress embeddings) or scorer (HF folder), with a manifest"},
  {"eval", cmd_eval, "score a compressor: regeneration (ROUGE, BLEU, EM) or QA (SQuAD EM/F1) against baselines"},
  {"report", cmd_report, "one self-contained HTML page of runs: loss curves, scores, examples side by side"},
  {"convert", cmd_convert, "a llama2.c checkpoint into a Hugging Face model folder"},
  {"compress", cmd_compress,
   "shorten prompts by dropping tokens (llmlingua, longllmlingua, llmlingua2, ehpc; ehpc-probe finds heads)"},
  {"generate", cmd_generate, "continue a prompt with a model folder (KV cache; greedy, temperature, top-p)"},
};
static const int N_COMMANDS = (int)(sizeof COMMANDS / sizeof COMMANDS[0]);

static void usage(FILE *out) {
  fprintf(out, "usage: pith COMMAND [ARGS...]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  fprintf(out, "\n'pith COMMAND --help' tells more about each.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  for (int i = 0; i < N_COMMANDS; i++)
    if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
  fprintf(stderr, "pith: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
