// The training loop of pith's drivers: config → model, tokenizer, loader → steps of AdamW →
// metrics, evaluation, checkpoints. Compressors (pretrain, finetune) train the LoRA, compress
// embeddings (and AE token) over a frozen model; `pith lm` trains every weight of the base model.
#include "compress_train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compressor.h"
#include "hf_folder.h"
#include "ingest.h"
#include "loader.h"
#include "run_config.h"
#include "task.h"
#include "tokenizer.h"
#include "train_state.h"

// Keys every driver reads.
static const rc_key COMMON_KEYS[] = {
    {"tokenizer", RC_STRING, "", "tokenizer file or folder (default: the model folder)"},
    {"output_dir", RC_STRING, "", "run folder (default runs/RUN_NAME)"},
    {"per_device_train_batch_size", RC_INT, "4", "examples per micro-batch"},
    {"gradient_accumulation_steps", RC_INT, "1", "micro-batches per optimizer step"},
    {"learning_rate", RC_FLOAT, "1e-4", "peak learning rate"},
    {"weight_decay", RC_FLOAT, "0", "AdamW decoupled weight decay"},
    {"adam_beta1", RC_FLOAT, "0.9", ""},
    {"adam_beta2", RC_FLOAT, "0.999", ""},
    {"adam_epsilon", RC_FLOAT, "1e-8", ""},
    {"lr_scheduler_type", RC_STRING, "constant", "constant | cosine | linear (after warmup)"},
    {"warmup_steps", RC_INT, "300", "linear warmup steps"},
    {"num_train_epochs", RC_FLOAT, "3", "epochs over the train split (when max_steps <= 0)"},
    {"max_steps", RC_INT, "-1", "optimizer steps; overrides num_train_epochs when > 0"},
    {"max_grad_norm", RC_FLOAT, "1.0", "gradient clipping (0: off)"},
    {"seed", RC_INT, "42", "initialisation, shuffling and dropout"},
    {"logging_steps", RC_INT, "10", "metrics every N steps"},
    {"eval_steps", RC_INT, "0", "validation loss every N steps (0: at the end only)"},
    {"eval_batches", RC_INT, "8", "validation batches per evaluation"},
    {"save_steps", RC_INT, "500", "checkpoint every N steps (and at the end)"},
    {"save_total_limit", RC_INT, "3", "checkpoints kept (0: all)"},
    {"bf16", RC_BOOL, "false",
     "CUDA: the frozen model in bf16, computing in bf16, the trainable weights and optimizer in f32; CPU "
     "runs in f32; pith lm refuses it (it trains every weight)"},
    {"device", RC_STRING, "cpu", "cpu | cuda | cuda:N"},
    {"threads", RC_INT, "0", "CPU threads (0: libtorch's default)"},
    {"nan_policy", RC_STRING, "stop", "a NaN/Inf loss or gradient: stop | skip (the step)"},
    {"peak_tflops", RC_FLOAT, "0",
     "the device's peak TFLOP/s at the compute dtype, for MFU in the progress line (0: no MFU); e.g. 989 "
     "for an H100 SXM in bf16"},
};

// pretrain / finetune: a compressor over a frozen model.
static const rc_key COMPRESS_KEYS[] = {
    {"model_name_or_path", RC_STRING, NULL, "Hugging Face model folder of the frozen LLM"},
    {"train_file", RC_STRING, NULL, "corpus (HDF5, from pith data ingest): documents to pretrain, QA to finetune"},
    {"run_name", RC_STRING, "compress", "name of the run"},
    {"method", RC_STRING, "500x", "500x | icae"},
    {"num_compress_tokens", RC_INT, "16", "k: compress (memory) tokens"},
    {"position_policy", RC_STRING, "consistent", "500x key positions: reference (as the paper's code) | consistent"},
    {"cutoff_len", RC_INT, "500", "context tokens per example (cut or padded)"},
    {"max_target_len", RC_INT, "64", "finetune: decoder tokens (question prompt + answer + eos)"},
    {"lora_rank", RC_INT, "64", ""},
    {"lora_alpha", RC_FLOAT, "32", ""},
    {"lora_dropout", RC_FLOAT, "0.05", ""},
    {"lora_target", RC_STRING, "q_proj,v_proj", "projections to adapt (PEFT names) or all"},
    {"init_from", RC_STRING, "", "finetune: a pretrain run folder or checkpoint folder to start from"},
};

// lm: the base model itself, every weight.
static const rc_key LM_KEYS[] = {
    {"model_name_or_path", RC_STRING, "", "model folder to continue training (or set model_config)"},
    {"model_config", RC_STRING, "", "a config.json: start from random weights of this shape instead"},
    {"train_file", RC_STRING, NULL,
     "corpus (HDF5): documents ([bos] text eos) or QA ([bos] context Question: q Answer: a eos)"},
    {"run_name", RC_STRING, "lm", "name of the run"},
    {"cutoff_len", RC_INT, "512", "documents: tokens per row; QA: context tokens"},
    {"max_target_len", RC_INT, "64", "QA: question prompt + answer + eos tokens"},
    {"answer_loss_weight", RC_FLOAT, "1",
     "QA: weight of the answer and eos tokens in the loss (others 1); > 1 speeds up learning to answer"},
};

