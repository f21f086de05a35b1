// pith eval: the command line of the evaluation engine (eval.h). It parses the options, checks
// them, selects the systems (eval_system.h) named by --baselines, and hands the rest to the engine:
// open, evaluate, write, print the table. Exit codes: 0, 1 (an evaluation that failed: one
// "pith eval:" line), 2 (a usage error).
//
//   qa     (QA corpus; after `pith finetune`) the encoder reads the context, the decoder reads
//          "Question: {q} Answer: " after the compressed prefix and answers greedily; SQuAD v1.1
//          EM/F1 over all gold answers, and 500xCompressor's raw EM/F1.
//   regen  (documents; after `pith pretrain`) the decoder regenerates the text from [bos] after the
//          compressed prefix; ROUGE-1/2/L, corpus BLEU-4 and exact match against the cut text.
//
// The systems are described in their files: eval_sys_compressed.c, eval_sys_context.c (full, none,
// truncated), eval_sys_no_layer0.c, eval_sys_hard.c (--hard, and its chains with the compressor),
// eval_sys_press.c (--press: KV presses over the base model's cache).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "align.h"
#include "cli.h"
#include "commands.h"
#include "eval.h"

// The option lines come from the table; this is the prose around them.
#define EVAL_ABOUT                                                                                              \
  "Scores a soft-token compressor (500x or ICAE) and baselines on a pith corpus, decoding greedily the\n"     \
  "way pith pretrain/finetune train: QA (finetune: the decoder answers \"Question: {q} Answer: \" after\n"   \
  "the compressed context; SQuAD v1.1 EM/F1 against every gold answer, and the raw EM/F1 of\n"               \
  "500xCompressor's script) or regeneration (pretrain: the decoder rewrites the text from [bos];\n"           \
  "ROUGE-1/2/L F, corpus BLEU-4 (sacrebleu), exact match). Baselines use the base model alone.\n\n"
#define EVAL_EPILOG                                                                                             \
  "\nOUT receives predictions.jsonl (a line per example and system: system, index, id, then for qa\n"      \
  "context (as the systems read it, cut to cutoff_len), question, prediction and golds, for regeneration\n"  \
  "prediction and reference), metrics.json (task, n, systems: {system: {metric: value}}, retained:\n"        \
  "compressed / full in % per metric (qa), compressor, data, split; prompt_tokens: each system's mean\n"    \
  "positions read for the context, context_tokens: the context's; kv_bytes: each system's mean bytes of\n"  \
  "K/V held for the context when the decoder prompt begins; retained_by_system (qa); hard; press) and\n"     \
  "config.yaml (the resolved options); the table of scores goes to stdout. Scores are in [0, 100].\n"

#define EVAL_INT(name, field, text) {name, CLI_INT, &o->field, .metavar = "N", .min = 1, .max = 1e9, .help = text}

// ---- options ------------------------------------------------------------------------------------

// A usage error: one line on stderr; returns 2, the exit code.
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "pith eval: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " ('pith eval --help' lists the options)\n");
  va_end(ap);
  return 2;
}

