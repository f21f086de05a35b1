// pith eval: a soft-token compressor scored on what it was trained for, next to baselines.
//
//   qa     (QA corpus; after `pith finetune`) the encoder reads the context, the decoder reads
//          "Question: {q} Answer: " after the compressed prefix and answers greedily; SQuAD v1.1
//          EM/F1 over all gold answers, and 500xCompressor's raw EM/F1.
//   regen  (documents; after `pith pretrain`) the decoder regenerates the text from [bos] after the
//          compressed prefix; ROUGE-1/2/L, corpus BLEU-4 and exact match against the cut text.
//
// Baselines run the base model alone (no LoRA), greedily, with the same token budget: `full` reads
// the whole (cut) context, `none` nothing, `truncated` the first k context tokens, k being the
// compressor's number of compress tokens (so it spends as many positions as the compressed prefix).
//
// Decoding matches training exactly (compress_train.c: batch_tensors, open_loader; loader.c's QA
// rows): the context is padded to cutoff_len so the compress tokens sit where training put them,
// and the decoder prompt is the training row up to its answer. Generation reuses generate() with
// the compressed prefix as its K/V cache: for 500x the compress positions' K/V; for ICAE the K/V
// of [memory; AE?] run as input embeddings, which under causal attention is the same computation
// as comp_decode's [memory; AE?; tokens] (--verify checks this against comp_decode).
//
// Everything is evaluated before the output folder is created, so a failed evaluation writes
// nothing; the three files are then written atomically.
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "compressor.h"
#include "corpus.h"
#include "export.h"
#include "generate.h"
#include "hf_folder.h"
#include "ingest.h"
#include "metrics.h"
#include "run_config.h"
#include "task.h"
#include "tokenizer.h"
#include "train_state.h"

#define EVAL_FORMAT "pith-eval"
#define EVAL_VERSION 1
#define PATH_MAX_LEN 4096
#define VERIFY_TOL 1e-4  // logit gap tolerated between cached generation and comp_decode

typedef enum { EVAL_QA, EVAL_REGEN } eval_task;
enum { SYS_COMPRESSED, SYS_FULL, SYS_NONE, SYS_TRUNCATED, SYS_NO_LAYER0, N_SYS };
static const char *const SYS_NAMES[N_SYS] = {"compressed", "full", "none", "truncated", "no_layer0"};

// Metric columns per task, in table order.
static const char *const QA_METRICS[] = {"em", "f1", "raw_em", "raw_f1"};
static const char *const REGEN_METRICS[] = {"rouge1", "rouge2", "rougeL", "bleu", "em"};
#define N_QA_METRICS 4
#define N_REGEN_METRICS 5
#define MAX_METRICS 5

typedef struct {
  const char *compressor, *data, *task, *split, *baselines, *out, *name, *model, *tokenizer, *device;
  int max_examples, cutoff_len, max_new_tokens, k, threads, quiet, verify, bf16;
} eval_opts;

// Score sums of one system.
typedef struct {
  squad_acc squad;
  double raw_em, raw_f1, rouge1, rouge2, rougel, em;
  bleu_acc bleu;
  int64_t n;
} sys_scores;

typedef struct {
  eval_opts o;
  eval_task task;
  int split;  // corpus_split, or -1 for all
  corpus *corp;
  int64_t *items, n_items;  // corpus records to evaluate, in corpus order
  // The compressor: none, an export folder, or a run / checkpoint exported into tmp_dir/export.
  int have_comp, from_run;
  export_info info;
  char export_dir[PATH_MAX_LEN + 16], tmp_dir[PATH_MAX_LEN], ckpt_used[PATH_MAX_LEN];
  char model_dir[PATH_MAX_LEN], tok_path[PATH_MAX_LEN], out_dir[PATH_MAX_LEN], name[1024];
  int k, cutoff, max_new;
  int on[N_SYS];
  pt_device dev;
  tokenizer *tok;
  llama_model *model;
  compressor *comp;
  int32_t bos, pad;
  const int32_t *eos;
  int n_eos;
  int32_t *qp, *ap;  // the ids of "Question: " and " Answer: ", encoded as open_loader does
  size_t n_qp, n_ap;
  sys_scores sc[N_SYS];
  char *preds;  // predictions.jsonl so far
  size_t preds_len, preds_cap;
  int64_t verified;
  double verify_gap;
  int tty;
} evaluator;

static void usage(FILE *f) {
  fprintf(f,
          "usage: pith eval --compressor DIR|none --data FILE.h5 [--task qa|regen] [--split val|test|train|all]\n"
          "                 [--max-examples N] [--cutoff-len N] [--max-new-tokens N] [--baselines LIST]\n"
          "                 [--k N] [--out DIR] [--name NAME] [--model DIR] [--tokenizer PATH]\n"
          "                 [--device cpu|cuda:N] [--bf16] [--threads N] [--verify] [--quiet]\n\n"
          "Scores a soft-token compressor (500x or ICAE) and baselines on a pith corpus, decoding greedily the\n"
          "way pith pretrain/finetune train: QA (finetune: the decoder answers \"Question: {q} Answer: \" after\n"
          "the compressed context; SQuAD v1.1 EM/F1 against every gold answer, and the raw EM/F1 of\n"
          "500xCompressor's script) or regeneration (pretrain: the decoder rewrites the text from [bos];\n"
          "ROUGE-1/2/L F, corpus BLEU-4 (sacrebleu), exact match). Baselines use the base model alone.\n\n"
          "  --compressor DIR   an export folder (pith export), or a run / checkpoint folder (its newest\n"
          "                     checkpoint is exported into OUT/export first); 'none': baselines only\n"
          "  --data FILE.h5     the corpus (pith data ingest): documents for regen, QA for qa\n"
          "  --task qa|regen    default: qa for a QA corpus, regen for documents\n"
          "  --split S          val (default), test, train or all: which records to evaluate\n"
          "  --max-examples N   the first N records of the split, in corpus order (default: all)\n"
          "  --cutoff-len N     context tokens the encoder reads (default: the training run's cutoff_len,\n"
          "                     else 500); regen references are the text of the first N tokens\n"
          "  --max-new-tokens N generation budget of every system (default 32 for qa, cutoff_len + 8 for\n"
          "                     regen); generation also stops at an eos token of the tokenizer\n"
          "  --baselines LIST   comma-separated, from full,none,truncated,no_layer0 (default: the first three;\n"
          "                     '' for none):\n"
          "                       full       [bos] + the context (cut to cutoff_len) + the question prompt\n"
          "                                  (qa only: for regen the context is the answer)\n"
          "                       none       the question prompt alone (regen: [bos] alone)\n"
          "                       truncated  [bos] + the first k context tokens + the question prompt (regen:\n"
          "                                  the prediction is those k tokens' text and the continuation)\n"
          "                       no_layer0  qa only: the full context's own K/V as the question prompt's prefix,\n"
          "                                  with layer 0's zeroed (a 500x prefix's layer-0 K/V never see the\n"
          "                                  text); near 'none' means this model reads answers at layer 0, where\n"
          "                                  a 500x prefix cannot pass them on\n"
          "  --k N              k of the truncated baseline with --compressor none (default 16; with a\n"
          "                     compressor, its number of compress tokens)\n"
          "  --out DIR          where the results go (default runs/eval/NAME)\n"
          "  --name NAME        default <dataset>__<model>__<method>__k<k>\n"
          "  --model DIR        base model folder (default: the one the export names; required with none)\n"
          "  --tokenizer PATH   tokenizer (default: the export's, else the model folder)\n"
          "  --device D         cpu (default), cuda or cuda:N; computation in f32\n"
          "  --bf16             on CUDA: the base model in bf16, as bf16: true trains (half the memory);\n"
          "                     not with --verify\n"
          "  --threads N        CPU threads (default: libtorch's)\n"
          "  --verify           also check every compressed generation against comp_decode without a cache\n"
          "                     (each token must be a greedy choice of its logits, to 1e-4): slow, for tests\n"
          "  --quiet            no progress on stderr\n\n"
          "OUT receives predictions.jsonl (a line per example and system: system, index, id, question,\n"
          "prediction, golds | reference), metrics.json (task, n, systems: {system: {metric: value}}, retained:\n"
          "compressed / full in %% per metric (qa), compressor, data, split) and config.yaml (the resolved\n"
          "options); the table of scores goes to stdout. Scores are in [0, 100].\n");
}