#define MAX_SCHEMA 64
static int task_schema(train_task task, rc_key *out) {
  int n = 0;
  const rc_key *own = task == TASK_LM ? LM_KEYS : COMPRESS_KEYS;
  size_t n_own = task == TASK_LM ? sizeof LM_KEYS / sizeof LM_KEYS[0] : sizeof COMPRESS_KEYS / sizeof COMPRESS_KEYS[0];
  for (size_t i = 0; i < n_own; i++) out[n++] = own[i];
  for (size_t i = 0; i < sizeof COMMON_KEYS / sizeof COMMON_KEYS[0]; i++) out[n++] = COMMON_KEYS[i];
  return n;
}

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

typedef struct {
  train_task task;
  run_config *cfg;
  char run_dir[2048];
  tokenizer *tok;
  llama_model *model;
  compressor *comp;
  loader *train, *val;
  pt_tensor *params[4096];
  char *names[4096];
  int n_params;
  pt_adamw *opt;
  pt_gen *dropout_gen;
  task_tokens tt;  // bos, eos, pad and the QA prompt
  corpus_kind data_kind;  // of train_file
  FILE *metrics;
  int tty;
} trainer;

// See compress_train.h.
double train_row_flops(const llama_config *c, int trains_base, double enc, double dec, double prefix) {
  double attn_w = (double)c->n_heads * c->head_dim, kv_w = (double)c->n_kv_heads * c->head_dim;
  double layer = 2 * (double)c->dim * (attn_w + kv_w) + 3 * (double)c->dim * c->hidden_dim;
  double head = (double)c->dim * c->vocab_size, L = c->n_layers;
  // Causal attention: token i attends to the prefix and i + 1 earlier positions (itself included).
  double fwd = 2 * (L * layer * (enc + dec) + head * dec) +
               4 * attn_w * L * (enc * (enc + 1) / 2 + dec * (prefix + (dec + 1) / 2));
  return fwd * (trains_base ? 3 : 2);
}

static double lr_at(const run_config *c, int64_t step, int64_t total) {
  double peak = run_config_float(c, "learning_rate");
  int64_t warm = run_config_int(c, "warmup_steps");
  if (step < warm) return peak * (double)(step + 1) / (double)warm;
  const char *kind = run_config_str(c, "lr_scheduler_type");
  double progress = total > warm ? (double)(step - warm) / (double)(total - warm) : 1.0;
  if (!strcmp(kind, "cosine")) return peak * 0.5 * (1 + cos(M_PI * fmin(progress, 1.0)));
  if (!strcmp(kind, "linear")) return peak * fmax(0.0, 1 - progress);
  return peak;
}

// The LM's rows from a QA batch: [bos] context question_prefix question answer_prefix answer eos,
// each token predicting the next (the language and the answers are learnt together). *weights
// gets per-target loss weights when answer_loss_weight is not 1, else NULL.
static void lm_qa_tensors(const trainer *t, const loader_batch *lb, pt_device dev, comp_batch *b,
                          pt_tensor **weights) {
  int B = lb->B, N = lb->N, M = lb->M, L = 1;
  for (int r = 0; r < lb->n_rows; r++) {  // rows as long as the longest, not 1 + N + M: no padding to run
    int n = 1;
    for (int j = 0; j < N && lb->mask[r * N + j]; j++) n++;
    for (int j = 0; j < M && lb->dec_mask[r * M + j]; j++) n++;
    if (n > L) L = n;
  }
  double answer_weight = run_config_float(t->cfg, "answer_loss_weight");
  int64_t *ids = malloc(sizeof(int64_t) * B * L), *tgt = malloc(sizeof(int64_t) * B * L);
  uint8_t *mask = calloc((size_t)B * L, 1), *is_answer = calloc((size_t)B * L, 1);
  float *w = malloc(sizeof(float) * B * L);
  for (int r = 0; r < B; r++) {
    int64_t *row = &ids[r * L];
    uint8_t *ans = &is_answer[r * L];
    int n = 0;
    if (r < lb->n_rows) {
      row[n++] = t->tt.bos;
      for (int j = 0; j < N && lb->mask[r * N + j]; j++) row[n++] = lb->ids[r * N + j];
      for (int j = 0; j < M && lb->dec_mask[r * M + j]; j++) {
        ans[n] = lb->dec_loss_mask[r * M + j];
        row[n++] = lb->dec_ids[r * M + j];
      }
    }
    for (int j = 0; j < L; j++) {
      mask[r * L + j] = j < n;
      if (j >= n) row[j] = t->tt.pad;
      tgt[r * L + j] = j + 1 < n ? row[j + 1] : -100;
      w[r * L + j] = j + 1 >= n ? 0.0f : ans[j + 1] ? (float)answer_weight : 1.0f;
    }
  }
  *weights = answer_weight == 1.0 ? NULL : pt_to_device(pt_from_data(w, PT_F32, PT_SHAPE(B * L), PT_CPU), dev);
  free(w), free(is_answer);
  b->text_ids = b->text_mask = NULL;
  b->dec_ids = pt_to_device(pt_from_data(ids, PT_I64, PT_SHAPE(B, L), PT_CPU), dev);
  b->dec_mask = pt_to_device(pt_from_data(mask, PT_BOOL, PT_SHAPE(B, L), PT_CPU), dev);
  b->dec_targets = pt_to_device(pt_from_data(tgt, PT_I64, PT_SHAPE(B, L), PT_CPU), dev);
  free(ids), free(tgt), free(mask);
}

