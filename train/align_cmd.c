// pith eval --task align: the command line of align.h's measure (scorer vs target on held-out text).
// cmd_eval.c hands argv over when --task align is given.
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "align.h"
#include "cjson_file.h"
#include "cli.h"
#include "corpus.h"
#include "hf_folder.h"
#include "task.h"
#include "tokenizer.h"

#define ALIGN_ABOUT                                                                                     \
  "Measures how well a scorer LM agrees with its target LLM on held-out text (hard compression drops\n" \
  "the tokens the scorer finds least surprising, so it should rank them as the target would). Each\n"   \
  "text of the split is read as [bos] text by both models (documents: the text; QA: the context):\n"    \
  "  kl        mean per-token KL(target || scorer) of the next-token distributions (nats)\n"            \
  "  spearman  Spearman's rank correlation of per-token surprisal, scorer vs target (all tokens)\n"     \
  "  nll_*     mean per-token surprisal of each model\n"                                                \
  "The models must share a tokenizer (compared by vocabulary). One line of results, then the same\n"    \
  "as one JSON object, on stdout.\n\n"

static int load_pair(const char *target_dir, const char *scorer_dir, pt_device dev, llama_model **target,
                     llama_model **scorer, int32_t *bos, pith_err *err) {
  if (align_check_causal_lm(target_dir, "target", err) || align_check_causal_lm(scorer_dir, "scorer", err) ||
      align_check_same_vocab(target_dir, scorer_dir, err))
    return -1;
  tokenizer *tok = tokenizer_load(scorer_dir, err);
  task_tokens tt = {0};
  int rc = !tok || task_tokens_init(&tt, tok, scorer_dir, err) ? -1 : 0;
  *bos = tt.bos;
  task_tokens_free(&tt);
  tokenizer_free(tok);
  if (rc) return -1;
  *target = hf_model_load(target_dir, PT_F32, dev, err);
  if (!*target) return -1;
  *scorer = hf_model_load(scorer_dir, PT_F32, dev, err);
  return *scorer ? 0 : -1;
}

int align_cmd(int argc, char **argv) {
  const char *task = "align", *scorer_dir = NULL, *target_dir = NULL, *data = NULL, *split = "val", *device = "cpu",
             *out = NULL;
  int limit = 0, max_len = 512, threads = 0;
  const cli_opt opts[] = {
      {"--task", CLI_STR, &task, .metavar = "align", .help = "align (the other tasks: pith eval --help)"},
      {"--scorer", CLI_STR, &scorer_dir, .metavar = "DIR",
       .help = "the scorer: a model folder (e.g. RUN/model of pith distill)", .flags = CLI_REQUIRED},
      {"--target", CLI_STR, &target_dir, .metavar = "DIR", .help = "the target LLM: a model folder",
       .flags = CLI_REQUIRED},
      {"--data", CLI_STR, &data, .metavar = "FILE.h5", .help = "a pith corpus (documents or QA)",
       .flags = CLI_REQUIRED},
      {"--split", CLI_STR, &split, .metavar = "S", .help = "val (default), test, train or all"},
      {"--limit", CLI_INT, &limit, .metavar = "N", .min = 1, .max = 1e9,
       .help = "the first N texts of the split, in corpus order (default: all)"},
      {"--max-len", CLI_INT, &max_len, .metavar = "N", .min = 2, .max = 1e9,
       .help = "tokens per text, bos included (default 512; the models' context at most)"},
      {"--device", CLI_STR, &device, .metavar = "D", .help = "cpu (default), cuda or cuda:N; f32"},
      {"--threads", CLI_INT, &threads, .metavar = "N", .min = 1, .max = 1024,
       .help = "CPU threads (default: libtorch's)"},
      {"--out", CLI_STR, &out, .metavar = "FILE.json", .help = "also write the JSON object here"},
  };
  const cli_spec spec = {"pith eval --task align", .synopsis = "--scorer DIR --target DIR --data FILE.h5 [options]",
                         .about = ALIGN_ABOUT, CLI_OPTS(opts)};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  if (strcmp(task, "align")) return cli_usage_error(&spec, "--task is align here, not '%s'", task);
  int sp = !strcmp(split, "val")     ? CORPUS_SPLIT_VAL
           : !strcmp(split, "test")  ? CORPUS_SPLIT_TEST
           : !strcmp(split, "train") ? CORPUS_SPLIT_TRAIN
           : !strcmp(split, "all")   ? -1
                                     : -2;
  if (sp == -2) return cli_usage_error(&spec, "--split is val, test, train or all, not '%s'", split);
  pith_err err = {{0}};
  pt_device dev;
  if (pt_device_parse(device, &dev, &err)) return cli_usage_error(&spec, "--device %s", err.msg);
  if (threads > 0) pt_set_num_threads(threads);

  llama_model *target = NULL, *scorer = NULL;
  int32_t bos = 0;
  align_result r;
  int rc = load_pair(target_dir, scorer_dir, dev, &target, &scorer, &bos, &err);
  if (!rc) {
    int ctx = target->cfg.max_seq_len < scorer->cfg.max_seq_len ? target->cfg.max_seq_len : scorer->cfg.max_seq_len;
    if (ctx > 1 && max_len > ctx) max_len = ctx;
    rc = align_measure(target, scorer, NULL, bos, data, sp, limit, max_len, &r, &err);
  }
  llama_free(target);
  llama_free(scorer);
  if (rc) {
    fprintf(stderr, "pith eval: %s\n", err.msg[0] ? err.msg : pt_error());
    return 1;
  }
  printf(
      "align: %lld texts, %lld tokens (%s split of %s): KL(target||scorer) %.4f nats/token, Spearman %.4f; "
      "surprisal %.4f target, %.4f scorer\n",
      (long long)r.n_texts, (long long)r.n_tokens, split, data, r.kl, r.spearman, r.nll_target, r.nll_scorer);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "task", "align");
  cJSON_AddStringToObject(j, "scorer", scorer_dir);
  cJSON_AddStringToObject(j, "target", target_dir);
  cJSON_AddStringToObject(j, "data", data);
  cJSON_AddStringToObject(j, "split", split);
  cJSON_AddNumberToObject(j, "max_len", max_len);
  cJSON_AddNumberToObject(j, "n_texts", (double)r.n_texts);
  cJSON_AddNumberToObject(j, "n_tokens", (double)r.n_tokens);
  cJSON_AddNumberToObject(j, "kl", r.kl);
  cJSON_AddNumberToObject(j, "spearman", r.spearman);
  cJSON_AddNumberToObject(j, "nll_target", r.nll_target);
  cJSON_AddNumberToObject(j, "nll_scorer", r.nll_scorer);
  char *line = cJSON_PrintUnformatted(j);
  if (line) printf("%s\n", line);
  cJSON_free(line);
  rc = out ? cjson_write_file(out, j, &err) : 0;
  cJSON_Delete(j);
  if (rc) {
    fprintf(stderr, "pith eval: %s\n", err.msg);
    return 1;
  }
  return 0;
}