// 0, 1 after --help, 2 after a usage error (said on stderr).
static int parse_args(int argc, char **argv, eval_options *o) {
  int hard_budget = 0;
  *o = (eval_options){.split = "val", .baselines = EVAL_DEFAULT_BASELINES, .device = "cpu", .max_examples = 0,
                      .cutoff_len = -1, .max_new_tokens = -1, .k = -1, .threads = 0};
  const cli_opt opts[] = {
      {"--compressor", CLI_STR, &o->compressor, .metavar = "DIR|none",
       .help = "an export folder (pith export), or a run / checkpoint folder (its newest\n"
               "checkpoint is exported into OUT/export first); 'none': baselines only"},
      {"--data", CLI_STR, &o->data, .metavar = "FILE.h5",
       .help = "the corpus (pith data ingest): documents for regen, QA for qa"},
      {"--task", CLI_STR, &o->task, .metavar = "qa|regen|align",
       .help = "default: qa for a QA corpus, regen for documents; align: a scorer vs its\n"
               "target LLM (pith eval --task align --help)"},
      {"--split", CLI_STR, &o->split, .metavar = "S", .help = "val (default), test, train or all: which records to evaluate"},
      EVAL_INT("--max-examples", max_examples, "the first N records of the split, in corpus order (default: all)"),
      EVAL_INT("--cutoff-len", cutoff_len,
               "context tokens the encoder reads (default: the training run's cutoff_len,\n"
               "else 500); regen references are the text of the first N tokens"),
      EVAL_INT("--max-new-tokens", max_new_tokens,
               "generation budget of every system (default 32 for qa, cutoff_len + 8 for\n"
               "regen); generation also stops at an eos token of the tokenizer"),
      {"--baselines", CLI_STR, &o->baselines, .metavar = "LIST",
       .help = "comma-separated, from full,none,truncated,no_layer0 (default: the first three;\n"
               "'' for none):\n"
               "  full       [bos] + the context (cut to cutoff_len) + the question prompt\n"
               "             (qa only: for regen the context is the answer)\n"
               "  none       the question prompt alone (regen: [bos] alone)\n"
               "  truncated  [bos] + the first k context tokens + the question prompt (regen:\n"
               "             the prediction is those k tokens' text and the continuation)\n"
               "  no_layer0  qa only: the full context's own K/V as the question prompt's prefix,\n"
               "             with layer 0's zeroed (a 500x prefix's layer-0 K/V never see the\n"
               "             text); near 'none' means this model reads answers at layer 0, where\n"
               "             a 500x prefix cannot pass them on"},
      EVAL_INT("--k", k,
               "k of the truncated baseline with --compressor none (default 16; with a\n"
               "compressor, its number of compress tokens)"),
      {"--out", CLI_STR, &o->out, .metavar = "DIR", .help = "where the results go (default runs/eval/NAME)"},
      {"--name", CLI_STR, &o->name, .metavar = "NAME", .help = "default <dataset>__<model>__<method>__k<k>"},
      {"--model", CLI_STR, &o->model, .metavar = "DIR",
       .help = "base model folder (default: the one the export names; required with none)"},
      {"--tokenizer", CLI_STR, &o->tokenizer, .metavar = "PATH",
       .help = "tokenizer (default: the export's, else the model folder)"},
      {"--device", CLI_STR, &o->device, .metavar = "D", .help = "cpu (default), cuda or cuda:N; computation in f32"},
      {"--bf16", CLI_FLAG, &o->bf16,
       .help = "on CUDA: the base model in bf16, as bf16: true trains (half the memory);\nnot with --verify"},
      {"--fused-kernels", CLI_FLAG, &o->fused_kernels,
       .help = "on CUDA: the layers' element-wise work and the compress K/V's injection as\npith's fused kernels, as "
               "fused_kernels: true trains"},
      EVAL_INT("--threads", threads, "CPU threads (default: libtorch's)"),
      {"--verify", CLI_FLAG, &o->verify,
       .help = "also check every compressed generation against comp_decode without a cache\n"
               "(each token must be a greedy choice of its logits, to 1e-4): slow, for tests"},
      {"--hard", CLI_STR, &o->hard, .metavar = "M:R,...",
       .help = "hard-compression systems, METHOD:RATIO each (llmlingua:4 keeps a quarter\n"
               "of the context's tokens; RATIO k: k tokens, the compressor's or --k), METHOD\n"
               "llmlingua, longllmlingua (qa only), llmlingua2 (--l2-scorer) or ehpc\n"
               "(--ehpc-heads); the base model reads the kept text as full reads the\n"
               "context. With a compressor, also METHOD@RATIOx+500x: the kept text is what\n"
               "the compressor encodes. The table then shows every system's tokens read\n"
               "for the context and its share of full's F1; predictions.jsonl the kept text"},
      {"--hard-scorer", CLI_STR, &o->hard_scorer, .metavar = "DIR",
       .help = "the causal LM that scores tokens for llmlingua and longllmlingua (default:\n"
               "the base model; ehpc always reads the base model's heads)"},
      {"--l2-scorer", CLI_STR, &o->l2_scorer, .metavar = "DIR",
       .help = "llmlingua2's BERT or XLM-R token classifier folder (pith distill\n"
               "method=classifier's export, or a converted LLMLingua-2 model)"},
      {"--cl100k", CLI_STR, &o->cl100k, .metavar = "PATH",
       .help = "llmlingua2 with --hard-budget llmlingua: cl100k_base.tiktoken, whose counts\n"
               "weigh words (default: $TIKTOKEN_CACHE_DIR's or .venv-peers/tiktoken-cache's)"},
      {"--ehpc-heads", CLI_STR, &o->ehpc_heads, .metavar = "FILE",
       .help = "ehpc's evaluator heads of the base model: the ehpc.json that pith compress\n"
               "ehpc-probe --model BASE writes (or its folder), or L:h,h; window and kernel\n"
               "from the file, else 8 and 7"},
      {"--hard-budget", CLI_CHOICE, &hard_budget, .metavar = "B", .choices = "exact|llmlingua",
       .help = "exact (default): a system named Rx reads 1/R of the context's tokens;\n"
               "llmlingua: llmlingua 0.2.2's own (rate 1/R of the scorer's tokens, which it\n"
               "misses: the table shows what was read). llmlingua2: its threshold weighs\n"
               "words by their tokens under the base model's tokenizer (exact), or cl100k's\n"
               "as llmlingua 0.2.2 does (llmlingua); a percentile, so near 1/R, not on it"},
      {"--press", CLI_STR, &o->press, .metavar = "SPEC,...",
       .help = "KV-press systems, [adakv-]NAME:RATIO[:KEY=VALUE,...] each (NAME knorm,\n"
               "streaming_llm, snapkv, expected_attention, tova or observed_attention; RATIO in\n"
               "[0, 1): the fraction of entries removed; KEY kvpress's parameter, e.g. snapkv's\n"
               "window_size (64); adakv-: per-head budgets). The base model reads [bos] + the context as full\n"
               "does, its K/V cache is pressed, then the question prompt (regen: [bos]) is\n"
               "read after it: question-agnostic, named snapkv@0.5. ':aware' at the end\n"
               "(qa only, named snapkv@0.5+q): the question prompt is pressed with the\n"
               "context. The table then shows every system's KiB of K/V held for the context"},
      {"--quiet", CLI_FLAG, &o->quiet, .help = "no progress on stderr"},
  };
  const cli_spec spec = {"pith eval", .about = EVAL_ABOUT, CLI_OPTS(opts), .epilog = EVAL_EPILOG};
  pith_err err = {{0}};
  int pr = cli_parse(&spec, argc, argv, &err);
  if (pr == 1) return 1;
  if (pr) return usage_error("%s", err.msg);
  o->hard_llmlingua_budget = hard_budget == 1;
  if (o->hard && eval_hard_parse_list(o->hard, &err) < 0) return usage_error("--hard %s", err.msg);
  if (o->press && eval_press_parse_list(o->press, &err) < 0) return usage_error("--press %s", err.msg);
  if (!o->hard && (o->hard_scorer || hard_budget))
    return usage_error("%s is for --hard", o->hard_scorer ? "--hard-scorer" : "--hard-budget");
  if (o->hard_scorer && eval_hard_check_scorer(o->hard_scorer, &err)) return usage_error("--hard-scorer %s", err.msg);
  // each method's own options, given for it and only for it
  int l2 = o->hard && eval_hard_uses(o->hard, "llmlingua2"), ehpc = o->hard && eval_hard_uses(o->hard, "ehpc");
  if (!l2 && (o->l2_scorer || o->cl100k))
    return usage_error("%s is for --hard llmlingua2:RATIO", o->l2_scorer ? "--l2-scorer" : "--cl100k");
  if (o->cl100k && !o->hard_llmlingua_budget)
    return usage_error("--cl100k is for --hard-budget llmlingua (the exact budget counts with the base model's "
                       "tokenizer)");
  if (!ehpc && o->ehpc_heads) return usage_error("--ehpc-heads is for --hard ehpc:RATIO");
  if (o->hard_scorer && !eval_hard_uses(o->hard, "llmlingua") && !eval_hard_uses(o->hard, "longllmlingua"))
    return usage_error("--hard-scorer is for --hard llmlingua or longllmlingua (llmlingua2 takes --l2-scorer; ehpc "
                       "reads the base model)");
  if (l2 && !o->l2_scorer)
    return usage_error("--hard llmlingua2 needs --l2-scorer DIR (a BERT or XLM-R token classifier, e.g. pith distill "
                       "method=classifier's export)");
  if (l2 && eval_hard_check_classifier(o->l2_scorer, &err)) return usage_error("--l2-scorer %s", err.msg);
  if (ehpc && !o->ehpc_heads)
    return usage_error("--hard ehpc needs --ehpc-heads FILE: the base model's evaluator heads (pith compress "
                       "ehpc-probe --model BASE --data DOCS.h5 writes BASE/ehpc.json)");
  if (!o->compressor || !o->data)
    return usage_error("%s is required", !o->compressor ? "--compressor DIR|none" : "--data FILE.h5");
  if (o->task && strcmp(o->task, "qa") && strcmp(o->task, "regen"))
    return usage_error("--task is qa or regen, not '%s'", o->task);
  if (strcmp(o->split, "val") && strcmp(o->split, "test") && strcmp(o->split, "train") && strcmp(o->split, "all"))
    return usage_error("--split is val, test, train or all, not '%s'", o->split);
  pt_device dev;  // a GPU that is not visible is load_models' error, not a usage error
  pith_err why = {{0}};
  if (pt_device_parse(o->device, &dev, &why) == -1) return usage_error("--device %s", why.msg);
  pt_error_clear();
  if (o->bf16 && !strcmp(o->device, "cpu"))
    return usage_error("--bf16 needs --device cuda (CPU evaluation runs in f32, as CPU training does)");
  if (o->fused_kernels && !strcmp(o->device, "cpu"))
    return usage_error("--fused-kernels needs --device cuda (the fused kernels are CUDA kernels)");
  // In bf16 the cached and uncached decoders round differently: on an H200 a logit gap of 0.188
  // appeared 63 tokens into a generation, so greedy choices can part on near-ties. Checked in f32.
  if (o->bf16 && o->verify) return usage_error("--verify checks in f32: leave out --bf16");
  int none = !strcmp(o->compressor, "none");
  if (none && !o->model) return usage_error("--compressor none needs --model DIR");
  if (!none && o->k > 0) return usage_error("--k is for --compressor none (a compressor has its own k)");
  return 0;
}