// Loader batch → the compressor's tensors. Pretrain: decoder reads [bos] + text and predicts
// text + eos. Finetune: decoder reads the QA row and predicts each next answer token (and eos).
// The LM on documents reads and predicts what the pretrain decoder does.
static void batch_tensors(const trainer *t, const loader_batch *lb, pt_device dev, comp_batch *b,
                          pt_tensor **weights) {
  *weights = NULL;
  if (t->task == TASK_LM && t->data_kind == CORPUS_QA) {
    lm_qa_tensors(t, lb, dev, b, weights);
    return;
  }
  int B = lb->B, N = lb->N;
  int64_t *text = malloc(sizeof(int64_t) * B * N);
  for (int i = 0; i < B * N; i++) text[i] = lb->ids[i];
  int regen = t->task != TASK_FINETUNE;
  int M = regen ? N + 1 : lb->M;
  int64_t *dec = malloc(sizeof(int64_t) * B * M), *tgt = malloc(sizeof(int64_t) * B * M);
  uint8_t *dmask = calloc((size_t)B * M, 1);
  for (int r = 0; r < B; r++) {
    for (int j = 0; j < M; j++) {
      int64_t *d = &dec[r * M + j], *g = &tgt[r * M + j];
      *g = -100;
      if (regen) {
        int len = 0;
        while (len < N && lb->mask[r * N + len]) len++;
        *d = j == 0 ? t->tt.bos : j <= len ? lb->ids[r * N + j - 1] : t->tt.pad;
        dmask[r * M + j] = j <= len && (r < lb->n_rows);
        if (r < lb->n_rows && j < len) *g = lb->ids[r * N + j];
        if (r < lb->n_rows && j == len) *g = t->tt.eos;
      } else {
        *d = lb->dec_ids[r * M + j];
        dmask[r * M + j] = lb->dec_mask[r * M + j];
        if (j + 1 < M && lb->dec_loss_mask[r * M + j + 1]) *g = lb->dec_ids[r * M + j + 1];
      }
    }
  }
  b->text_ids = pt_to_device(pt_from_data(text, PT_I64, PT_SHAPE(B, N), PT_CPU), dev);
  b->text_mask = pt_to_device(pt_from_data(lb->mask, PT_BOOL, PT_SHAPE(B, N), PT_CPU), dev);
  b->dec_ids = pt_to_device(pt_from_data(dec, PT_I64, PT_SHAPE(B, M), PT_CPU), dev);
  b->dec_mask = pt_to_device(pt_from_data(dmask, PT_BOOL, PT_SHAPE(B, M), PT_CPU), dev);
  b->dec_targets = pt_to_device(pt_from_data(tgt, PT_I64, PT_SHAPE(B, M), PT_CPU), dev);
  free(text), free(dec), free(tgt), free(dmask);
}

static loader *open_loader(const trainer *t, int split, const loader_cursor *resume, pith_err *err) {
  const run_config *c = t->cfg;
  loader_config lc = {0};
  lc.mode = t->data_kind == CORPUS_QA ? LOADER_QA : LOADER_CUT;
  lc.batch_size = (int)run_config_int(c, "per_device_train_batch_size");
  lc.seq_len = (int)run_config_int(c, "cutoff_len");
  lc.dec_len = (int)run_config_int(c, "max_target_len");
  lc.tokens = t->tt;
  lc.split = split;
  lc.shuffle = split == CORPUS_SPLIT_TRAIN;
  lc.seed = (uint64_t)run_config_int(c, "seed");
  lc.drop_last = split == CORPUS_SPLIT_TRAIN;
  return loader_open(run_config_str(c, "train_file"), &lc, resume, err);
}

// Mean next-token cross-entropy of the model alone (no compressor) over the batch's targets;
// with weights (one per target, flattened), the weighted mean sum(w * ce) / sum(w).
static pt_tensor *lm_loss(const llama_model *m, const comp_batch *b, const pt_tensor *weights, pith_err *err) {
  llama_inputs in = {.ids = b->dec_ids, .mask = b->dec_mask};
  llama_outputs out;
  if (llama_forward(m, &in, &out, err)) return NULL;
  pt_tensor *logits = pt_reshape(pt_to_dtype(out.logits, PT_F32), PT_SHAPE(-1, m->cfg.vocab_size));
  pt_tensor *targets = pt_reshape(b->dec_targets, PT_SHAPE(-1));
  pt_tensor *loss = !weights ? pt_cross_entropy(logits, targets, -100, PT_REDUCE_MEAN)
                    : pt_div(pt_sum(pt_mul(pt_cross_entropy(logits, targets, -100, PT_REDUCE_NONE), weights)),
                             pt_sum(weights));
  if (!loss) pith_fail(err, "loss: %s", pt_error());
  return loss;
}