// ---- small helpers ------------------------------------------------------------------------------

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

static int parse_int(const char *s, int lo, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > 1000000000) return -1;
  *out = (int)v;
  return 0;
}


// The last path component without trailing slashes and, when strip_ext, without its extension.
static void base_name(const char *path, int strip_ext, char *out, size_t len) {
  char buf[PATH_MAX_LEN];
  snprintf(buf, sizeof buf, "%s", path);
  for (size_t n = strlen(buf); n > 1 && buf[n - 1] == '/'; n--) buf[n - 1] = 0;
  const char *b = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
  snprintf(out, len, "%s", b);
  char *dot = strip_ext ? strrchr(out, '.') : NULL;
  if (dot && dot != out) *dot = 0;
}

static int preds_append(evaluator *ev, const char *s) {
  size_t n = strlen(s);
  if (ev->preds_len + n + 2 > ev->preds_cap) {
    size_t cap = (ev->preds_cap ? ev->preds_cap * 2 : 1 << 16) + n;
    char *p = realloc(ev->preds, cap);
    if (!p) return -1;
    ev->preds = p, ev->preds_cap = cap;
  }
  memcpy(ev->preds + ev->preds_len, s, n);
  ev->preds_len += n;
  ev->preds[ev->preds_len++] = '\n';
  ev->preds[ev->preds_len] = 0;
  return 0;
}

// ---- options ------------------------------------------------------------------------------------

static int parse_args(int argc, char **argv, eval_opts *o) {
  *o = (eval_opts){.split = "val", .baselines = "full,none,truncated", .device = "cpu", .max_examples = 0,
                   .cutoff_len = -1, .max_new_tokens = -1, .k = -1, .threads = 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    const char **str = NULL;
    int *num = NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 1;
    } else if (!strcmp(a, "--quiet")) {
      o->quiet = 1;
      continue;
    } else if (!strcmp(a, "--verify")) {
      o->verify = 1;
      continue;
    } else if (!strcmp(a, "--bf16")) {
      o->bf16 = 1;
      continue;
    }
    if (!strcmp(a, "--compressor")) str = &o->compressor;
    else if (!strcmp(a, "--data")) str = &o->data;
    else if (!strcmp(a, "--task")) str = &o->task;
    else if (!strcmp(a, "--split")) str = &o->split;
    else if (!strcmp(a, "--baselines")) str = &o->baselines;
    else if (!strcmp(a, "--out")) str = &o->out;
    else if (!strcmp(a, "--name")) str = &o->name;
    else if (!strcmp(a, "--model")) str = &o->model;
    else if (!strcmp(a, "--tokenizer")) str = &o->tokenizer;
    else if (!strcmp(a, "--device")) str = &o->device;
    else if (!strcmp(a, "--max-examples")) num = &o->max_examples;
    else if (!strcmp(a, "--cutoff-len")) num = &o->cutoff_len;
    else if (!strcmp(a, "--max-new-tokens")) num = &o->max_new_tokens;
    else if (!strcmp(a, "--k")) num = &o->k;
    else if (!strcmp(a, "--threads")) num = &o->threads;
    else return usage_error("unknown option '%s'", a);
    if (!v) return usage_error("%s needs a value", a);
    i++;
    if (str) *str = v;
    else if (parse_int(v, 1, num)) return usage_error("%s wants a positive integer, not '%s'", a, v);
  }
  if (!o->compressor || !o->data)
    return usage_error("%s is required", !o->compressor ? "--compressor DIR|none" : "--data FILE.h5");
  if (o->task && strcmp(o->task, "qa") && strcmp(o->task, "regen"))
    return usage_error("--task is qa or regen, not '%s'", o->task);
  if (strcmp(o->split, "val") && strcmp(o->split, "test") && strcmp(o->split, "train") && strcmp(o->split, "all"))
    return usage_error("--split is val, test, train or all, not '%s'", o->split);
  pt_device dev;  // a GPU that is not visible is load_models' error, not a usage error
  if (pt_device_parse(o->device, &dev) == -1) return usage_error("--device %s", pt_error());
  pt_error_clear();
  if (o->bf16 && !strcmp(o->device, "cpu"))
    return usage_error("--bf16 needs --device cuda (CPU evaluation runs in f32, as CPU training does)");
  // In bf16 the cached and uncached decoders round differently: on an H200 a logit gap of 0.188
  // appeared 63 tokens into a generation, so greedy choices can part on near-ties. Checked in f32.
  if (o->bf16 && o->verify) return usage_error("--verify checks in f32: leave out --bf16");
  int none = !strcmp(o->compressor, "none");
  if (none && !o->model) return usage_error("--compressor none needs --model DIR");
  if (!none && o->k > 0) return usage_error("--k is for --compressor none (a compressor has its own k)");
  return 0;
}