// ---- the command --------------------------------------------------------------------------------

int cmd_eval(int argc, char **argv) {
  for (int i = 1; i < argc; i++)  // scorer-target alignment has its own options (align_cmd.c)
    if ((!strcmp(argv[i], "--task") && i + 1 < argc && !strcmp(argv[i + 1], "align")) || !strcmp(argv[i], "--task=align"))
      return align_cmd(argc, argv);
  eval_options o;
  int pr = parse_args(argc, argv, &o);
  if (pr) return pr == 1 ? 0 : 2;
  pith_err err = {{0}};
  int on[EVAL_MAX_SYSTEMS];  // the names are checked here, before any data is opened
  if (eval_systems_select(o.baselines, 0, on, &err)) return usage_error("--baselines: %s", err.msg);
  char cmd[4096] = "pith";
  for (int i = 0; i < argc; i++)
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", argv[i]);
  o.command = cmd;

  eval_run *run = NULL;
  int rc = eval_open(&o, &run, &err);
  if (!rc) rc = eval_evaluate(run, &err);
  if (!rc) rc = eval_write(run, &err);
  if (!rc) eval_print_table(run, stdout);
  eval_close(run);
  if (rc == EVAL_USAGE) {
    fprintf(stderr, "pith eval: %s\n", err.msg);
    return 2;
  }
  if (rc) {
    fprintf(stderr, "pith eval: %s\n", err.msg[0] ? err.msg : pt_error());
    return 1;
  }
  return 0;
}