// Mean loss over up to eval_batches validation batches; with_prefix 0 gives the decoder alone.
static double evaluate(trainer *t, int with_prefix, pith_err *err) {
  loader *l = open_loader(t, CORPUS_SPLIT_VAL, NULL, err);
  if (!l) return NAN;
  int was = pt_set_grad_enabled(0);
  double total = 0;
  int n = 0, max = (int)run_config_int(t->cfg, "eval_batches");
  loader_batch lb;
  while (n < max && loader_next(l, &lb, err) == 1) {
    pt_scope s = pt_scope_begin();
    comp_batch b;
    pt_tensor *weights;
    batch_tensors(t, &lb, t->model->device, &b, &weights);
    pt_tensor *loss = with_prefix ? comp_loss(t->comp, &b, NULL, err) : lm_loss(t->model, &b, weights, err);
    double v = loss ? pt_item(loss) : NAN;
    pt_scope_end(s);
    if (isnan(v)) break;
    total += v;
    n++;
  }
  pt_set_grad_enabled(was);
  loader_close(l);
  return n ? total / n : NAN;
}

static int save_checkpoint(trainer *t, int64_t step, double loss, pith_err *err) {
  char cursor[LOADER_CURSOR_MAX], metrics[128];
  loader_cursor cur = loader_tell(t->train);
  loader_cursor_format(&cur, cursor, sizeof cursor);
  snprintf(metrics, sizeof metrics, "{\"loss\": %.6f}", loss);
  size_t rng_len = pt_gen_get_state(t->dropout_gen, NULL, 0);
  void *rng = malloc(rng_len);
  pt_gen_get_state(t->dropout_gen, rng, rng_len);
  char *yaml = run_config_yaml(t->cfg);
  train_state st = {t->n_params, t->params, (const char *const *)t->names, t->opt, step, cursor, rng, rng_len, yaml, metrics, NULL};
  int rc = train_state_save(t->run_dir, &st, (int)run_config_int(t->cfg, "save_total_limit"), err);
  free(rng);
  free(yaml);
  return rc;
}