// Enables the baselines named in the comma-separated list; 2 (and a message) for an unknown name.
static int parse_baselines(evaluator *ev) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", ev->o.baselines);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    int found = 0;
    for (int s = SYS_FULL; s < N_SYS; s++)
      if (!strcmp(t, SYS_NAMES[s])) ev->on[s] = found = 1;
    if (!found) return usage_error("--baselines: unknown baseline '%s' (full, none, truncated, no_layer0)", t);
  }
  return 0;
}

// ---- setup --------------------------------------------------------------------------------------

// The cutoff_len of the training run recorded in an export's manifest ("source"."config"), or -1.
static int manifest_cutoff_len(const char *dir) {
  char path[PATH_MAX_LEN + 32];
  snprintf(path, sizeof path, "%s/%s", dir, EXPORT_MANIFEST);
  char *text = pith_read_file(path, NULL, NULL);
  cJSON *m = text ? cJSON_Parse(text) : NULL;
  free(text);
  const cJSON *src = cJSON_GetObjectItemCaseSensitive(m, "source");
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(src, "config");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "cutoff_len");
  int n = -1;
  if (cJSON_IsString(v) && parse_int(v->valuestring, 1, &n)) n = -1;
  if (cJSON_IsNumber(v) && v->valuedouble >= 1) n = (int)v->valuedouble;
  cJSON_Delete(m);
  return n;
}

// The compressor folder: an export is read as is; a run or checkpoint folder is exported into a
// temporary folder (moved to OUT/export at the end), so a failure leaves OUT untouched.
static int resolve_compressor(evaluator *ev, pith_err *err) {
  const char *src = ev->o.compressor;
  if (!strcmp(src, "none")) return 0;
  ev->have_comp = 1;
  char p[PATH_MAX_LEN + 32];
  if (!pith_is_dir(src)) return pith_fail(err, "%s: no such compressor folder", src);
  snprintf(p, sizeof p, "%s/%s", src, EXPORT_MANIFEST);
  if (pith_is_file(p)) {
    snprintf(ev->export_dir, sizeof ev->export_dir, "%s", src);
  } else {
    char ckpt[PATH_MAX_LEN];
    snprintf(p, sizeof p, "%s/%s", src, TRAIN_STATE_DONE);
    int found = pith_is_file(p) ? 0 : train_state_latest(src, ckpt, sizeof ckpt, err);
    if (found < 0) return -1;
    if (found == 1)
      return pith_fail(err, "%s: neither an export folder (%s) nor a run or checkpoint folder (checkpoints/step-N/ "
                            "with %s)", src, EXPORT_MANIFEST, TRAIN_STATE_DONE);
    const char *tmp = getenv("TMPDIR");
    snprintf(ev->tmp_dir, sizeof ev->tmp_dir, "%s/pith-eval-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(ev->tmp_dir)) {
      int e = errno;
      ev->tmp_dir[0] = 0;
      return pith_fail(err, "cannot create a temporary folder: %s", strerror(e));
    }
    snprintf(ev->export_dir, sizeof ev->export_dir, "%s/export", ev->tmp_dir);
    export_options opt = {.force = 1};
    if (export_run(src, ev->export_dir, &opt, ev->ckpt_used, sizeof ev->ckpt_used, err)) return -1;
    ev->from_run = 1;
  }
  return export_read_info(ev->export_dir, &ev->info, err);
}

static int open_data(evaluator *ev, pith_err *err) {
  ev->corp = corpus_open(ev->o.data, err);
  if (!ev->corp) return -1;
  const corpus_info *ci = corpus_get_info(ev->corp);
  eval_task natural = ci->kind == CORPUS_QA ? EVAL_QA : EVAL_REGEN;
  ev->task = !ev->o.task ? natural : !strcmp(ev->o.task, "qa") ? EVAL_QA : EVAL_REGEN;
  if (ev->task != natural)
    return pith_fail(err, "%s: a %s corpus, so --task %s does not apply (qa needs a QA corpus, regen documents)",
                     ev->o.data, corpus_kind_name(ci->kind), ev->o.task);
  ev->split = !strcmp(ev->o.split, "all") ? -1 : !strcmp(ev->o.split, "train") ? CORPUS_SPLIT_TRAIN
              : !strcmp(ev->o.split, "val") ? CORPUS_SPLIT_VAL : CORPUS_SPLIT_TEST;
  int64_t n = ci->n_records;
  uint8_t *splits = malloc(n ? (size_t)n : 1);
  ev->items = malloc(sizeof *ev->items * (size_t)(n ? n : 1));
  if (!splits || !ev->items) {
    free(splits);
    return pith_fail(err, "out of memory");
  }
  if (n && corpus_read_splits(ev->corp, 0, n, splits, err)) {
    free(splits);
    return -1;
  }
  for (int64_t i = 0; i < n && (ev->o.max_examples <= 0 || ev->n_items < ev->o.max_examples); i++)
    if (ev->split < 0 || splits[i] == ev->split) ev->items[ev->n_items++] = i;
  free(splits);
  if (ev->n_items == 0)
    return pith_fail(err, "%s: no records in the %s split (--split chooses another)", ev->o.data, ev->o.split);
  return 0;
}

