// pith demo: the whole pipeline on the embedded default, with nothing to download. Each stage is
// one of pith's own commands run in this process with the arguments printed, so a user can rerun
// or vary any of them by hand:
//
//   world     pith data synth: the synthetic facts world, its tokenizer, docs.h5 and qa.h5
//   lm_sentence, lm_deep, lm_window, lm
//             pith lm, four times: a tiny LLaMA trained from scratch to answer questions, with a
//             curriculum of contexts (data/synth.h): first the one sentence stating the answer,
//             then windows of 1-3 sentences, then whole documents. The last is the frozen LLM.
//             (A model this small learns to pick an answer out of one sentence in about a
//             thousand steps; trained on whole documents from the start, not in five thousand.)
//             lm_deep, between the first two, trains on sentences again under no_layer0_share=0.9,
//             the regulariser that makes the base read its context after layer 0, where a 500x
//             prefix can reach (the first stage copies answers at layer 0); the later stages keep
//             it at 0.5. Not from random weights: there it keeps the model from learning to answer
//             at all within the stage (README, "What the demo shows").
//   ehpc_probe pith compress ehpc-probe: EHPC's evaluator heads of the base LM (lm/model/ehpc.json)
//   classifier pith distill method=classifier: LLMLingua-2's keep/drop classifier (a small BERT on the
//             world's WordPiece tokenizer) learns what LLMLingua keeps with the base LM as its scorer;
//             pith export makes it the HF folder pith eval --l2-scorer reads
//   500x/icae pith pretrain (regeneration) then pith finetune (QA) of each compressor, same k
//   export    pith export of each trained compressor (PEFT adapter + compress embeddings)
//   eval      pith eval of each: QA against the full-context / no-context / truncated baselines and
//             hard compression (LLMLingua, LLMLingua-2, EHPC) to the same k tokens, and regeneration
//             against the no-prefix decoder
//   report    pith report: OUT/report.html, the page of every stage's curves, scores and examples
//
// A stage that finished (OUT/.done/STAGE) is skipped when the demo runs again, so an interrupted
// demo continues where it stopped; --fresh starts over in a new folder.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"
#include "commands.h"
#include "hf_folder.h"
#include "llama.h"
#include "tokenizer.h"

// The frozen LLM's shape: 1.06M parameters (embeddings tied) with the world's 1,640-token
// vocabulary (vocab_size is taken from the world's tokenizer).
static const llama_config DEMO_MODEL = {
    .arch = LLAMA_ARCH_LLAMA, .dim = 128, .hidden_dim = 384, .n_layers = 4,
    .n_heads = 4, .n_kv_heads = 4, .max_seq_len = 512, .rope_theta = 10000.0, .norm_eps = 1e-5,
    .tie_embeddings = 1, .bos_id = -1, .eos_id = -1};

// Settings shared by every training stage, then each stage's own (key=value, as on the command
// line of pith lm / pretrain / finetune).
#define MAX_ARGS 64
static const char *const TRAIN_COMMON[] = {"per_device_train_batch_size=16", "logging_steps=25", "save_steps=0",
                                           "eval_batches=4", NULL};
static const char *const LM_SENTENCE_ARGS[] = {"cutoff_len=64", "max_target_len=48", "learning_rate=3e-3",
                                               "lr_scheduler_type=constant", "warmup_steps=50", "weight_decay=0.01", NULL};
// Sentences again, nine micro-batches in ten read after layer 0 (the no_layer0 regulariser): the copy
// the first stage learnt at layer 0 moves to the later layers, where a 500x prefix reaches.
static const char *const LM_DEEP_ARGS[] = {"cutoff_len=64", "max_target_len=48", "learning_rate=3e-3",
                                           "lr_scheduler_type=constant", "warmup_steps=20", "weight_decay=0.01",
                                           "no_layer0_share=0.9", NULL};
static const char *const LM_WINDOW_ARGS[] = {"cutoff_len=64", "max_target_len=48", "learning_rate=2e-3",
                                             "lr_scheduler_type=constant", "warmup_steps=20", "weight_decay=0.01",
                                             "no_layer0_share=0.5", NULL};