static void name_params(trainer *t) {
  int n = 0;
  const lora_adapter *l = t->comp->lora;
  char buf[128];
  for (int i = 0; i < l->n_layers; i++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (l->a[i][p]) {
        snprintf(buf, sizeof buf, "lora.%d.%s.A", i, LLAMA_PROJ_NAMES[p]);
        t->names[n++] = strdup(buf);
        snprintf(buf, sizeof buf, "lora.%d.%s.B", i, LLAMA_PROJ_NAMES[p]);
        t->names[n++] = strdup(buf);
      }
  t->names[n++] = strdup("compress");
  if (t->comp->ae) t->names[n++] = strdup("ae");
}

// Every weight of the model becomes a trainable parameter under its Hugging Face name.
static int lm_param(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  (void)shape;
  trainer *t = vctx;
  if (t->n_params >= (int)(sizeof t->params / sizeof t->params[0]) || pt_set_requires_grad(*slot, 1)) return -1;
  t->params[t->n_params] = *slot;
  t->names[t->n_params++] = strdup(name);
  return 0;
}

// The LM: a model folder to continue, or random weights shaped by model_config (a config.json).
static int setup_lm(trainer *t, pt_dtype dtype, pt_device dev, pith_err *err) {
  const run_config *c = t->cfg;
  const char *model_dir = run_config_str(c, "model_name_or_path"), *shape = run_config_str(c, "model_config");
  if (!*model_dir == !*shape) return pith_fail(err, "set exactly one of model_name_or_path and model_config");
  if (*shape) {
    llama_config mc;
    if (hf_config_load(shape, &mc, err)) return -1;
    if (mc.vocab_size < tokenizer_vocab_size(t->tok))
      return pith_fail(err, "%s: vocab_size %d is smaller than the tokenizer's %d", shape, mc.vocab_size,
                       tokenizer_vocab_size(t->tok));
    t->model = llama_new_random(&mc, (uint64_t)run_config_int(c, "seed"), dtype, dev, err);
  } else {
    t->model = hf_model_load(model_dir, dtype, dev, err);
  }
  if (!t->model) return -1;
  if (llama_visit_weights(t->model, lm_param, t)) return pith_fail(err, "parameters: %s", pt_error());
  return 0;
}

// The corpus's ids come from a tokenizer of data_vocab tokens, and the trainer adds the tokenizer's
// bos, eos and pad: the model must have an embedding for each.
static int check_vocab(const trainer *t, const char *train_file, int64_t data_vocab, pith_err *err) {
  int V = t->model->cfg.vocab_size;
  if (data_vocab > V)
    return pith_fail(err, "%s: token ids up to %lld, but the model has %d tokens (another tokenizer?)", train_file,
                     (long long)data_vocab - 1, V);
  int32_t special[3] = {t->tt.bos, t->tt.eos, t->tt.pad};
  const char *names[3] = {"bos", "eos", "pad"};
  for (int i = 0; i < 3; i++)
    if (special[i] >= V)
      return pith_fail(err, "the tokenizer's %s id %d is beyond the model's %d tokens (another tokenizer?)", names[i],
                       special[i], V);
  return 0;
}

static int setup(trainer *t, int resume, pith_err *err) {
  const run_config *c = t->cfg;
  const char *model_dir = run_config_str(c, "model_name_or_path");
  const char *tok_path = *run_config_str(c, "tokenizer") ? run_config_str(c, "tokenizer") : model_dir;
  if (!*tok_path) return pith_fail(err, "tokenizer: not set (and no model_name_or_path to take it from)");
  if (run_config_int(c, "threads") > 0) pt_set_num_threads((int)run_config_int(c, "threads"));
  pt_device dev;
  if (pt_device_parse(run_config_str(c, "device"), &dev)) return pith_fail(err, "device %s", pt_error());
  pt_dtype dtype = run_config_bool(c, "bf16") && dev != PT_CPU ? PT_BF16 : PT_F32;
  // pith lm's parameters are the model's own weights, which would then be bf16 with no f32 copy.
  if (t->task == TASK_LM && run_config_bool(c, "bf16"))
    return pith_fail(err, "bf16: pith lm trains every weight of the model and keeps them in f32; bf16 is for "
                          "pretrain and finetune (a frozen bf16 model under f32 LoRA and compress weights)");

  t->tok = tokenizer_load(tok_path, err);
  if (!t->tok) return -1;
  if (task_tokens_init(&t->tt, t->tok, tok_path, err)) return -1;
  const char *train_file = run_config_str(c, "train_file");
  corpus *data = corpus_open(train_file, err);
  if (!data) return -1;
  t->data_kind = corpus_get_info(data)->kind;
  int64_t data_vocab = corpus_get_info(data)->vocab_size;
  int warned = ingest_warn_other_tokenizer(train_file, corpus_get_info(data), t->tok, tok_path, stderr, err);
  corpus_close(data);
  if (warned < 0) return -1;
  if (t->task != TASK_LM && t->data_kind != (t->task == TASK_PRETRAIN ? CORPUS_DOCUMENTS : CORPUS_QA))
    return pith_fail(err, "%s: a %s corpus; %s needs %s", run_config_str(c, "train_file"),
                     corpus_kind_name(t->data_kind), t->task == TASK_PRETRAIN ? "pretrain" : "finetune",
                     t->task == TASK_PRETRAIN ? "documents" : "qa");
  uint64_t seed = (uint64_t)run_config_int(c, "seed");
  pt_adamw_config oc = {run_config_float(c, "learning_rate"), run_config_float(c, "adam_beta1"),
                        run_config_float(c, "adam_beta2"), run_config_float(c, "adam_epsilon"),
                        run_config_float(c, "weight_decay")};
  t->dropout_gen = pt_gen_new(seed + 7, dev);  // where the dropout masks are drawn
  if (t->task == TASK_LM) {
    if (setup_lm(t, dtype, dev, err)) return -1;
    if (check_vocab(t, train_file, data_vocab, err)) return -1;
    t->opt = pt_adamw_new(t->params, t->n_params, oc);
    if (!t->opt || !t->dropout_gen) return pith_fail(err, "optimizer: %s", pt_error());
    return 0;
  }
  t->model = hf_model_load(model_dir, dtype, dev, err);
  if (!t->model || check_vocab(t, train_file, data_vocab, err)) return -1;

  comp_config cc = {.k = (int)run_config_int(c, "num_compress_tokens"), .ae_token = t->task == TASK_PRETRAIN};
  const char *method = run_config_str(c, "method"), *pos = run_config_str(c, "position_policy");
  if (!strcmp(method, "500x")) cc.method = COMP_500X;
  else if (!strcmp(method, "icae")) cc.method = COMP_ICAE;
  else return pith_fail(err, "method: '%s' is not 500x or icae", method);
  if (!strcmp(pos, "reference")) cc.positions = COMP_POS_REFERENCE;
  else if (!strcmp(pos, "consistent")) cc.positions = COMP_POS_CONSISTENT;
  else return pith_fail(err, "position_policy: '%s' is not reference or consistent", pos);
  lora_config lc = {(int)run_config_int(c, "lora_rank"), run_config_float(c, "lora_alpha"),
                    run_config_float(c, "lora_dropout"), 0};
  if (lora_parse_targets(run_config_str(c, "lora_target"), &lc.targets, err)) return -1;
  t->comp = comp_new(t->model, cc, lc, seed, err);
  if (!t->comp) return -1;
  t->n_params = comp_params(t->comp, t->params, 4096);
  name_params(t);
  t->opt = pt_adamw_new(t->params, t->n_params, oc);
  if (!t->opt || !t->dropout_gen) return pith_fail(err, "optimizer: %s", pt_error());

  const char *init = run_config_str(c, "init_from");
  if (*init && !resume) {  // start from a pretrained compressor: its weights, not its optimizer
    char ckpt[2048];
    int found = train_state_latest(init, ckpt, sizeof ckpt, err);
    if (found < 0) return -1;
    const char *from = found == 0 ? ckpt : init;
    int64_t step;
    char *cursor = NULL;
    void *rng = NULL;
    size_t rng_len = 0;
    int rc = train_state_load(from, t->params, (const char *const *)t->names, t->n_params, NULL, &step, &cursor, &rng,
                              &rng_len, err);
    free(cursor);
    free(rng);
    if (rc) return -1;
    printf("init_from %s (step %lld)\n", from, (long long)step);
  }
  return 0;
}

// mfu < 0: not known (no peak_tflops). eta in seconds.
static void log_line(trainer *t, int64_t step, int64_t total, double loss, double gnorm, double lr, double tok_s,
                     double mfu, double eta, int final) {
  char line[256], mfu_s[32] = "";
  if (mfu >= 0) snprintf(mfu_s, sizeof mfu_s, "  MFU %.1f%%", 100 * mfu);
  snprintf(line, sizeof line, "step %lld/%lld  loss %.4f  grad_norm %.3f  lr %.2e  %.0f tok/s%s  ETA %02d:%02d",
           (long long)step, (long long)total, loss, gnorm, lr, tok_s, mfu_s, (int)(eta / 60), (int)eta % 60);
  if (t->tty) {
    printf("\r%-100s", line);
    if (final) printf("\n");
  } else {
    printf("%s\n", line);
  }
  fflush(stdout);
}

static int copy_file(const char *from, const char *to, pith_err *err) {
  size_t n;
  char *buf = pith_read_file(from, &n, err);
  if (!buf) return -1;
  int rc = pith_write_file_atomic(to, buf, n, err);
  free(buf);
  return rc;
}

// RUN/model: the trained weights as a Hugging Face folder with the tokenizer's files beside them,
// so every other command can take it as model_name_or_path.
static int save_lm(trainer *t, pith_err *err) {
  char dir[2304], to[4096];
  snprintf(dir, sizeof dir, "%s/model", t->run_dir);
  if (hf_model_save(t->model, dir, err)) return -1;
  const char *const *files;
  int n = tokenizer_source_files(t->tok, &files);
  for (int i = 0; i < n; i++) {
    const char *base = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
    snprintf(to, sizeof to, "%s/%s", dir, base);
    if (strcmp(base, "config.json") && copy_file(files[i], to, err)) return -1;
  }
  printf("model saved: %s\n", dir);
  return 0;
}

static int train_loop(trainer *t, int64_t start_step, pith_err *err) {
  const run_config *c = t->cfg;
  int accum = (int)run_config_int(c, "gradient_accumulation_steps");
  int64_t per_epoch = loader_batches_per_epoch(t->train) / (accum > 0 ? accum : 1);
  if (per_epoch <= 0) return pith_fail(err, "%s: too few training examples for one step", run_config_str(c, "train_file"));
  int64_t total = run_config_int(c, "max_steps") > 0 ? run_config_int(c, "max_steps")
                                                      : (int64_t)ceil(run_config_float(c, "num_train_epochs") * per_epoch);
  int64_t log_every = run_config_int(c, "logging_steps"), save_every = run_config_int(c, "save_steps");
  int64_t eval_every = run_config_int(c, "eval_steps");
  double max_norm = run_config_float(c, "max_grad_norm");
  int skip_nan = !strcmp(run_config_str(c, "nan_policy"), "skip");
  // Tokens/s, MFU and the ETA are rates over the steps since the last logged line (the window), so
  // that the first steps' warm-up and the pauses to evaluate or save do not linger in them.
  double win_t0 = pith_now_s(), tokens = 0, flops = 0, last_loss = NAN;
  int64_t win_steps = 0;
  double peak_flops = run_config_float(c, "peak_tflops") * 1e12;
  int64_t step = start_step;
  for (; step < total && !g_stop_signal; step++) {
    double lr = lr_at(c, step, total), loss_sum = 0;
    pt_adamw_set_lr(t->opt, lr);
    pt_adamw_zero_grad(t->opt);
    for (int micro = 0; micro < accum; micro++) {
      loader_batch lb;
      int got = loader_next(t->train, &lb, err);
      if (got == 0) got = loader_next(t->train, &lb, err);  // the next epoch
      if (got != 1) return got < 0 ? -1 : pith_fail(err, "loader: no batch");
      pt_scope s = pt_scope_begin();
      comp_batch b;
      pt_tensor *weights;
      batch_tensors(t, &lb, t->model->device, &b, &weights);
      pt_tensor *loss = t->comp ? comp_loss(t->comp, &b, t->dropout_gen, err) : lm_loss(t->model, &b, weights, err);
      if (!loss) return -1;
      loss_sum += pt_item(loss) / accum;
      if (pt_backward(pt_mul_scalar(loss, 1.0 / accum))) return pith_fail(err, "backward: %s", pt_error());
      double enc = t->comp ? (double)pt_size(b.text_ids, 1) : 0, dec = (double)pt_size(b.dec_ids, 1);  // LM: rows only
      tokens += (double)lb.B * (enc + dec);
      if (!t->comp) {
        flops += (double)lb.B * train_row_flops(&t->model->cfg, 1, 0, dec, 0);
      } else {  // the encoder reads the text and k compress tokens; the decoder attends to k prefix
                // K/V (500x) or reads k memory states and the AE token, if any, as inputs (ICAE)
        const comp_config *cc = &t->comp->cfg;
        double k = cc->k, icae_in = cc->method == COMP_ICAE ? k + (cc->ae_token ? 1 : 0) : 0;
        flops += (double)lb.B * train_row_flops(&t->model->cfg, 0, enc + k, dec + icae_in, icae_in ? 0 : k);
      }
      pt_scope_end(s);
    }
    double gnorm = pt_clip_grad_norm(t->params, t->n_params, max_norm);
    if (!isfinite(loss_sum) || !isfinite(gnorm)) {
      if (!skip_nan)
        return pith_fail(err, "step %lld: the loss (%g) or gradient norm (%g) is not finite; stopping "
                              "(nan_policy=skip skips such steps)", (long long)step + 1, loss_sum, gnorm);
      fprintf(stderr, "step %lld: non-finite loss or gradient, step skipped\n", (long long)step + 1);
      continue;
    }
    if (pt_adamw_step(t->opt)) return pith_fail(err, "optimizer: %s", pt_error());
    last_loss = loss_sum;
    double span = pith_now_s() - win_t0;
    int64_t done = step + 1;
    int logged = done % log_every == 0 || done == total;
    win_steps++;
    if (logged || t->tty) {
      double mfu = peak_flops > 0 ? flops / span / peak_flops : -1;
      log_line(t, done, total, loss_sum, gnorm, lr, tokens / span, mfu, span / win_steps * (double)(total - done),
               done == total);
      if (logged) {
        fprintf(t->metrics, "{\"step\": %lld, \"loss\": %.6f, \"grad_norm\": %.6f, \"lr\": %.6g, \"tokens_per_s\": %.1f",
                (long long)done, loss_sum, gnorm, lr, tokens / span);
        if (mfu >= 0) fprintf(t->metrics, ", \"mfu\": %.5f", mfu);
        fprintf(t->metrics, "}\n");
        fflush(t->metrics);
      }
    }
    int paused = (eval_every > 0 && done % eval_every == 0) || (save_every > 0 && done % save_every == 0);
    if (eval_every > 0 && done % eval_every == 0 && done != total) {
      double v = evaluate(t, t->comp != NULL, err);
      if (t->tty) printf("\n");
      printf("step %lld: val loss %.4f\n", (long long)done, v);
      fprintf(t->metrics, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)done, v);
    }
    if (save_every > 0 && done % save_every == 0 && done != total && save_checkpoint(t, done, loss_sum, err)) return -1;
    if (logged || paused) win_t0 = pith_now_s(), tokens = flops = 0, win_steps = 0;
  }
  if (t->tty) printf("\n");
  int64_t peak_alloc, peak_reserved;  // on CUDA: what the run needed, weights included
  if (pt_cuda_peak_bytes(t->model->device, &peak_alloc, &peak_reserved) == 0)
    printf("peak GPU memory: %.1f GiB allocated, %.1f GiB reserved\n", peak_alloc / 1073741824.0,
           peak_reserved / 1073741824.0);
  if (g_stop_signal) {
    printf("signal %d: saving a checkpoint at step %lld and stopping\n", (int)g_stop_signal, (long long)step);
    if (save_checkpoint(t, step, last_loss, err)) return -1;
    return 1;
  }
  if (save_checkpoint(t, step, last_loss, err)) return -1;
  if (!t->comp) {
    double v = evaluate(t, 0, err);
    printf("validation loss: %.4f\n", v);
    fprintf(t->metrics, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)step, v);
    return save_lm(t, err);
  }
  double with = evaluate(t, 1, err), without = evaluate(t, 0, err);
  printf("validation loss: %.4f with the compressed prefix, %.4f for the decoder with no prefix\n", with, without);
  fprintf(t->metrics, "{\"step\": %lld, \"val_loss\": %.6f, \"val_loss_no_prefix\": %.6f}\n", (long long)step, with,
          without);
  return 0;
}