static int load_models(evaluator *ev, pith_err *err) {
  const eval_opts *o = &ev->o;
  snprintf(ev->model_dir, sizeof ev->model_dir, "%s", o->model ? o->model : ev->info.base_model);
  // The export's tokenizer, unless it is just its base model folder and --model replaces that.
  int tok_is_model = !ev->have_comp || !strcmp(ev->info.tokenizer, ev->info.base_model);
  snprintf(ev->tok_path, sizeof ev->tok_path, "%s",
           o->tokenizer ? o->tokenizer : tok_is_model ? ev->model_dir : ev->info.tokenizer);
  if (o->threads > 0) pt_set_num_threads(o->threads);
  if (pt_device_parse(o->device, &ev->dev)) return pith_fail(err, "--device %s", pt_error());

  ev->tok = tokenizer_load(ev->tok_path, err);
  if (!ev->tok) return -1;
  ev->n_eos = tokenizer_eos_ids(ev->tok, &ev->eos);
  if (ev->n_eos < 1) return pith_fail(err, "%s: the tokenizer names no eos token", ev->tok_path);
  // As the trainer: bos falls back to eos, padding to eos.
  ev->bos = tokenizer_bos_id(ev->tok) >= 0 ? tokenizer_bos_id(ev->tok) : ev->eos[0];
  ev->pad = tokenizer_pad_id(ev->tok) >= 0 ? tokenizer_pad_id(ev->tok) : ev->eos[0];
  if (ev->task == EVAL_QA &&
      (tokenizer_encode(ev->tok, TASK_QA_QUESTION_PREFIX, strlen(TASK_QA_QUESTION_PREFIX), 0, &ev->qp, &ev->n_qp, err) ||
       tokenizer_encode(ev->tok, TASK_QA_ANSWER_PREFIX, strlen(TASK_QA_ANSWER_PREFIX), 0, &ev->ap, &ev->n_ap, err)))
    return -1;

  const corpus_info *ci = corpus_get_info(ev->corp);
  if (ingest_warn_other_tokenizer(o->data, ci, ev->tok, ev->tok_path, stderr, err) < 0) return -1;
  ev->model = hf_model_load(ev->model_dir, ev->o.bf16 ? PT_BF16 : PT_F32, ev->dev, err);
  if (!ev->model) return -1;
  if (ci->vocab_size > ev->model->cfg.vocab_size)
    return pith_fail(err, "%s: token ids up to %lld, but the model %s has %d tokens (another tokenizer?)", o->data,
                     (long long)ci->vocab_size - 1, ev->model_dir, ev->model->cfg.vocab_size);
  if (ev->bos >= ev->model->cfg.vocab_size || ev->pad >= ev->model->cfg.vocab_size)
    return pith_fail(err, "%s: the tokenizer's bos or pad id (%d, %d) is beyond the model's %d tokens (another "
                          "tokenizer?)", ev->tok_path, ev->bos, ev->pad, ev->model->cfg.vocab_size);
  if (ev->have_comp) {
    if (export_load(ev->export_dir, ev->model, &ev->comp, err)) return -1;
    // A finetuned ICAE decoder reads no AE token, and the export cannot say (export.h).
    if (ev->task == EVAL_QA) ev->comp->cfg.ae_token = 0;
  }
  return 0;
}

// ---- generation ---------------------------------------------------------------------------------

// Greedy generation after an optional prefix K/V; *out without a final eos (the eos is dropped).
static int run_generate(evaluator *ev, pt_tensor *const *pk, pt_tensor *const *pv, const int32_t *prompt, int n,
                        int32_t **out, int *n_out, pith_err *err) {
  gen_config gc = gen_config_default();
  gc.max_new_tokens = ev->max_new;
  gc.eos_ids = ev->eos;
  gc.n_eos = ev->n_eos;
  return generate(ev->model, NULL, pk, pv, prompt, n, &gc, NULL, NULL, out, n_out, err);
}

static int is_eos(const evaluator *ev, int32_t id) {
  for (int i = 0; i < ev->n_eos; i++)
    if (ev->eos[i] == id) return 1;
  return 0;
}

// --verify: the decoder's logits from comp_decode on prompt + gen (no cache, the compressor's own
// input layout) must pick every generated token greedily, to VERIFY_TOL.
static int verify_greedy(evaluator *ev, const comp_code *code, const int32_t *prompt, int n_prompt,
                         const int32_t *gen, int n_gen, pith_err *err) {
  if (n_gen == 0) return 0;
  int M = n_prompt + n_gen - 1, V = ev->model->cfg.vocab_size;
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)M);
  float *logits = malloc(sizeof(float) * (size_t)M * (size_t)V);
  int rc = ids && logits ? 0 : pith_fail(err, "out of memory");
  for (int j = 0; j < M && !rc; j++) ids[j] = j < n_prompt ? prompt[j] : gen[j - n_prompt];
  pt_tensor *dec = rc ? NULL : pt_to_device(pt_from_data(ids, PT_I64, PT_SHAPE(1, M), PT_CPU), ev->model->device);
  if (!rc && !dec) rc = pith_fail(err, "verify: %s", pt_error());
  pt_tensor *lg = dec ? comp_decode(ev->comp, code, dec, NULL, err) : NULL;
  if (!rc && !lg) rc = -1;  // comp_decode said why
  if (!rc && pt_to_data(pt_to_dtype(lg, PT_F32), logits, sizeof(float) * (size_t)M * V)) {
    rc = pith_fail(err, "verify: %s", pt_error());
    pt_error_clear();
  }
  for (int s = 0; s < n_gen && !rc; s++) {
    const float *row = logits + (size_t)(n_prompt - 1 + s) * V;
    float best = row[0];
    for (int v = 1; v < V; v++) best = row[v] > best ? row[v] : best;
    double gap = (double)best - row[gen[s]];
    if (gap > ev->verify_gap) ev->verify_gap = gap;
    if (!(gap <= VERIFY_TOL))
      rc = pith_fail(err, "verify: generated token %d (id %d) is %.3g below comp_decode's best logit: the cached "
                          "generation and comp_decode disagree", s, (int)gen[s], gap);
  }
  free(ids);
  free(logits);
  if (!rc) ev->verified++;
  return rc;
}

// The compressed system: encode text (padded to cutoff_len, as in training), then generate after
// the compressed prefix. Tensors live in the caller's scope.
static int gen_compressed(evaluator *ev, const int32_t *text, int n_text, const int32_t *prompt, int n_prompt,
                          int32_t **out, int *n_out, pith_err *err) {
  const llama_model *m = ev->model;
  int N = ev->cutoff;
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)N);
  uint8_t *mask = malloc((size_t)N);
  if (!ids || !mask) {
    free(ids), free(mask);
    return pith_fail(err, "out of memory");
  }
  for (int t = 0; t < N; t++) {
    ids[t] = t < n_text ? text[t] : ev->pad;
    mask[t] = t < n_text;
  }
  pt_tensor *ti = pt_to_device(pt_from_data(ids, PT_I64, PT_SHAPE(1, N), PT_CPU), m->device);
  pt_tensor *tm = pt_to_device(pt_from_data(mask, PT_BOOL, PT_SHAPE(1, N), PT_CPU), m->device);
  free(ids), free(mask);
  if (!ti || !tm) return pith_fail(err, "compressed: %s", pt_error());
  comp_code code;
  if (comp_encode(ev->comp, ti, tm, NULL, &code, err)) return -1;
  // The decoder's tokens continue after the prefix (positions P.., under either 500x position
  // policy), exactly what generate() does with a prefix; --verify checks it against comp_decode.
  pt_tensor **pk, **pv;
  int rc = comp_prefix_kv(ev->comp, &code, &pk, &pv, err);
  if (!rc) {
    rc = run_generate(ev, pk, pv, prompt, n_prompt, out, n_out, err);
    free(pk), free(pv);
  }
  if (!rc && ev->o.verify) {  // the eos that stopped generation is checked too
    rc = verify_greedy(ev, &code, prompt, n_prompt, *out, *n_out, err);
    if (rc) free(*out), *out = NULL;
  }
  comp_code_free(&code);
  return rc;
}