static const char *const LM_ARGS[] = {"cutoff_len=104", "max_target_len=48", "learning_rate=2e-3",
                                      "lr_scheduler_type=cosine", "warmup_steps=20", "weight_decay=0.01",
                                      "no_layer0_share=0.5", NULL};
static const char *const LORA_ARGS[] = {"lora_rank=16", "lora_alpha=32", "lora_dropout=0", "lora_target=all", NULL};
static const char *const PRETRAIN_ARGS[] = {"cutoff_len=104", "learning_rate=3e-3", "lr_scheduler_type=cosine",
                                            "warmup_steps=20", NULL};
// LLMLingua-2's keep/drop classifier (a 64-wide, 2-layer BERT on the world's WordPiece tokenizer), its
// labels what LLMLingua keeps with the base LM as its own scorer (pith distill method=classifier).
static const char *const CLASSIFIER_ARGS[] = {"method=classifier", "label_rate=0.4", "label_iterative_size=16",
                                              "cutoff_len=128", "learning_rate=1e-3", "lr_scheduler_type=cosine",
                                              "warmup_steps=50", "eval_steps=200", NULL};
static const char *const FINETUNE_ARGS[] = {"cutoff_len=104", "max_target_len=48", "learning_rate=2e-3",
                                            "lr_scheduler_type=cosine", "warmup_steps=20", NULL};

// The base LM's curriculum: sentence, window, then document contexts, each stage continuing the last.
static const struct {
  const char *stage, *data, *title;
  const char *const *args;
} LM_STAGES[4] = {
    {"lm_sentence", "qa_sentence.h5", "training the base LLM from scratch: the language, and answers from one sentence",
     LM_SENTENCE_ARGS},
    {"lm_deep", "qa_sentence.h5", "training it on: answers from one sentence, read after layer 0 (no_layer0_share)",
     LM_DEEP_ARGS},
    {"lm_window", "qa_window.h5", "training it on: answers from windows of 1-3 sentences", LM_WINDOW_ARGS},
    {"lm", "qa.h5", "training it on: answers from whole documents (this is the frozen LLM)", LM_ARGS}};

typedef struct {
  char out[1024];
  int threads, k, docs;
  int lm_steps[4];  // per LM_STAGES
  int pretrain_steps, finetune_steps, eval_examples;
  int classifier_steps, classifier_texts;  // LLMLingua-2's classifier: steps, texts the base LM labels
  double t0;
} demo;

static int exists(const char *path) { return access(path, F_OK) == 0; }

// argv building: a growing list of strdup'd strings.
typedef struct {
  char *v[MAX_ARGS + 1];
  int n;
} args;