static const char *task_name(train_task task) {
  return task == TASK_PRETRAIN ? "pretrain" : task == TASK_FINETUNE ? "finetune" : "lm";
}

static void usage(train_task task, FILE *out) {
  rc_key schema[MAX_SCHEMA];
  int n = task_schema(task, schema);
  if (task == TASK_LM) {
    fprintf(out,
            "usage: pith lm --config FILE.yaml [key=value ...] [--resume]\n\n"
            "Trains a base language model, every weight: from random weights shaped by model_config (a\n"
            "config.json), or continuing a model folder. Documents train as [bos] text eos; a QA corpus as\n"
            "[bos] context \"Question: \" question \" Answer: \" answer eos, the prompt the compressors'\n"
            "decoder reads. The trained model is written to RUN/model (config.json, model.safetensors and\n"
            "the tokenizer's files). Checkpoints, --resume and signals work as in pith pretrain.\n\nkeys:\n");
    run_config_print_schema(out, schema, n);
    return;
  }
  const char *name = task_name(task);
  fprintf(out,
          "usage: pith %s --config FILE.yaml [key=value ...] [--resume]\n\n"
          "%s a soft-token compressor (500xCompressor or ICAE) on a frozen LLaMA-family model.\n"
          "Every key can be set in the YAML file or on the command line; the resolved config is saved\n"
          "in the run folder with metrics.jsonl and checkpoints/. --resume continues from the newest\n"
          "checkpoint of the run. SIGINT/SIGTERM save a checkpoint and stop.\n\nkeys:\n",
          name, task == TASK_PRETRAIN ? "Pretrains (text regeneration)" : "Fine-tunes (extractive QA)");
  run_config_print_schema(out, schema, n);
}