// The no_layer0 baseline: [bos] + the context through the base model; its per-layer K/V, layer 0's
// set to zero, are the prefix of the question prompt (which continues at their positions, as the
// full prompt does). A 500x prefix's layer-0 K/V come from the compress embeddings alone, so this
// is the full context as an encoder that reproduced it exactly at every later layer would give it.
static int gen_no_layer0(evaluator *ev, const int32_t *ctx, int n_ctx, int lead, const int32_t *prompt, int n_prompt,
                         int32_t **out, int *n_out, pith_err *err) {
  const llama_model *m = ev->model;
  int T = lead + n_ctx;
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)T);
  if (!ids) return pith_fail(err, "out of memory");
  if (lead) ids[0] = ev->bos;
  for (int i = 0; i < n_ctx; i++) ids[lead + i] = ctx[i];
  llama_inputs in = {.ids = pt_to_device(pt_from_data(ids, PT_I64, PT_SHAPE(1, T), PT_CPU), m->device), .want_kv = 1,
                     .no_logits = 1};
  free(ids);
  llama_outputs o;
  if (!in.ids) return pith_fail(err, "no_layer0: %s", pt_error());
  if (llama_forward(m, &in, &o, err)) return -1;
  o.k[0] = pt_zeros(pt_shape_of(o.k[0]), m->dtype, m->device);
  o.v[0] = pt_zeros(pt_shape_of(o.v[0]), m->dtype, m->device);
  int rc = run_generate(ev, o.k, o.v, prompt, n_prompt, out, n_out, err);
  llama_outputs_free(&o);
  return rc;
}

// ---- scoring ------------------------------------------------------------------------------------

static cJSON *json_strings(const char *const *s, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
  return a;
}

// Score one prediction and record its line of predictions.jsonl.
static int record(evaluator *ev, int sys, const corpus_record *rec, const char *pred, const char *const *golds,
                  int n_golds, const char *reference, pith_err *err) {
  sys_scores *s = &ev->sc[sys];
  int bad = 0;
  if (ev->task == EVAL_QA) {
    bad = squad_acc_add(&s->squad, pred, golds, n_golds);
    s->raw_em += metrics_raw_em(pred, golds, n_golds);
    s->raw_f1 += metrics_raw_f1(pred, golds, n_golds);
  } else {
    double r1, r2, rl;
    bad = metrics_rouge(pred, reference, &r1, &r2, &rl) || bleu_acc_add(&s->bleu, pred, reference);
    s->rouge1 += r1, s->rouge2 += r2, s->rougel += rl;
    s->em += metrics_exact_match(pred, reference);
  }
  s->n++;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "system", SYS_NAMES[sys]);
  cJSON_AddNumberToObject(j, "index", (double)rec->index);
  if (rec->id && *rec->id) cJSON_AddStringToObject(j, "id", rec->id);
  if (ev->task == EVAL_QA) cJSON_AddStringToObject(j, "question", rec->question.text);
  cJSON_AddStringToObject(j, "prediction", pred);
  if (ev->task == EVAL_QA) cJSON_AddItemToObject(j, "golds", json_strings(golds, n_golds));
  else cJSON_AddStringToObject(j, "reference", reference);
  char *line = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (bad || isnan(s->raw_f1 + s->rouge1) || !line || preds_append(ev, line)) bad = 1;
  free(line);
  return bad ? pith_fail(err, "out of memory while scoring") : 0;
}

// The dataset score of system sys for metric m (a name of QA_METRICS / REGEN_METRICS).
static double score(const evaluator *ev, int sys, const char *m) {
  const sys_scores *s = &ev->sc[sys];
  double n = s->n ? (double)s->n : 1;
  if (ev->task == EVAL_QA) {
    if (!strcmp(m, "em")) return squad_acc_em(&s->squad);
    if (!strcmp(m, "f1")) return squad_acc_f1(&s->squad);
    if (!strcmp(m, "raw_em")) return 100 * s->raw_em / n;
    return 100 * s->raw_f1 / n;
  }
  if (!strcmp(m, "rouge1")) return 100 * s->rouge1 / n;
  if (!strcmp(m, "rouge2")) return 100 * s->rouge2 / n;
  if (!strcmp(m, "rougeL")) return 100 * s->rougel / n;
  if (!strcmp(m, "bleu")) return bleu_acc_score(&s->bleu);
  return 100 * s->em / n;
}

// A malloc'd decode of ids (special tokens left out, as skip_special_tokens=True), with the
// surrounding spaces trimmed: a tokenizer that adds a prefix space when encoding gives it back here.
static char *decode(evaluator *ev, const int32_t *ids, int n, pith_err *err) {
  char *s = tokenizer_decode(ev->tok, ids, (size_t)n, 1, err);
  if (!s) return NULL;
  size_t b = strspn(s, " \t\n"), e = strlen(s);
  while (e > b && strchr(" \t\n", s[e - 1])) e--;
  memmove(s, s + b, e - b);
  s[e - b] = 0;
  return s;
}

// Concatenates id arrays into dst (which must hold them all); returns the count.
// An empty part may be NULL (memcpy must not see NULL, even for 0 bytes).
static int concat(int32_t *dst, const int32_t *a, int na, const int32_t *b, int nb, const int32_t *c, int nc) {
  if (na) memcpy(dst, a, sizeof *a * (size_t)na);
  if (nb) memcpy(dst + na, b, sizeof *b * (size_t)nb);
  if (nc) memcpy(dst + na + nb, c, sizeof *c * (size_t)nc);
  return na + nb + nc;
}