static void arg(args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(args *a, const char *fmt, ...) {
  if (a->n >= MAX_ARGS) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  a->v[a->n++] = strdup(buf);
  a->v[a->n] = NULL;
}

static void arg_list(args *a, const char *const *list) {
  for (int i = 0; list[i]; i++) arg(a, "%s", list[i]);
}

static int stage_done(const demo *d, const char *stage) {
  char path[1200];
  snprintf(path, sizeof path, "%s/.done/%s", d->out, stage);
  return exists(path);
}

static void mark_done(const demo *d, const char *stage) {
  char path[1200];
  snprintf(path, sizeof path, "%s/.done", d->out);
  pith_mkdirs(path, NULL);
  snprintf(path, sizeof path, "%s/.done/%s", d->out, stage);
  FILE *f = fopen(path, "w");
  if (f) fclose(f);
}

// Run `pith CMD ARGS...` in this process, echoing the command line. 0 when it succeeded.
static int run_stage(demo *d, const char *stage, const char *title, int (*fn)(int, char **), args *a) {
  int rc = 0;
  double t = pith_now_s();
  printf("\n== %s  [%s, %.0f s into the demo]\n$ pith", title, stage, t - d->t0);
  for (int i = 0; i < a->n; i++) printf(" %s", a->v[i]);
  printf("\n");
  fflush(stdout);
  if (stage_done(d, stage)) {
    printf("(done in an earlier run: skipped)\n");
  } else {
    rc = fn(a->n, a->v);
    if (rc == 0) mark_done(d, stage);
    printf("(%s: %.0f s)\n", rc == 0 ? "done" : "FAILED", pith_now_s() - t);
  }
  fflush(stdout);
  for (int i = 0; i < a->n; i++) free(a->v[i]);
  a->n = 0;
  return rc;
}

// A training stage's command line: pith CMD train_file=OUT/world/DATA output_dir=OUT/STAGE max_steps
// threads, the settings every stage shares, then the stage's own. The caller adds the model.
static void train_args(args *a, const demo *d, const char *cmd, const char *data, const char *stage, int steps,
                       const char *const *own) {
  arg(a, "%s", cmd);
  arg(a, "train_file=%s/world/%s", d->out, data);
  arg(a, "output_dir=%s/%s", d->out, stage);
  arg(a, "max_steps=%d", steps);
  arg(a, "threads=%d", d->threads);
  arg_list(a, TRAIN_COMMON);
  arg_list(a, own);
}

// The classifier's config.json: a small BertForTokenClassification over the world's WordPiece tokenizer.
static int write_classifier_config(const demo *d, char *path, size_t len) {
  snprintf(path, len, "%s/classifier_config.json", d->out);
  pith_err err;
  char tok_dir[1200];
  snprintf(tok_dir, sizeof tok_dir, "%s/world/bert_tokenizer", d->out);
  tokenizer *tok = tokenizer_load(tok_dir, &err);
  if (!tok) {
    fprintf(stderr, "pith demo: %s\n", err.msg);
    return -1;
  }
  char json[1024];
  snprintf(json, sizeof json,
           "{\"architectures\": [\"BertForTokenClassification\"], \"model_type\": \"bert\", \"vocab_size\": %d,\n"
           " \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 128,\n"
           " \"hidden_act\": \"gelu\", \"hidden_dropout_prob\": 0.1, \"attention_probs_dropout_prob\": 0.1,\n"
           " \"max_position_embeddings\": 256, \"type_vocab_size\": 2, \"initializer_range\": 0.02,\n"
           " \"layer_norm_eps\": 1e-12, \"pad_token_id\": 0, \"id2label\": {\"0\": \"LABEL_0\", \"1\": \"LABEL_1\"},\n"
           " \"label2id\": {\"LABEL_0\": 0, \"LABEL_1\": 1}}\n",
           tokenizer_vocab_size(tok));
  tokenizer_free(tok);
  int rc = pith_write_file_atomic(path, json, strlen(json), &err);
  if (rc) fprintf(stderr, "pith demo: %s\n", err.msg);
  return rc;
}

static int write_model_config(const demo *d, char *path, size_t len) {
  snprintf(path, len, "%s/base_config.json", d->out);
  llama_config cfg = DEMO_MODEL;
  pith_err err;
  char tok_dir[1200];
  snprintf(tok_dir, sizeof tok_dir, "%s/world/tokenizer", d->out);
  tokenizer *tok = tokenizer_load(tok_dir, &err);
  if (tok) cfg.vocab_size = tokenizer_vocab_size(tok);
  tokenizer_free(tok);
  if (!tok || llama_config_validate(&cfg, &err)) {
    fprintf(stderr, "pith demo: %s\n", err.msg);
    return -1;
  }
  char *json = hf_config_json(&cfg, PT_F32);
  int rc = json ? pith_write_file_atomic(path, json, strlen(json), &err) : pith_fail(&err, "out of memory");
  free(json);
  if (rc) fprintf(stderr, "pith demo: %s\n", err.msg);
  return rc;
}

static int train_compressor(demo *d, const char *method) {
  args a = {0};
  char stage[64], title[256];
  snprintf(stage, sizeof stage, "%s_pretrain", method);
  snprintf(title, sizeof title, "pretraining the %s compressor: regenerate each text from its %d compress tokens",
           method, d->k);
  train_args(&a, d, "pretrain", "docs.h5", stage, d->pretrain_steps, PRETRAIN_ARGS);
  arg(&a, "model_name_or_path=%s/lm/model", d->out);
  arg(&a, "method=%s", method);
  arg(&a, "num_compress_tokens=%d", d->k);
  arg_list(&a, LORA_ARGS);
  if (run_stage(d, stage, title, cmd_pretrain, &a)) return -1;

  snprintf(stage, sizeof stage, "%s_finetune", method);
  snprintf(title, sizeof title, "fine-tuning the %s compressor: answer questions from the compress tokens", method);
  train_args(&a, d, "finetune", "qa.h5", stage, d->finetune_steps, FINETUNE_ARGS);
  arg(&a, "model_name_or_path=%s/lm/model", d->out);
  arg(&a, "init_from=%s/%s_pretrain", d->out, method);
  arg(&a, "method=%s", method);
  arg(&a, "num_compress_tokens=%d", d->k);
  arg_list(&a, LORA_ARGS);
  return run_stage(d, stage, title, cmd_finetune, &a);
}

// Eval folders are named like pith eval's own: dataset__model__method__k.
static const char *eval_name(const demo *d, const char *method, int qa) {
  static char name[128];
  snprintf(name, sizeof name, "%s__lm__%s__k%d", qa ? "qa" : "docs", method, d->k);
  return name;
}

static int export_and_eval(demo *d, const char *method, int with_baselines) {
  args a = {0};
  char stage[64], title[256];
  const char *phases[2] = {"pretrain", "finetune"};
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/export", d->out);
  pith_mkdirs(dir, NULL);
  for (int p = 0; p < 2; p++) {
    snprintf(stage, sizeof stage, "%s_%s_export", method, phases[p]);
    snprintf(title, sizeof title, "exporting the %s compressor (%s) as a PEFT adapter + compress embeddings", method,
             phases[p]);
    arg(&a, "export");
    arg(&a, "--run");
    arg(&a, "%s/%s_%s", d->out, method, phases[p]);
    arg(&a, "--out");
    arg(&a, "%s/export/%s_%s", d->out, method, phases[p]);
    arg(&a, "--force");
    if (run_stage(d, stage, title, cmd_export, &a)) return -1;

    int qa = p == 1;
    snprintf(stage, sizeof stage, "%s_%s_eval", method, qa ? "qa" : "regen");
    snprintf(title, sizeof title, "evaluating %s %s on held-out documents", method,
             qa ? "question answering" : "regeneration");
    arg(&a, "eval");
    arg(&a, "--compressor");
    arg(&a, "%s/export/%s_%s", d->out, method, phases[p]);
    arg(&a, "--data");
    arg(&a, "%s/world/%s", d->out, qa ? "qa.h5" : "docs.h5");
    arg(&a, "--task");
    arg(&a, "%s", qa ? "qa" : "regen");
    arg(&a, "--split");
    arg(&a, "test");
    arg(&a, "--max-examples");
    arg(&a, "%d", qa ? d->eval_examples : d->eval_examples / 4);
    arg(&a, "--baselines");
    arg(&a, "%s", !with_baselines ? "" : qa ? "full,none,truncated,no_layer0" : "none,truncated");
    if (with_baselines && qa) {  // hard compression to the compressor's k tokens
      arg(&a, "--hard");
      arg(&a, "llmlingua:k,llmlingua2:k,ehpc:k");
      arg(&a, "--l2-scorer");
      arg(&a, "%s/export/classifier", d->out);
      arg(&a, "--ehpc-heads");
      arg(&a, "%s/lm/model", d->out);
    }
    arg(&a, "--out");
    arg(&a, "%s/eval/%s", d->out, eval_name(d, method, qa));
    arg(&a, "--threads");
    arg(&a, "%d", d->threads);
    if (run_stage(d, stage, title, cmd_eval, &a)) return -1;
  }
  return 0;
}

// ---- the results table, from the eval folders' metrics.json ----

static cJSON *read_json(const char *path) {
  pith_err err;
  size_t n;
  char *text = pith_read_file(path, &n, &err);
  if (!text) return NULL;
  cJSON *j = cJSON_Parse(text);
  free(text);
  return j;
}

static double metric(const cJSON *metrics, const char *system, const char *name) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(metrics, "systems"), system);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, name);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