int compress_train_main(train_task task, int argc, char **argv) {
  pith_err err = {{0}};
  trainer t = {.task = task, .cfg = run_config_new(), .tty = isatty(STDOUT_FILENO)};
  int resume = 0, rc = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(task, stdout);
      run_config_free(t.cfg);
      return 0;
    } else if (!strcmp(argv[i], "--resume")) {
      resume = 1;
    } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      if (run_config_load(t.cfg, argv[++i], &err)) goto fail;
    } else if (strchr(argv[i], '=')) {
      if (run_config_set(t.cfg, argv[i], &err)) goto fail;
    } else {
      fprintf(stderr, "pith %s: unexpected argument '%s'\n", argv[0], argv[i]);
      usage(task, stderr);
      run_config_free(t.cfg);
      return 2;
    }
  }
  rc_key schema[MAX_SCHEMA];
  if (run_config_resolve(t.cfg, schema, task_schema(task, schema), &err)) goto fail;
  const char *out = run_config_str(t.cfg, "output_dir");
  if (*out) snprintf(t.run_dir, sizeof t.run_dir, "%s", out);
  else snprintf(t.run_dir, sizeof t.run_dir, "runs/%s", run_config_str(t.cfg, "run_name"));
  if (pith_mkdirs(t.run_dir, &err)) goto fail;
  char path[2304];
  snprintf(path, sizeof path, "%s/config.yaml", t.run_dir);
  if (run_config_save(t.cfg, path, &err)) goto fail;
  if (setup(&t, resume, &err)) goto fail;

  int64_t start = 0;
  loader_cursor cursor, *from = NULL;
  if (resume) {
    char ckpt[2048];
    int found = train_state_latest(t.run_dir, ckpt, sizeof ckpt, &err);
    if (found < 0) goto fail;
    if (found == 1) {
      pith_fail(&err, "%s: no complete checkpoint to resume from", t.run_dir);
      goto fail;
    }
    char *cur = NULL;
    void *rng = NULL;
    size_t rng_len = 0;
    if (train_state_load(ckpt, t.params, (const char *const *)t.names, t.n_params, t.opt, &start, &cur, &rng, &rng_len,
                         &err))
      goto fail;
    int bad = (cur && loader_cursor_parse(cur, &cursor, &err)) || (rng && pt_gen_set_state(t.dropout_gen, rng, rng_len));
    free(cur);
    free(rng);
    if (bad) goto fail;
    from = &cursor;
    printf("resuming %s at step %lld\n", ckpt, (long long)start);
  }
  t.train = open_loader(&t, CORPUS_SPLIT_TRAIN, from, &err);
  if (!t.train) goto fail;
  snprintf(path, sizeof path, "%s/metrics.jsonl", t.run_dir);
  t.metrics = fopen(path, resume ? "a" : "w");
  if (!t.metrics) {
    pith_fail(&err, "%s: cannot write: %s", path, strerror(errno));
    goto fail;
  }
  if (t.comp)
    printf("%s %s: k=%d, %d trainable tensors, run folder %s\n", argv[0], run_config_str(t.cfg, "method"),
           t.comp->cfg.k, t.n_params, t.run_dir);
  else
    printf("%s: %lld parameters in %d tensors, run folder %s\n", argv[0], (long long)llama_param_count(t.model),
           t.n_params, t.run_dir);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  int r = train_loop(&t, start, &err);
  rc = r < 0 ? 1 : r == 1 ? 130 : 0;
  if (r < 0) goto fail;
  goto done;
fail:
  fprintf(stderr, "pith %s: %s\n", argv[0], err.msg[0] ? err.msg : pt_error());
  rc = 1;
done:
  if (t.metrics) fclose(t.metrics);
  loader_close(t.train);
  pt_adamw_free(t.opt);
  pt_gen_free(t.dropout_gen);
  comp_free(t.comp);
  llama_free(t.model);
  tokenizer_free(t.tok);
  task_tokens_free(&t.tt);
  for (int i = 0; i < t.n_params; i++) free(t.names[i]);
  run_config_free(t.cfg);
  return rc;
}