// One record through every system.
static int eval_record(evaluator *ev, corpus_record *rec, pith_err *err) {
  int qa = ev->task == EVAL_QA;
  const corpus_field *ctx = qa ? &rec->context : &rec->doc;
  int n_ctx = (int)(ctx->n_tokens < ev->cutoff ? ctx->n_tokens : ev->cutoff);
  int k = ev->k < n_ctx ? ev->k : n_ctx;
  // The decoder prompt of training (loader.c's QA row up to the answer; regen: [bos]).
  int n_dp = qa ? (int)(ev->n_qp + rec->question.n_tokens + ev->n_ap) : 1;
  int32_t *dp = malloc(sizeof(int32_t) * (size_t)n_dp);
  // Baseline prompts: [bos] (unless the context begins with it) + context part + decoder prompt.
  int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(1 + n_ctx + n_dp));
  const char **golds = malloc(sizeof(char *) * (size_t)(rec->n_answers + 1));
  if (!dp || !prompt || !golds) {
    free(dp), free(prompt), free(golds);
    return pith_fail(err, "out of memory");
  }
  if (qa) concat(dp, ev->qp, (int)ev->n_qp, rec->question.tokens, (int)rec->question.n_tokens, ev->ap, (int)ev->n_ap);
  else dp[0] = ev->bos;
  for (int i = 0; i < rec->n_answers; i++) golds[i] = rec->answers[i].text;
  char *reference = qa ? NULL : decode(ev, ctx->tokens, n_ctx, err);
  int lead = n_ctx > 0 && ctx->tokens[0] == ev->bos ? 0 : 1;
  int rc = !qa && !reference ? -1 : 0;

  for (int sys = 0; sys < N_SYS && !rc; sys++) {
    if (!ev->on[sys]) continue;
    int32_t *gen = NULL, *shown = NULL;
    int n_gen = 0, n_shown = 0, n_prompt = 0;
    pt_scope s = pt_scope_begin();
    if (sys == SYS_COMPRESSED) {
      rc = gen_compressed(ev, ctx->tokens, n_ctx, dp, n_dp, &gen, &n_gen, err);
    } else if (sys == SYS_NO_LAYER0) {
      rc = gen_no_layer0(ev, ctx->tokens, n_ctx, lead, dp, n_dp, &gen, &n_gen, err);
    } else {
      int part = sys == SYS_FULL ? n_ctx : sys == SYS_TRUNCATED ? k : 0;
      if (sys == SYS_NONE) n_prompt = concat(prompt, dp, n_dp, NULL, 0, NULL, 0);
      else if (qa) n_prompt = concat(prompt, &ev->bos, lead, ctx->tokens, part, dp, n_dp);
      else n_prompt = concat(prompt, &ev->bos, lead, ctx->tokens, part, NULL, 0);
      rc = run_generate(ev, NULL, NULL, prompt, n_prompt, &gen, &n_gen, err);
    }
    pt_scope_end(s);
    if (rc) break;
    if (n_gen > 0 && is_eos(ev, gen[n_gen - 1])) n_gen--;
    // Regen's truncated baseline is scored on the k tokens it was given and their continuation.
    int keep = !qa && sys == SYS_TRUNCATED ? k : 0;
    shown = malloc(sizeof(int32_t) * (size_t)(keep + n_gen + 1));
    if (!shown) rc = pith_fail(err, "out of memory");
    else n_shown = concat(shown, ctx->tokens, keep, gen, n_gen, NULL, 0);
    char *pred = rc ? NULL : decode(ev, shown, n_shown, err);
    if (!rc && !pred) rc = -1;
    if (!rc) rc = record(ev, sys, rec, pred, golds, rec->n_answers, reference, err);
    free(pred);
    free(shown);
    free(gen);
  }
  free(reference);
  free(dp);
  free(prompt);
  free(golds);
  return rc;
}

static void progress(evaluator *ev, int64_t done, double t0, int final) {
  if (ev->o.quiet) return;
  int64_t every = ev->n_items / 10 > 0 ? ev->n_items / 10 : 1;
  if (!ev->tty && !final && done % every) return;
  const char *m = ev->task == EVAL_QA ? "f1" : "rougeL";
  char line[512];
  int len = snprintf(line, sizeof line, "eval %s %lld/%lld", ev->task == EVAL_QA ? "qa" : "regen", (long long)done,
                     (long long)ev->n_items);
  for (int s = 0; s < N_SYS; s++)
    if (ev->on[s] && len < (int)sizeof line)
      len += snprintf(line + len, sizeof line - len, "  %s %lld %s %.1f", SYS_NAMES[s], (long long)ev->sc[s].n, m,
                      score(ev, s, m));
  double el = pith_now_s() - t0;
  if (len < (int)sizeof line) snprintf(line + len, sizeof line - len, "  %.1fs", el);
  if (ev->tty) fprintf(stderr, "\r%s%s", line, final ? "\n" : "");
  else fprintf(stderr, "%s\n", line);
  fflush(stderr);
}

static int evaluate(evaluator *ev, pith_err *err) {
  corpus_record rec = {0};
  int rc = 0;
  double t0 = pith_now_s();
  int was = pt_set_grad_enabled(0);
  for (int64_t i = 0; i < ev->n_items && !rc; i++) {
    rc = corpus_read(ev->corp, ev->items[i], CORPUS_READ_ALL, &rec, err);
    if (!rc) rc = eval_record(ev, &rec, err);
    if (!rc) progress(ev, i + 1, t0, i + 1 == ev->n_items);
  }
  pt_set_grad_enabled(was);
  corpus_record_free(&rec);
  if (!rc && ev->o.verify && !ev->o.quiet && ev->on[SYS_COMPRESSED])
    fprintf(stderr, "verify: %lld compressed generations are comp_decode's greedy choices (largest gap %.2g)\n",
            (long long)ev->verified, ev->verify_gap);
  return rc;
}

// ---- outputs ------------------------------------------------------------------------------------

static int n_metrics(const evaluator *ev, const char *const **names) {
  *names = ev->task == EVAL_QA ? QA_METRICS : REGEN_METRICS;
  return ev->task == EVAL_QA ? N_QA_METRICS : N_REGEN_METRICS;
}