// The positions the system's decoder read for the context, mean per example (-1: not there).
static double tokens_read(const cJSON *metrics, const char *system) {
  const cJSON *v =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(metrics, "prompt_tokens"), system);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void row(FILE *f, const char *label, const double *v, int n) {
  fprintf(f, "| %-34s |", label);
  for (int i = 0; i < n; i++) {
    if (v[i] < 0) fprintf(f, " %7s |", "-");
    else fprintf(f, " %7.1f |", v[i]);
  }
  fprintf(f, "\n");
}

static void results_table(const demo *d, FILE *f) {
  char path[1200];
  cJSON *qa[2], *regen[2];
  const char *methods[2] = {"500x", "icae"};
  for (int m = 0; m < 2; m++) {
    snprintf(path, sizeof path, "%s/eval/%s/metrics.json", d->out, eval_name(d, methods[m], 1));
    qa[m] = read_json(path);
    snprintf(path, sizeof path, "%s/eval/%s/metrics.json", d->out, eval_name(d, methods[m], 0));
    regen[m] = read_json(path);
  }
  fprintf(f, "QA on held-out documents (SQuAD v1.1 F1 / EM; raw = un-normalised, as 500xCompressor reports)\n\n");
  fprintf(f, "| %-34s | %7s | %7s | %7s | %7s | %7s |\n|%s|---------|---------|---------|---------|---------|\n",
          "system", "F1", "EM", "raw F1", "raw EM", "tokens", "------------------------------------");
  const char *qa_metrics[4] = {"f1", "em", "raw_f1", "raw_em"};
  struct {
    const char *system, *label;
    int from;
  } qa_rows[] = {{"full", "full context (no compression)", 0},
                 {"none", "no context", 0},
                 {"truncated", "context truncated to k tokens", 0},
                 {"no_layer0", "context K/V without layer 0's", 0},
                 {"llmlingua@k", "LLMLingua, k tokens kept", 0},
                 {"llmlingua2@k", "LLMLingua-2, k tokens kept", 0},
                 {"ehpc@k", "EHPC, k tokens kept", 0},
                 {"llmlingua@k+500x", "LLMLingua's k tokens, then 500x", 0},
                 {"llmlingua2@k+500x", "LLMLingua-2's k tokens, then 500x", 0},
                 {"ehpc@k+500x", "EHPC's k tokens, then 500x", 0},
                 {"compressed", "500x compressor", 0},
                 {"compressed", "ICAE", 1}};
  for (size_t r = 0; r < sizeof qa_rows / sizeof qa_rows[0]; r++) {
    const cJSON *m = qa[qa_rows[r].from];
    double v[5];
    for (int i = 0; i < 4; i++) v[i] = m ? metric(m, qa_rows[r].system, qa_metrics[i]) : -1;
    v[4] = m ? tokens_read(m, qa_rows[r].system) : -1;
    row(f, qa_rows[r].label, v, 5);
  }
  fprintf(f, "\nRegeneration of held-out documents from the compressed prefix (ROUGE F, BLEU-4, exact match)\n\n");
  fprintf(f, "| %-34s | %7s | %7s | %7s | %7s | %7s |\n|%s|---------|---------|---------|---------|---------|\n",
          "system", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU-4", "EM", "------------------------------------");
  const char *regen_metrics[5] = {"rouge1", "rouge2", "rougeL", "bleu", "em"};
  struct {
    const char *system, *label;
    int from;
  } regen_rows[] = {{"none", "decoder with no prefix", 0},
                    {"truncated", "first k tokens, then the decoder", 0},
                    {"compressed", "500x compressor", 0},
                    {"compressed", "ICAE", 1}};
  for (size_t r = 0; r < sizeof regen_rows / sizeof regen_rows[0]; r++) {
    double v[5];
    for (int i = 0; i < 5; i++)
      v[i] = regen[regen_rows[r].from] ? metric(regen[regen_rows[r].from], regen_rows[r].system, regen_metrics[i]) : -1;
    row(f, regen_rows[r].label, v, 5);
  }
  fprintf(f, "\nk = %d compress tokens; contexts of up to 104 tokens; %d QA and %d regeneration examples.\n", d->k,
          d->eval_examples, d->eval_examples / 4);
  fprintf(f, "tokens: positions the decoder read for the context, mean per example. The hard methods keep about k of\n"
             "the context's tokens as text (pith eval --hard llmlingua:k,llmlingua2:k,ehpc:k): LLMLingua scores them\n"
             "with the base LM's perplexity, LLMLingua-2 with the demo's classifier (trained on what LLMLingua keeps),\n"
             "EHPC with the attention of the evaluator heads pith compress ehpc-probe found in the base LM;\n"
             "\"then 500x\": the 500x compressor encodes the kept text instead of the whole context.\n");
  fprintf(f, "\"Context K/V without layer 0's\": the context's own per-layer K/V as the question's prefix, layer 0's\n"
             "zeroed (pith eval --baselines no_layer0). A 500x prefix's layer-0 K/V never see the text: when this row\n"
             "is near \"no context\", the model reads answers at layer 0, where a 500x prefix cannot carry them.\n");
  for (int m = 0; m < 2; m++) cJSON_Delete(qa[m]), cJSON_Delete(regen[m]);
}

int cmd_demo(int argc, char **argv) {
  demo d = {.threads = (int)sysconf(_SC_NPROCESSORS_ONLN), .k = 16, .lm_steps = {1200, 1500, 800, 800},
            .pretrain_steps = 400, .finetune_steps = 400, .eval_examples = 200, .classifier_steps = 400,
            .classifier_texts = 1000, .t0 = pith_now_s()};
  const char *out = "runs/demo";
  int fresh = 0, quick = 0;
  const cli_opt opts[] = {
      {"--out", CLI_STR, &out, .metavar = "DIR", .help = "run folder (default runs/demo)"},
      {"--threads", CLI_INT, &d.threads, .metavar = "N", .min = 1, .max = CLI_INF,
       .help = "CPU threads (default: all cores)"},
      {"--k", CLI_INT, &d.k, .metavar = "N", .min = 1, .max = 64, .help = "compress tokens (default 16)"},
      {"--docs", CLI_INT, &d.docs, .metavar = "N", .min = 200, .max = CLI_INF,
       .help = "documents in the world (default 6000; 400 with --quick)"},
      {"--quick", CLI_FLAG, &quick,
       .help = "a few steps per stage: checks the pipeline in about a minute (numbers meaningless)"},
      {"--fresh", CLI_FLAG, &fresh, .help = "start over: refuse to reuse a folder that holds an earlier demo"},
  };
  const cli_spec spec = {
      "pith demo", CLI_OPTS(opts), .usage_on_error = 1,
      .about = "The whole pipeline on the embedded synthetic facts world, with no downloads (about 19 minutes on\n"
               "2 CPU cores): synthesise the world; train a tiny LLaMA on it from scratch (the frozen LLM);\n"
               "pretrain (regeneration) and fine-tune (QA) a 500x compressor and an ICAE one with the same k;\n"
               "export both as PEFT adapters; train LLMLingua-2's classifier on the base LM's own choices;\n"
               "evaluate both compressors against the full-context, no-context and truncated baselines and\n"
               "against hard compression (LLMLingua, LLMLingua-2, EHPC) to the same k tokens; print the results\n"
               "table (also in DIR/results.md) and write DIR/report.html (pith report: loss curves, scores,\n"
               "examples side by side; open it in a browser). Every stage prints the pith command it runs.\n"
               "A finished stage is skipped when the demo is run again on the same folder.\n\n"};
  int code;
  if (cli_command(&spec, argc, argv, &code)) return code;
  snprintf(d.out, sizeof d.out, "%s", out);
  if (quick) {
    d.lm_steps[0] = d.lm_steps[1] = d.lm_steps[2] = d.lm_steps[3] = 10, d.pretrain_steps = 10, d.finetune_steps = 10;
    d.classifier_steps = 10, d.classifier_texts = 60;
    d.eval_examples = 20;
  }
  if (d.docs == 0) d.docs = quick ? 400 : 6000;  // --docs N wins, before or after --quick
  if (fresh && exists(d.out)) {
    fprintf(stderr, "pith demo: %s exists; --fresh needs a new folder (remove it or pick another --out)\n", d.out);
    return 1;
  }
  pith_err err;
  if (pith_mkdirs(d.out, &err)) {
    fprintf(stderr, "pith demo: %s\n", err.msg);
    return 1;
  }
  printf("pith demo: run folder %s, %d threads, k=%d\n", d.out, d.threads, d.k);

  args a = {0};
  arg(&a, "data");
  arg(&a, "synth");
  arg(&a, "--dir");
  arg(&a, "%s/world", d.out);
  arg(&a, "--docs");
  arg(&a, "%d", d.docs);
  arg(&a, "--threads");
  arg(&a, "%d", d.threads);
  arg(&a, "--quiet");
  if (run_stage(&d, "world", "synthesising the facts world: abstracts, questions, a tokenizer", cmd_data, &a))
    return 1;

  char config[1200];
  if (write_model_config(&d, config, sizeof config)) return 1;
  for (int st = 0; st < 4; st++) {
    train_args(&a, &d, "lm", LM_STAGES[st].data, LM_STAGES[st].stage, d.lm_steps[st], LM_STAGES[st].args);
    if (st == 0) {
      arg(&a, "model_config=%s", config);
      arg(&a, "tokenizer=%s/world/tokenizer", d.out);
    } else {
      arg(&a, "model_name_or_path=%s/%s/model", d.out, LM_STAGES[st - 1].stage);
    }
    if (run_stage(&d, LM_STAGES[st].stage, LM_STAGES[st].title, cmd_lm, &a)) return 1;
  }

  // EHPC's evaluator heads of the base LM (DIR/ehpc.json), for the hard-compression rows.
  arg(&a, "compress");
  arg(&a, "ehpc-probe");
  arg(&a, "--model");
  arg(&a, "%s/lm/model", d.out);
  arg(&a, "--data");
  arg(&a, "%s/world/docs.h5", d.out);
  arg(&a, "--threads");
  arg(&a, "%d", d.threads);
  if (run_stage(&d, "ehpc_probe", "finding EHPC's evaluator heads in the base LM (needle probes)", cmd_compress, &a))
    return 1;

  // LLMLingua-2's classifier, taught what LLMLingua keeps with the base LM as its scorer, exported as
  // the HF folder pith eval (and llmlingua) reads.
  char cls_config[1200];
  if (write_classifier_config(&d, cls_config, sizeof cls_config)) return 1;
  train_args(&a, &d, "distill", "docs.h5", "classifier", d.classifier_steps, CLASSIFIER_ARGS);
  arg(&a, "model_config=%s", cls_config);
  arg(&a, "tokenizer=%s/world/bert_tokenizer", d.out);
  arg(&a, "target_model_name_or_path=%s/lm/model", d.out);
  arg(&a, "label_num_texts=%d", d.classifier_texts);
  if (run_stage(&d, "classifier", "training LLMLingua-2's keep/drop classifier on the base LM's own choices",
                cmd_distill, &a))
    return 1;
  char export_dir[1200];
  snprintf(export_dir, sizeof export_dir, "%s/export", d.out);
  if (pith_mkdirs(export_dir, &err)) {
    fprintf(stderr, "pith demo: %s\n", err.msg);
    return 1;
  }
  arg(&a, "export");
  arg(&a, "--run");
  arg(&a, "%s/classifier", d.out);
  arg(&a, "--out");
  arg(&a, "%s/export/classifier", d.out);
  arg(&a, "--force");
  if (run_stage(&d, "classifier_export", "exporting the classifier as a Hugging Face token-classifier folder",
                cmd_export, &a))
    return 1;

  const char *methods[2] = {"500x", "icae"};
  for (int m = 0; m < 2; m++)
    if (train_compressor(&d, methods[m])) return 1;
  for (int m = 0; m < 2; m++)
    if (export_and_eval(&d, methods[m], m == 0)) return 1;

  char path[1200];
  snprintf(path, sizeof path, "%s/results.md", d.out);
  FILE *f = fopen(path, "w");
  printf("\n== results (%.0f s in all; %s)\n\n", pith_now_s() - d.t0, path);
  results_table(&d, stdout);
  if (f) {
    fprintf(f, "# pith demo results\n\n");
    results_table(&d, f);
    fclose(f);
  }
  // The page to look at: every stage's curves, the scores, examples side by side. Rewritten on every
  // run (it takes no time), so it never shows an older table than results.md.
  a.n = 0;  // run_stage freed the last stage's arguments
  arg(&a, "report");
  arg(&a, "%s", d.out);
  arg(&a, "--title");
  arg(&a, "pith demo");
  printf("\n$ pith report %s --title 'pith demo'\n", d.out);
  fflush(stdout);
  int rc = cmd_report(a.n, a.v);
  for (int i = 0; i < a.n; i++) free(a.v[i]);
  if (rc == 0) printf("open %s/report.html in a browser: loss curves, scores and examples side by side\n", d.out);
  return rc ? 1 : 0;
}