static int write_json(const char *dir, const char *name, cJSON *j, pith_err *err) {
  char path[PATH_MAX_LEN + 64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *text = cJSON_Print(j), *buf = NULL;
  size_t n = text ? strlen(text) : 0;
  if (text) buf = malloc(n + 2);
  int rc = buf ? 0 : pith_fail(err, "%s: out of memory", path);
  if (buf) {
    memcpy(buf, text, n);
    buf[n] = '\n', buf[n + 1] = 0;
    rc = pith_write_file_atomic(path, buf, n + 1, err);
  }
  free(text);
  free(buf);
  return rc;
}

static int write_metrics(evaluator *ev, int argc, char **argv, pith_err *err) {
  const char *const *names;
  int nm = n_metrics(ev, &names);
  cJSON *j = cJSON_CreateObject(), *systems = cJSON_CreateObject(), *ret = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "format", EVAL_FORMAT "-metrics");
  cJSON_AddNumberToObject(j, "format_version", EVAL_VERSION);
  cJSON_AddStringToObject(j, "task", ev->task == EVAL_QA ? "qa" : "regen");
  cJSON_AddNumberToObject(j, "n", (double)ev->n_items);
  for (int s = 0; s < N_SYS; s++) {
    if (!ev->on[s]) continue;
    cJSON *o = cJSON_AddObjectToObject(systems, SYS_NAMES[s]);
    for (int m = 0; m < nm; m++) cJSON_AddNumberToObject(o, names[m], score(ev, s, names[m]));
  }
  cJSON_AddItemToObject(j, "systems", systems);
  // Retained: what the compressed prefix keeps of the full context's score (qa), null where full is 0.
  if (ev->task == EVAL_QA && ev->on[SYS_COMPRESSED] && ev->on[SYS_FULL])
    for (int m = 0; m < nm; m++) {
      double full = score(ev, SYS_FULL, names[m]);
      if (full > 0) cJSON_AddNumberToObject(ret, names[m], 100 * score(ev, SYS_COMPRESSED, names[m]) / full);
      else cJSON_AddNullToObject(ret, names[m]);
    }
  cJSON_AddItemToObject(j, "retained", ret);
  cJSON *c = cJSON_AddObjectToObject(j, "compressor");
  if (ev->have_comp) {
    cJSON_AddStringToObject(c, "path", ev->o.compressor);
    cJSON_AddStringToObject(c, "method", ev->info.comp.method == COMP_ICAE ? "icae" : "500x");
    cJSON_AddNumberToObject(c, "k", ev->info.comp.k);
    if (ev->info.comp.method == COMP_500X)
      cJSON_AddStringToObject(c, "position_policy",
                              ev->info.comp.positions == COMP_POS_REFERENCE ? "reference" : "consistent");
    else cJSON_AddBoolToObject(c, "ae_token", ev->comp->cfg.ae_token);
    cJSON_AddNumberToObject(c, "step", (double)ev->info.step);
    cJSON_AddStringToObject(c, "checkpoint", ev->info.checkpoint);
    cJSON_AddNumberToObject(c, "lora_rank", ev->info.lora.rank);
  } else {
    cJSON_AddStringToObject(c, "method", "none");
    cJSON_AddNumberToObject(c, "k", ev->k);
  }
  cJSON_AddStringToObject(j, "base_model", ev->model_dir);
  cJSON_AddStringToObject(j, "tokenizer", ev->tok_path);
  cJSON_AddStringToObject(j, "data", ev->o.data);
  cJSON_AddStringToObject(j, "split", ev->o.split);
  cJSON_AddNumberToObject(j, "cutoff_len", ev->cutoff);
  cJSON_AddNumberToObject(j, "max_new_tokens", ev->max_new);
  char cmd[4096] = "pith";
  for (int i = 0; i < argc; i++)
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", argv[i]);
  cJSON_AddStringToObject(j, "command", cmd);
  int rc = write_json(ev->out_dir, "metrics.json", j, err);
  cJSON_Delete(j);
  return rc;
}

static int write_config(evaluator *ev, pith_err *err) {
  static const rc_key schema[] = {
    {"compressor", RC_STRING, "", ""}, {"export", RC_STRING, "", ""}, {"method", RC_STRING, "", ""},
    {"k", RC_INT, "0", ""}, {"data", RC_STRING, "", ""}, {"task", RC_STRING, "", ""},
    {"split", RC_STRING, "", ""}, {"n_examples", RC_INT, "0", ""}, {"max_examples", RC_INT, "0", ""},
    {"cutoff_len", RC_INT, "0", ""}, {"max_new_tokens", RC_INT, "0", ""}, {"baselines", RC_STRING, "", ""},
    {"model", RC_STRING, "", ""}, {"tokenizer", RC_STRING, "", ""}, {"device", RC_STRING, "", ""},
    {"bf16", RC_BOOL, "false", ""}, {"threads", RC_INT, "0", ""}, {"verify", RC_BOOL, "false", ""},
    {"out", RC_STRING, "", ""},
    {"name", RC_STRING, "", ""},
  };
  char baselines[64] = "", kv[PATH_MAX_LEN + 64];
  for (int s = SYS_FULL; s < N_SYS; s++)
    if (ev->on[s]) snprintf(baselines + strlen(baselines), sizeof baselines - strlen(baselines), "%s%s",
                            *baselines ? "," : "", SYS_NAMES[s]);
  const char *method = !ev->have_comp ? "none" : ev->info.comp.method == COMP_ICAE ? "icae" : "500x";
  struct {
    const char *key, *val;
    long long num;
  } vals[] = {
    {"compressor", ev->o.compressor, 0}, {"export", ev->have_comp ? ev->export_dir : "", 0}, {"method", method, 0},
    {"k", NULL, ev->k}, {"data", ev->o.data, 0}, {"task", ev->task == EVAL_QA ? "qa" : "regen", 0},
    {"split", ev->o.split, 0}, {"n_examples", NULL, ev->n_items}, {"max_examples", NULL, ev->o.max_examples},
    {"cutoff_len", NULL, ev->cutoff}, {"max_new_tokens", NULL, ev->max_new}, {"baselines", baselines, 0},
    {"model", ev->model_dir, 0}, {"tokenizer", ev->tok_path, 0}, {"device", ev->o.device, 0},
    {"bf16", ev->o.bf16 ? "true" : "false", 0}, {"threads", NULL, ev->o.threads},
    {"verify", ev->o.verify ? "true" : "false", 0}, {"out", ev->out_dir, 0},
    {"name", ev->name, 0},
  };
  // The export folder moved into OUT when the compressor came from a run.
  char moved[PATH_MAX_LEN + 16];
  snprintf(moved, sizeof moved, "%s/export", ev->out_dir);
  if (ev->from_run) vals[1].val = moved;
  run_config *c = run_config_new();
  int rc = c ? 0 : pith_fail(err, "out of memory");
  for (size_t i = 0; i < sizeof vals / sizeof vals[0] && !rc; i++) {
    if (vals[i].val) snprintf(kv, sizeof kv, "%s=%s", vals[i].key, vals[i].val);
    else snprintf(kv, sizeof kv, "%s=%lld", vals[i].key, vals[i].num);
    rc = run_config_set(c, kv, err);
  }
  if (!rc) rc = run_config_resolve(c, schema, (int)(sizeof schema / sizeof schema[0]), err);
  char *yaml = rc ? NULL : run_config_yaml(c);
  if (!rc && !yaml) rc = pith_fail(err, "out of memory");
  if (!rc) {
    const char *head = "# pith eval: the resolved options of this evaluation (metrics.json holds the scores)\n";
    size_t n = strlen(head) + strlen(yaml);
    char *text = malloc(n + 1);
    if (!text) {
      rc = pith_fail(err, "out of memory");
    } else {
      snprintf(text, n + 1, "%s%s", head, yaml);
      char path[PATH_MAX_LEN + 32];
      snprintf(path, sizeof path, "%s/config.yaml", ev->out_dir);
      rc = pith_write_file_atomic(path, text, n, err);
      free(text);
    }
  }
  free(yaml);
  run_config_free(c);
  return rc;
}

// OUT/export: the temporary export renamed into place, or exported again from the same checkpoint
// where a rename cannot (another file system, an earlier export in the way).
static int place_export(evaluator *ev, pith_err *err) {
  if (!ev->from_run) return 0;
  char dst[PATH_MAX_LEN + 16];
  snprintf(dst, sizeof dst, "%s/export", ev->out_dir);
  struct stat st;
  if (stat(dst, &st) != 0 && rename(ev->export_dir, dst) == 0) return 0;
  export_options opt = {.force = 1};
  return export_run(ev->ckpt_used, dst, &opt, NULL, 0, err);
}

static int write_outputs(evaluator *ev, int argc, char **argv, pith_err *err) {
  char path[PATH_MAX_LEN + 32];
  if (pith_mkdirs(ev->out_dir, err) || place_export(ev, err)) return -1;
  snprintf(path, sizeof path, "%s/predictions.jsonl", ev->out_dir);
  if (pith_write_file_atomic(path, ev->preds ? ev->preds : "", ev->preds_len, err)) return -1;
  return write_metrics(ev, argc, argv, err) || write_config(ev, err) ? -1 : 0;
}

static void print_table(const evaluator *ev) {
  const char *const *names;
  int nm = n_metrics(ev, &names);
  char method[64];
  if (ev->have_comp)
    snprintf(method, sizeof method, "%s k=%d", ev->info.comp.method == COMP_ICAE ? "icae" : "500x", ev->info.comp.k);
  else snprintf(method, sizeof method, "no compressor (truncated k=%d)", ev->k);
  printf("pith eval: %s on %s (%s split, %lld examples), %s, cutoff_len %d, max_new_tokens %d\n",
         ev->task == EVAL_QA ? "qa" : "regen", ev->o.data, ev->o.split, (long long)ev->n_items, method, ev->cutoff,
         ev->max_new);
  printf("%-12s", "system");
  for (int m = 0; m < nm; m++) printf(" %8s", names[m]);
  printf("\n");
  for (int s = 0; s < N_SYS; s++) {
    if (!ev->on[s]) continue;
    printf("%-12s", SYS_NAMES[s]);
    for (int m = 0; m < nm; m++) printf(" %8.2f", score(ev, s, names[m]));
    printf("\n");
  }
  if (ev->task == EVAL_QA && ev->on[SYS_COMPRESSED] && ev->on[SYS_FULL]) {
    printf("%-12s", "retained %");
    for (int m = 0; m < nm; m++) {
      double full = score(ev, SYS_FULL, names[m]);
      if (full > 0) printf(" %8.1f", 100 * score(ev, SYS_COMPRESSED, names[m]) / full);
      else printf(" %8s", "-");
    }
    printf("\n");
  }
  printf("results in %s/ (metrics.json, predictions.jsonl, config.yaml)\n", ev->out_dir);
}

// ---- the command --------------------------------------------------------------------------------

int cmd_eval(int argc, char **argv) {
  evaluator ev = {.tty = isatty(STDERR_FILENO)};
  int pr = parse_args(argc, argv, &ev.o);
  if (pr) return pr == 1 ? 0 : 2;
  pith_err err = {{0}};
  int rc = 1;
  const eval_opts *o = &ev.o;
  ev.on[SYS_COMPRESSED] = strcmp(o->compressor, "none") != 0;
  if (parse_baselines(&ev)) return 2;
  if (open_data(&ev, &err) || resolve_compressor(&ev, &err)) goto fail;

  if (ev.task == EVAL_REGEN && ev.on[SYS_FULL]) {
    // The context is the reference: reading it in full is not a baseline.
    ev.on[SYS_FULL] = 0;
    if (strstr(o->baselines, "full") && strcmp(o->baselines, "full,none,truncated") && !o->quiet)
      fprintf(stderr, "pith eval: no 'full' baseline for regen (the context is the answer); skipped\n");
  }
  if (ev.task == EVAL_REGEN && ev.on[SYS_NO_LAYER0]) {  // a question-answering diagnostic
    ev.on[SYS_NO_LAYER0] = 0;
    if (!o->quiet) fprintf(stderr, "pith eval: no 'no_layer0' baseline for regen (it is for qa); skipped\n");
  }
  int any = 0;
  for (int s = 0; s < N_SYS; s++) any |= ev.on[s];
  if (!any) {
    fprintf(stderr, "pith eval: nothing to evaluate (--compressor none and no baseline for this task)\n");
    rc = 2;
    goto done;
  }
  ev.k = ev.have_comp ? ev.info.comp.k : o->k > 0 ? o->k : 16;
  int from_manifest = ev.have_comp ? manifest_cutoff_len(ev.export_dir) : -1;
  ev.cutoff = o->cutoff_len > 0 ? o->cutoff_len : from_manifest > 0 ? from_manifest : 500;
  ev.max_new = o->max_new_tokens > 0 ? o->max_new_tokens : ev.task == EVAL_QA ? 32 : ev.cutoff + 8;
  if (load_models(&ev, &err)) goto fail;

  // runs/eval/<dataset>__<model>__<method>__k<k> unless named.
  char data_name[256], model_name[256];
  base_name(o->data, 1, data_name, sizeof data_name);
  base_name(ev.model_dir, 0, model_name, sizeof model_name);
  if (o->name) snprintf(ev.name, sizeof ev.name, "%s", o->name);
  else snprintf(ev.name, sizeof ev.name, "%s__%s__%s__k%d", data_name, model_name,
                !ev.have_comp ? "none" : ev.info.comp.method == COMP_ICAE ? "icae" : "500x", ev.k);
  if (o->out) snprintf(ev.out_dir, sizeof ev.out_dir, "%s", o->out);
  else snprintf(ev.out_dir, sizeof ev.out_dir, "runs/eval/%s", ev.name);
  if (strchr(ev.name, '/') && !o->out) {
    pith_fail(&err, "--name '%s': a name, not a path (--out DIR sets the folder)", ev.name);
    goto fail;
  }

  if (evaluate(&ev, &err) || write_outputs(&ev, argc, argv, &err)) goto fail;
  print_table(&ev);
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "pith eval: %s\n", err.msg[0] ? err.msg : pt_error());
  rc = 1;
done:
  if (ev.tmp_dir[0]) pith_remove_tree(ev.tmp_dir);
  comp_free(ev.comp);
  llama_free(ev.model);
  tokenizer_free(ev.tok);
  corpus_close(ev.corp);
  free(ev.items);
  free(ev.qp);
  free(ev.ap);
  free(ev.preds);
  return rc;
}
