// trainer: setup, the training loop, validation and checkpoints of one run (see trainer.h).
// Compressors (pretrain, finetune) train the LoRA, compress embeddings (and AE token) over a frozen
// model; `pith lm` trains every weight of the base model; `pith distill` every weight of a scorer,
// next to a frozen target whose held-out KL to the scorer it logs (and, for kl, its loss); `pith
// distill` method classifier every weight of a BERT / XLM-R token classifier on keep/drop labels
// (distill_classifier.h holds its data; here it takes the encoder path of the same loop).
#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "align.h"
#include "compressor.h"
#include "distill.h"
#include "dist.h"
#include "distill_classifier.h"
#include "encoder_folder.h"
#include "hf_folder.h"
#include "ingest.h"
#include "loader.h"
#include "tb_events.h"
#include "task.h"
#include "tokenizer.h"
#include "train_batch.h"
#include "train_math.h"
#include "train_state.h"

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

typedef struct {
  const train_args *a;
  const run_config *cfg;  // recorded in every checkpoint
  const char *run_dir;
  tokenizer *tok;
  task_tokens tt;         // bos, eos, pad and the QA prompt
  llama_model *model;
  compressor *comp;       // NULL for pith lm and pith distill
  llama_model *target;    // pith distill: the frozen target; NULL otherwise
  lora_adapter *lora;     // pith distill with finetuning_type lora: the scorer's adapter; NULL otherwise
  encoder_model *enc;     // pith distill method classifier: the classifier (model is NULL); NULL otherwise
  distill_cls *cls;       //   its labeled rows and their training order (instead of a loader)
  loader *train;
  pt_tensor **params;     // (n_params) the trainable tensors
  char **names;           // (n_params) their checkpoint names
  int n_params, cap_params;
  pt_adamw *opt;
  pt_gen *dropout_gen;
  corpus_kind data_kind;  // of train_file
  FILE *metrics;
  tb_metrics *tb;         // TensorBoard's copy of metrics.jsonl (tb_events.h); NULL with tensorboard=false
  int tty;
  dist_ctx dist;          // the ranks of a torchrun launch (dist.h); world 1 otherwise
  int stop;               // with ranks: the signal they agreed to stop on after the last step
} trainer;

static train_batch_kind batch_kind(const trainer *t) {
  if (t->a->task == TRAIN_FINETUNE) return TRAIN_BATCH_QA;
  int lm = t->a->task == TRAIN_LM || t->a->task == TRAIN_DISTILL;
  return lm && t->data_kind == CORPUS_QA ? TRAIN_BATCH_LM_QA : TRAIN_BATCH_REGEN;
}

static loader *open_loader(const trainer *t, int split, const loader_cursor *resume, pith_err *err) {
  loader_config lc = {0};
  lc.mode = t->data_kind == CORPUS_QA ? LOADER_QA : LOADER_CUT;
  lc.batch_size = t->a->per_device_train_batch_size;
  lc.seq_len = t->a->cutoff_len;
  lc.dec_len = t->a->max_target_len;
  lc.tokens = t->tt;
  lc.split = split;
  lc.shuffle = split == CORPUS_SPLIT_TRAIN;
  lc.seed = t->a->seed;
  lc.drop_last = split == CORPUS_SPLIT_TRAIN;
  if (split == CORPUS_SPLIT_TRAIN) lc.rank = t->dist.rank, lc.world_size = t->dist.world;  // this rank's share
  return loader_open(t->a->train_file, &lc, resume, err);
}

// Mean next-token cross-entropy of the model alone (no compressor) over the batch's targets;
// with weights (one per target, flattened), the weighted mean sum(w * ce) / sum(w).
static pt_tensor *lm_loss(const llama_model *m, const lora_adapter *lora, pt_gen *g, const comp_batch *b,
                          const pt_tensor *weights, pith_err *err) {
  llama_inputs in = {.ids = b->dec_ids, .mask = b->dec_mask, .lora = lora, .dropout_gen = g, .no_logits = 1,
                     .want_hidden = 1};
  llama_outputs out;
  if (llama_forward(m, &in, &out, err)) return NULL;
  pt_tensor *loss = llama_lm_loss(m, out.hidden, 0, b->dec_targets, weights, TASK_NO_TARGET);
  if (!loss) pt_fail(err, "loss");
  return loss;
}

// `pith lm`'s no_layer0 regulariser (no_layer0_share): the context reaches the question only as
// its own per-layer K/V with layer 0's zeroed, as the no_layer0 eval system reads it, and the loss is
// the answer's. A model trained so keeps what it reads in layers 1 and up, where a 500x prefix can
// carry it, as real LLMs do; a 1M-parameter base left alone copies answers at layer 0. Not part of
// any compressor: it makes the toy base resemble the models compressors are trained for.
static pt_tensor *no_layer0_loss(const trainer *t, const loader_batch *lb, comp_batch *b, pith_err *err) {
  const llama_model *m = t->model;
  pt_tensor *unused;
  if (train_batch_tensors(TRAIN_BATCH_QA, &t->tt, lb, 1.0, m->device, b, &unused, err)) return NULL;
  int B = lb->B, N = lb->N, M = (int)pt_size(b->dec_ids, 1);
  int64_t *pos = malloc(sizeof *pos * (size_t)B * (size_t)M);
  if (!pos) {
    pith_fail(err, "out of memory");
    return NULL;
  }
  for (int r = 0; r < B; r++) {  // the question goes on after [bos] and the row's context
    int n_ctx = 0;
    while (r < lb->n_rows && n_ctx < N && lb->mask[r * N + n_ctx]) n_ctx++;
    for (int j = 0; j < M; j++) pos[r * M + j] = 1 + n_ctx + j;
  }
  pt_tensor *positions = pt_to_device(pt_from_data(pos, PT_I64, PT_SHAPE(B, M), PT_CPU), m->device);
  free(pos);
  pt_tensor *ids[2] = {pt_full(PT_SHAPE(B, 1), t->tt.bos, PT_I64, m->device), (pt_tensor *)b->text_ids};
  pt_tensor *seen[2] = {pt_ones(PT_SHAPE(B, 1), PT_BOOL, m->device), (pt_tensor *)b->text_mask};
  pt_tensor *ctx_ids = pt_cat(ids, 2, 1), *ctx_mask = pt_cat(seen, 2, 1);
  llama_inputs ci = {.ids = ctx_ids, .mask = ctx_mask, .no_logits = 1, .want_kv = 1};
  llama_outputs co = {0}, out = {0};
  if (!pt_ok()) {
    pt_fail(err, "no_layer0");
    return NULL;
  }
  if (llama_forward(m, &ci, &co, err)) return NULL;
  co.k[0] = pt_zeros(pt_shape_of(co.k[0]), m->dtype, m->device);
  co.v[0] = pt_zeros(pt_shape_of(co.v[0]), m->dtype, m->device);
  llama_inputs di = {.ids = b->dec_ids, .mask = b->dec_mask, .positions = positions, .prefix_k = co.k,
                     .prefix_v = co.v, .prefix_mask = ctx_mask, .no_logits = 1, .want_hidden = 1};
  int rc = llama_forward(m, &di, &out, err);
  llama_outputs_free(&co);
  if (rc) return NULL;
  pt_tensor *loss = llama_lm_loss(m, out.hidden, 0, b->dec_targets, NULL, TASK_NO_TARGET);
  if (!loss) pt_fail(err, "no_layer0 loss");
  return loss;
}

// Whether micro-batch `micro` of step `step` trains with no_layer0_loss: a hash of (seed, step,
// micro) under no_layer0_share, so a resumed run draws what the uninterrupted one drew.
static int no_layer0_draw(const trainer *t, int64_t step, int micro) {
  if (t->a->no_layer0_share <= 0) return 0;
  uint64_t z = t->a->seed * 0x9E3779B97F4A7C15ull + (uint64_t)step * 0xD1B54A32D192ED03ull + (uint64_t)micro + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0 < t->a->no_layer0_share;
}

// What a batch's mean loss divides by: its targets, or with per-target weights their sum.
static double loss_terms(const comp_batch *b, const pt_tensor *weights) {
  if (weights) return pt_item(pt_sum(weights));
  return (double)pt_numel(b->dec_targets) - pt_item(pt_sum(pt_eq_scalar(b->dec_targets, TASK_NO_TARGET)));
}

// The loss of one batch (in the current scope): the compressor's (with_prefix), else the model's alone.
// terms: NULL, or where to put what its mean divides by (loss_terms).
static pt_tensor *batch_loss(const trainer *t, const loader_batch *lb, int with_prefix, pt_gen *dropout_gen,
                             comp_batch *b, double *terms, pith_err *err) {
  pt_tensor *weights;
  if (train_batch_tensors(batch_kind(t), &t->tt, lb, t->a->answer_loss_weight, t->model->device, b, &weights, err))
    return NULL;
  int kl = t->a->task == TRAIN_DISTILL && t->a->distill == DISTILL_KL;  // a mean over targets, unweighted
  if (terms) *terms = loss_terms(b, kl ? NULL : weights);
  if (kl)
    return distill_kl_loss(t->target, t->model, t->lora, dropout_gen, b, t->a->temperature, err);
  return with_prefix ? comp_loss(t->comp, b, dropout_gen, err) : lm_loss(t->model, t->lora, dropout_gen, b, weights, err);
}

// The validation loss over the first eval_batches global batches of the val split (per_device_train_batch_size
// × world rows each): the mean over all their loss terms (targets, or their weights), so that it does not
// depend on how the rows are batched. With ranks, rank r takes the batches r, r + world, ... and the
// sums (loss × terms, terms) are all-reduced: every rank gets the figure one process reading them all
// would. with_prefix 0 gives the decoder alone. NAN when there are no rows or a batch failed.
static double evaluate(trainer *t, int with_prefix, pith_err *err) {
  if (t->cls) {
    cls_metrics m;
    return distill_cls_evaluate(t->enc, t->cls, t->a->per_device_train_batch_size, &m, err) ? NAN : m.loss;
  }
  double sums[2] = {0, 0};  // loss × terms, terms (this rank's)
  int64_t batches = (int64_t)t->a->eval_batches * t->dist.world;
  loader *l = open_loader(t, CORPUS_SPLIT_VAL, NULL, err);  // the whole split: the ranks share out batches
  if (!l) sums[0] = NAN;
  int was = pt_set_grad_enabled(0);
  loader_batch lb;
  for (int64_t i = 0; l && i < batches && loader_next(l, &lb, err) == 1; i++) {
    if (i % t->dist.world != t->dist.rank) continue;
    pt_scope s = pt_scope_begin();
    comp_batch b;
    double terms = 0;
    pt_tensor *loss = batch_loss(t, &lb, with_prefix, NULL, &b, &terms, err);
    double v = loss ? pt_item(loss) : NAN;
    pt_scope_end(s);
    sums[0] += v * terms, sums[1] += terms;
    if (!loss) break;  // a failed batch: NAN for every rank
  }
  pt_set_grad_enabled(was);
  loader_close(l);
  // Every rank takes part even after a failure here, so that none waits for it.
  if (dist_reduce(&t->dist, sums, 2, 0, err)) return NAN;
  return sums[1] > 0 ? sums[0] / sums[1] : NAN;
}

static int save_checkpoint(trainer *t, int64_t step, double loss, pith_err *err) {
  char cursor[LOADER_CURSOR_MAX], metrics[128];
  if (t->cls) {
    distill_cls_tell(t->cls, cursor, sizeof cursor);
  } else {
    loader_cursor cur = loader_tell(t->train);
    loader_cursor_format(&cur, cursor, sizeof cursor);
  }
  snprintf(metrics, sizeof metrics, "{\"loss\": %.6f}", loss);
  size_t rng_len = pt_gen_get_state(t->dropout_gen, NULL, 0);
  void *rng = malloc(rng_len);
  pt_gen_get_state(t->dropout_gen, rng, rng_len);
  char *yaml = run_config_yaml(t->cfg);
  train_state st = {t->n_params, t->params, (const char *const *)t->names, t->opt, step, cursor, rng, rng_len, yaml, metrics, NULL};
  int rc = train_state_save(t->run_dir, &st, t->a->save_total_limit, err);
  free(rng);
  free(yaml);
  return rc;
}

// Append a trainable tensor and its checkpoint name.
static int add_param(trainer *t, pt_tensor *p, const char *name) {
  if (t->n_params == t->cap_params) {
    int cap = t->cap_params ? 2 * t->cap_params : 64;
    pt_tensor **params = realloc(t->params, sizeof *params * (size_t)cap);
    if (params) t->params = params;
    char **names = realloc(t->names, sizeof *names * (size_t)cap);
    if (names) t->names = names;
    if (!params || !names) return -1;
    t->cap_params = cap;
  }
  char *copy = strdup(name);
  if (!copy) return -1;
  t->params[t->n_params] = p;
  t->names[t->n_params++] = copy;
  return 0;
}

// The compressor's trainable tensors under its checkpoint names.
static int compressor_params(trainer *t, pith_err *err) {
  int n = comp_params(t->comp, NULL, 0);
  pt_tensor **params = malloc(sizeof *params * (size_t)(n > 0 ? n : 1));
  if (!params) return pith_fail(err, "parameters: out of memory");
  comp_params(t->comp, params, n);
  char name[128];
  int rc = 0;
  for (int i = 0; i < n && !rc; i++)
    rc = comp_param_name(t->comp, i, name, sizeof name) || add_param(t, params[i], name);
  free(params);
  return rc ? pith_fail(err, "parameters: out of memory") : 0;
}

// Every weight of the model becomes a trainable parameter under its Hugging Face name.
static int lm_param(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  (void)shape;
  trainer *t = vctx;
  if (pt_set_requires_grad(*slot, 1)) return -1;
  return add_param(t, *slot, name);
}

// distill's finetuning_type lora: an adapter over the frozen scorer, its tensors the parameters.
static int setup_scorer_lora(trainer *t, pith_err *err) {
  const train_args *a = t->a;
  lora_config lc = {a->lora_rank, a->lora_alpha, a->lora_dropout, 0};
  if (lora_parse_targets(a->lora_target, &lc.targets, err)) return -1;
  if (!(t->lora = lora_new(t->model, lc, a->seed, err))) return -1;
  char name[128];
  for (int l = 0; l < t->lora->n_layers; l++)
    for (int p = 0; p < LLAMA_N_PROJ; p++) {
      if (!t->lora->a[l][p]) continue;
      snprintf(name, sizeof name, "lora.layers.%d.%s.lora_A", l, LLAMA_PROJ_NAMES[p]);
      int bad = add_param(t, t->lora->a[l][p], name);
      snprintf(name, sizeof name, "lora.layers.%d.%s.lora_B", l, LLAMA_PROJ_NAMES[p]);
      if (bad || add_param(t, t->lora->b[l][p], name)) return pith_fail(err, "parameters: out of memory");
    }
  return 0;
}

// The LM: a model folder to continue, or random weights shaped by model_config (a config.json).
static int setup_lm(trainer *t, pt_dtype dtype, pith_err *err) {
  const train_args *a = t->a;
  if (!*a->model_name_or_path == !*a->model_config)
    return pith_fail(err, "set exactly one of model_name_or_path and model_config");
  if (*a->model_config) {
    llama_config mc;
    if (hf_config_load(a->model_config, &mc, err)) return -1;
    if (mc.vocab_size < tokenizer_vocab_size(t->tok))
      return pith_fail(err, "%s: vocab_size %d is smaller than the tokenizer's %d", a->model_config, mc.vocab_size,
                       tokenizer_vocab_size(t->tok));
    t->model = llama_new_random(&mc, a->seed, dtype, a->device, err);
  } else {
    t->model = hf_model_load(a->model_name_or_path, dtype, a->device, err);
  }
  if (!t->model) return -1;
  if (a->task == TRAIN_DISTILL && a->distill_lora) return setup_scorer_lora(t, err);
  if (llama_visit_weights(t->model, lm_param, t)) return pt_fail(err, "parameters");
  return 0;
}

// The corpus's ids come from a tokenizer of data_vocab tokens, and the trainer adds the tokenizer's
// bos, eos and pad: the model must have an embedding for each.
static int check_vocab(const trainer *t, int64_t data_vocab, pith_err *err) {
  int V = t->model->cfg.vocab_size;
  if (data_vocab > V)
    return pith_fail(err, "%s: token ids up to %lld, but the model has %d tokens (another tokenizer?)",
                     t->a->train_file, (long long)data_vocab - 1, V);
  int32_t special[3] = {t->tt.bos, t->tt.eos, t->tt.pad};
  const char *names[3] = {"bos", "eos", "pad"};
  for (int i = 0; i < 3; i++)
    if (special[i] >= V)
      return pith_fail(err, "the tokenizer's %s id %d is beyond the model's %d tokens (another tokenizer?)", names[i],
                       special[i], V);
  return 0;
}

// The compressor over a frozen model.
static int setup_compressor(trainer *t, pt_dtype dtype, int64_t data_vocab, pith_err *err) {
  const train_args *a = t->a;
  t->model = hf_model_load(a->model_name_or_path, dtype, a->device, err);
  if (!t->model || check_vocab(t, data_vocab, err)) return -1;
  comp_config cc = {.method = a->method, .k = a->num_compress_tokens, .positions = a->position_policy,
                    .ae_token = a->task == TRAIN_PRETRAIN};
  lora_config lc = {a->lora_rank, a->lora_alpha, a->lora_dropout, 0};
  if (lora_parse_targets(a->lora_target, &lc.targets, err)) return -1;
  t->comp = comp_new(t->model, cc, lc, a->seed, err);
  return !t->comp || compressor_params(t, err) ? -1 : 0;
}

// init_from: start from a pretrained compressor's weights (not its optimizer).
static int init_from(trainer *t, pith_err *err) {
  char ckpt[2048];
  int found = train_state_latest(t->a->init_from, ckpt, sizeof ckpt, err);
  if (found < 0) return -1;
  const char *from = found == 0 ? ckpt : t->a->init_from;
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
  return 0;
}

// Every weight of the classifier, under its Hugging Face name.
static int enc_param(const char *name, pt_tensor **slot, pt_shape shape, void *vctx) {
  (void)shape;
  return add_param(vctx, *slot, name);
}

// method classifier: its tokenizer, the classifier, then the labels (the slow part, last).
static int setup_classifier(trainer *t, const char *tok_path, pith_err *err) {
  const train_args *a = t->a;
  if (a->bf16) return pith_fail(err, "bf16: method classifier trains every weight in f32; leave bf16 off");
  t->tok = tokenizer_load(tok_path, err);
  if (!t->tok || !(t->enc = distill_cls_model(a, t->tok, err)) || !(t->cls = distill_cls_open(a, t->tok, err)))
    return -1;
  if (encoder_visit_weights(t->enc, enc_param, t)) return pith_fail(err, "parameters: out of memory");
  pt_adamw_config oc = {a->learning_rate, a->adam_beta1, a->adam_beta2, a->adam_epsilon, a->weight_decay};
  t->dropout_gen = pt_gen_new(a->seed + 7, a->device);
  t->opt = pt_adamw_new(t->params, t->n_params, oc);
  return t->opt && t->dropout_gen ? 0 : pt_fail(err, "optimizer");
}

static int setup(trainer *t, int resume, pith_err *err) {
  const train_args *a = t->a;
  const char *tok_path = *a->tokenizer ? a->tokenizer : a->model_name_or_path;
  if (!*tok_path) return pith_fail(err, "tokenizer: not set (and no model_name_or_path to take it from)");
  if (a->threads > 0) pt_set_num_threads(a->threads);
  if (a->task == TRAIN_DISTILL && a->distill == DISTILL_CLASSIFIER) {
    if (a->gradient_checkpointing || a->loss_chunk_rows)
      return pith_fail(err, "%s: method classifier trains a small BERT encoder, which has neither; leave it at its "
                            "default", a->gradient_checkpointing ? "gradient_checkpointing" : "loss_chunk_rows");
    return setup_classifier(t, tok_path, err);
  }
  if (a->task == TRAIN_DISTILL && a->distill == DISTILL_KL && a->loss_chunk_rows)
    return pith_fail(err, "loss_chunk_rows: method kl compares the scorer's whole distribution with the target's, "
                          "so it needs the whole logits; leave it 0");
  if (a->fused_kernels && a->device == PT_CPU)
    return pith_fail(err, "fused_kernels: the fused kernels are CUDA kernels; device is cpu (leave it false)");
  if (pt_set_fused_kernels(a->fused_kernels ? PT_FUSED_ON : PT_FUSED_OFF)) return pt_fail(err, "fused_kernels");
  pt_dtype dtype = a->bf16 && a->device != PT_CPU ? PT_BF16 : PT_F32;
  int trains_lm = a->task == TRAIN_LM || a->task == TRAIN_DISTILL;
  // pith lm's parameters are the model's own weights, which would then be bf16 with no f32 copy.
  if (a->task == TRAIN_LM && a->bf16)
    return pith_fail(err, "bf16: pith lm trains every weight of the model and keeps them in f32; bf16 is for "
                          "pretrain and finetune (a frozen bf16 model under f32 LoRA and compress weights)");

  t->tok = tokenizer_load(tok_path, err);
  if (!t->tok || task_tokens_init(&t->tt, t->tok, tok_path, err)) return -1;
  corpus *data = corpus_open(a->train_file, err);
  if (!data) return -1;
  t->data_kind = corpus_get_info(data)->kind;
  int64_t data_vocab = corpus_get_info(data)->vocab_size;
  int warned = ingest_warn_other_tokenizer(a->train_file, corpus_get_info(data), t->tok, tok_path, stderr, err);
  corpus_close(data);
  if (warned < 0) return -1;
  if (a->no_layer0_share > 0 && t->data_kind != CORPUS_QA)
    return pith_fail(err, "no_layer0_share: %s is a %s corpus; the regulariser trains QA rows", a->train_file,
                     corpus_kind_name(t->data_kind));
  if (!trains_lm && t->data_kind != (a->task == TRAIN_PRETRAIN ? CORPUS_DOCUMENTS : CORPUS_QA))
    return pith_fail(err, "%s: a %s corpus; %s needs %s", a->train_file, corpus_kind_name(t->data_kind),
                     a->task == TRAIN_PRETRAIN ? "pretrain" : "finetune",
                     a->task == TRAIN_PRETRAIN ? "documents" : "qa");
  pt_adamw_config oc = {a->learning_rate, a->adam_beta1, a->adam_beta2, a->adam_epsilon, a->weight_decay};
  t->dropout_gen = pt_gen_new(a->seed + 7, a->device);  // where the dropout masks are drawn (ranks: dist_dropout_gen)
  if (trains_lm) {
    // The trained weights stay f32 (lm refuses bf16); distill's frozen target may be bf16 (CUDA).
    if (setup_lm(t, PT_F32, err) || check_vocab(t, data_vocab, err)) return -1;
    if (a->task == TRAIN_DISTILL &&
        !(t->target = hf_model_load(a->target_model_name_or_path, dtype, a->device, err)))
      return -1;
  } else if (setup_compressor(t, dtype, data_vocab, err)) {
    return -1;
  }
  t->model->gradient_checkpointing = a->gradient_checkpointing;  // every loss runs through it; distill's target does not
  t->model->loss_chunk_rows = a->loss_chunk_rows;
  t->opt = pt_adamw_new(t->params, t->n_params, oc);
  if (!t->opt || !t->dropout_gen) return pt_fail(err, "optimizer");
  return t->comp && *a->init_from && !resume ? init_from(t, err) : 0;
}

// The newest complete checkpoint of the run: weights, optimizer, dropout generator; *cursor gets
// the loader's position and *step the steps done.
static int load_resume(trainer *t, int64_t *step, loader_cursor *cursor, pith_err *err) {
  char ckpt[2048];
  int found = train_state_latest(t->run_dir, ckpt, sizeof ckpt, err);
  if (found < 0) return -1;
  if (found == 1) return pith_fail(err, "%s: no complete checkpoint to resume from", t->run_dir);
  char *cur = NULL;
  void *rng = NULL;
  size_t rng_len = 0;
  if (train_state_load(ckpt, t->params, (const char *const *)t->names, t->n_params, t->opt, step, &cur, &rng, &rng_len,
                       err))
    return -1;
  int bad = (cur && (t->cls ? distill_cls_seek(t->cls, cur, err) : loader_cursor_parse(cur, cursor, err))) || (rng && pt_gen_set_state(t->dropout_gen, rng, rng_len));
  free(cur);
  free(rng);
  if (bad) return -1;
  printf("resuming %s at step %lld\n", ckpt, (long long)*step);
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

// Model FLOPs of a training batch of B rows: the LM (or scorer) reads its rows; a compressor's encoder reads
// the text and k compress tokens, and its decoder attends to k prefix K/V (500x) or reads k memory
// states and the AE token, if any, as inputs (ICAE).
static double batch_flops(const trainer *t, int B, double enc, double dec) {
  if (t->enc) return 6.0 * (double)encoder_param_count(t->enc) * B * dec;  // attention left out
  if (!t->comp) {
    double f = (double)B * train_row_flops(&t->model->cfg, 1, 0, dec, 0);
    // distill kl: the target's forward pass too (a frozen row's FLOPs are forward + input gradients: 2x)
    if (t->target && t->a->distill == DISTILL_KL) f += (double)B * train_row_flops(&t->target->cfg, 0, 0, dec, 0) / 2;
    return f;
  }
  const comp_config *cc = &t->comp->cfg;
  double k = cc->k, icae_in = cc->method == COMP_ICAE ? k + (cc->ae_token ? 1 : 0) : 0;
  return (double)B * train_row_flops(&t->model->cfg, 0, enc + k, dec + icae_in, icae_in ? 0 : k);
}

// Data parallelism: each loss is a mean over its terms (targets, or their weights), so a rank's mean
// counts in the global micro-batch's mean by its share of the terms of all ranks. Weighted so, the
// ranks' losses and gradients sum to those of one process reading the whole global micro-batch.
static int dist_share(trainer *t, double terms, double *share, pith_err *err) {
  double all = terms;
  if (dist_reduce(&t->dist, &all, 1, 0, err)) return -1;
  *share = all > 0 ? terms / all : 0;
  return 0;
}

// The trainable f32 masters cast to the model's dtype once for the step's micro-batches
// (comp_cast_step, lora_cast_step); ended before the optimizer changes the masters.
static int cast_step(trainer *t, pith_err *err) {
  int rc = t->comp ? comp_cast_step(t->comp) : t->lora ? lora_cast_step(t->lora, t->model->dtype) : 0;
  return rc ? pt_fail(err, "casting the trainable weights") : 0;
}

static void cast_step_end(trainer *t) {
  if (t->comp) comp_cast_step_end(t->comp);
  if (t->lora) lora_cast_step_end(t->lora);
}

// One optimizer step's micro-batches, forward and backward: *loss the mean loss, *tokens and
// *flops what they read and cost.
static int micro_batches(trainer *t, int64_t step, double *loss, double *tokens, double *flops, pith_err *err) {
  int accum = t->a->gradient_accumulation_steps;
  *loss = 0;
  for (int micro = 0; micro < accum && t->cls; micro++) {  // method classifier
    pt_scope s = pt_scope_begin();
    pt_tensor *ids, *mask, *labels, *l = NULL;
    int64_t n;
    if (!distill_cls_next(t->cls, t->a->per_device_train_batch_size, t->a->device, &ids, &mask, &labels, &n, err))
      l = distill_cls_loss(t->enc, t->dropout_gen, ids, mask, labels, err);
    if (!l) return -1;
    *loss += pt_item(l) / accum;
    if (pt_backward(pt_mul_scalar(l, 1.0 / accum))) return pt_fail(err, "backward");
    *tokens += (double)n;
    *flops += batch_flops(t, t->a->per_device_train_batch_size, 0, (double)pt_size(ids, 1));
    pt_scope_end(s);
  }
  for (int micro = 0; micro < accum && !t->cls; micro++) {
    loader_batch lb;
    int got = loader_next(t->train, &lb, err);
    if (got == 0) got = loader_next(t->train, &lb, err);  // the next epoch
    if (got != 1) return got < 0 ? -1 : pith_fail(err, "loader: no batch");
    pt_scope s = pt_scope_begin();
    comp_batch b;
    int deep = no_layer0_draw(t, step, micro);
    double terms = 1, share = 1;  // share: this rank's part of the global micro-batch's mean (dist_share)
    pt_tensor *l = deep ? no_layer0_loss(t, &lb, &b, err)
                        : batch_loss(t, &lb, t->comp != NULL, t->dropout_gen, &b, t->dist.pg ? &terms : NULL, err);
    if (!l) return -1;
    if (t->dist.pg && deep) terms = loss_terms(&b, NULL);
    if (t->dist.pg && dist_share(t, terms, &share, err)) return -1;
    *loss += pt_item(l) * share / accum;
    // The last backward of the step launches the all-reduces of the accumulated gradients (ddp_overlap).
    if (micro == accum - 1 && dist_arm(&t->dist, err)) return -1;
    // × world: the gradients' all-reduce divides their sum by world (train_loop)
    if (pt_backward(pt_mul_scalar(l, share * t->dist.world / accum)))
      return t->dist.pg ? pt_fail(err, "rank %d of %d: backward", t->dist.rank, t->dist.world) : pt_fail(err, "backward");
    // LM: its rows only; a no_layer0 row reads [bos] context, then the QA row.
    double enc = t->comp ? (double)pt_size(b.text_ids, 1) : 0, dec = (double)pt_size(b.dec_ids, 1);
    if (deep) dec += 1 + (double)pt_size(b.text_ids, 1);
    *tokens += (double)lb.B * (enc + dec);
    *flops += batch_flops(t, lb.B, enc, dec);
    pt_scope_end(s);
  }
  return 0;
}

// A validation loss as JSON: null when there is none (no validation rows; metrics.jsonl stays JSON).
static const char *json_loss(double v, char *buf, size_t len) {
  if (isfinite(v)) snprintf(buf, len, "%.6f", v);
  else snprintf(buf, len, "null");
  return buf;
}

// pith distill: KL(target || scorer) and the rank correlation of their surprisals on the first
// align_docs texts of align_file's val split (align.h), printed and logged as val_kl, val_spearman.
static int log_alignment(trainer *t, int64_t step, pith_err *err) {
  if (t->cls) {  // method classifier: "keep" precision / recall / F1 on the held-out labels
    cls_metrics m;
    if (distill_cls_evaluate(t->enc, t->cls, t->a->per_device_train_batch_size, &m, err)) return -1;
    printf("step %lld: held-out keep precision %.4f recall %.4f F1 %.4f, accuracy %.4f, keep share %.4f "
           "(%lld labeled tokens)\n", (long long)step, m.precision, m.recall, m.f1, m.accuracy, m.keep_share,
           (long long)(m.tp + m.fp + m.fn + m.tn));
    fprintf(t->metrics,
            "{\"step\": %lld, \"val_precision\": %.6f, \"val_recall\": %.6f, \"val_f1\": %.6f, \"val_accuracy\": "
            "%.6f, \"val_keep_share\": %.6f, \"val_tokens\": %lld}\n",
            (long long)step, m.precision, m.recall, m.f1, m.accuracy, m.keep_share,
            (long long)(m.tp + m.fp + m.fn + m.tn));
    fflush(t->metrics);
    return 0;
  }
  if (t->a->task != TRAIN_DISTILL || t->a->align_docs <= 0) return 0;
  align_result r;
  if (align_measure(t->target, t->model, t->lora, t->tt.bos, t->a->align_file, CORPUS_SPLIT_VAL, t->a->align_docs,
                    t->a->cutoff_len + 1, &r, err))
    return -1;
  printf("step %lld: held-out KL(target||scorer) %.4f nats/token, Spearman %.4f (%lld tokens of %s)\n", (long long)step,
         r.kl, r.spearman, (long long)r.n_tokens, t->a->align_file);
  fprintf(t->metrics, "{\"step\": %lld, \"val_kl\": %.6f, \"val_spearman\": %.6f}\n", (long long)step, r.kl,
          r.spearman);
  fflush(t->metrics);
  return 0;
}

// After the last step: validation, and for the LM (and scorer) the model folder.
static int finish(trainer *t, int64_t step, pith_err *err) {
  if (!t->comp) {
    double v = evaluate(t, 0, err);
    printf("validation loss: %.4f\n", v);
    char a[32];
    fprintf(t->metrics, "{\"step\": %lld, \"val_loss\": %s}\n", (long long)step, json_loss(v, a, sizeof a));
    if (log_alignment(t, step, err)) return -1;
    if (t->lora && distill_lora_merge(t->model, t->lora, err)) return -1;
    if (!dist_main(&t->dist)) return 0;
    char dir[2304];  // RUN/model: every other command can take it as model_name_or_path
    snprintf(dir, sizeof dir, "%s/model", t->run_dir);
    const char *const *files;
    int n_files = t->enc ? tokenizer_source_files(t->tok, &files) : 0;
    if (t->enc ? encoder_folder_save_with_files(t->enc, dir, files, n_files, err)
               : hf_model_save_with_tokenizer(t->model, t->tok, dir, err))
      return -1;
    printf("model saved: %s\n", dir);
    return 0;
  }
  double with = evaluate(t, 1, err), without = evaluate(t, 0, err);
  printf("validation loss: %.4f with the compressed prefix, %.4f for the decoder with no prefix\n", with, without);
  char a[32], b[32];
  fprintf(t->metrics, "{\"step\": %lld, \"val_loss\": %s, \"val_loss_no_prefix\": %s}\n", (long long)step,
          json_loss(with, a, sizeof a), json_loss(without, b, sizeof b));
  return 0;
}

// Data parallelism, after a step's backward passes: the gradients become the mean over ranks,
// *loss the global micro-batches' mean, and every rank learns whether any was signalled to stop.
static int dist_agree(trainer *t, double *loss, pith_err *err) {
  if (!t->dist.pg) return 0;
  double stop = g_stop_signal;
  if (dist_reduce_grads(&t->dist, t->params, t->n_params, 1.0 / t->dist.world, err) ||
      dist_reduce(&t->dist, loss, 1, 0, err) || dist_reduce(&t->dist, &stop, 1, 1, err))
    return -1;
  t->stop = (int)stop;
  return 0;
}

// With ranks, each step's dropout masks come from a generator seeded by (seed, rank, step): the
// ranks draw different masks, and a resume draws what the uninterrupted run drew without the
// checkpoint holding every rank's generator.
static int dist_dropout_gen(trainer *t, int64_t step, pith_err *err) {
  uint64_t z = t->a->seed * 0x9E3779B97F4A7C15ull + (uint64_t)t->dist.rank * 0xD1B54A32D192ED03ull + (uint64_t)step;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  pt_gen *g = pt_gen_new(z ^ (z >> 31), t->a->device);
  if (!g) return pt_fail(err, "rank %d: dropout generator", t->dist.rank);
  pt_gen_free(t->dropout_gen);
  t->dropout_gen = g;
  return 0;
}

// The signal that stops the run: this process's, or with ranks the one they agreed on.
static int stop_signal(const trainer *t) { return t->dist.pg ? t->stop : (int)g_stop_signal; }

static int train_loop(trainer *t, int64_t start_step, pith_err *err) {
  const train_args *a = t->a;
  int accum = a->gradient_accumulation_steps;
  int64_t batches = t->cls ? distill_cls_train_rows(t->cls) / a->per_device_train_batch_size
                           : loader_batches_per_epoch(t->train);
  int64_t per_epoch = batches / (accum > 0 ? accum : 1);
  if (per_epoch <= 0) return pith_fail(err, "%s: too few training examples for one step", a->train_file);
  int64_t total = a->max_steps > 0 ? a->max_steps : (int64_t)ceil(a->num_train_epochs * per_epoch);
  int64_t log_every = a->logging_steps, save_every = a->save_steps, eval_every = a->eval_steps;
  // Tokens/s, MFU and the ETA are rates over the steps since the last logged line (the window), so
  // that the first steps' warm-up and the pauses to evaluate or save do not linger in them.
  double win_t0 = pith_now_s(), tokens = 0, flops = 0, last_loss = NAN;
  int64_t win_steps = 0;
  double peak_flops = a->peak_tflops * 1e12;
  int64_t step = start_step;
  for (; step < total && !stop_signal(t); step++) {
    double lr = train_lr_at(a->lr_scheduler_type, a->learning_rate, a->warmup_steps, step, total), loss;
    pt_adamw_set_lr(t->opt, lr);
    pt_adamw_zero_grad(t->opt);
    if (t->dist.pg && dist_dropout_gen(t, step, err)) return -1;
    if (cast_step(t, err) || micro_batches(t, step, &loss, &tokens, &flops, err)) return -1;
    cast_step_end(t);
    if (dist_agree(t, &loss, err)) return -1;
    double gnorm = pt_clip_grad_norm(t->params, t->n_params, a->max_grad_norm);
    if (!isfinite(loss) || !isfinite(gnorm)) {
      if (!a->nan_skip)
        return pith_fail(err, "step %lld: the loss (%g) or gradient norm (%g) is not finite; stopping "
                              "(nan_policy=skip skips such steps)", (long long)step + 1, loss, gnorm);
      fprintf(stderr, "step %lld: non-finite loss or gradient, step skipped\n", (long long)step + 1);
      continue;
    }
    if (pt_adamw_step(t->opt)) return pt_fail(err, "optimizer");
    last_loss = loss;
    double span = pith_now_s() - win_t0;
    int64_t done = step + 1;
    int logged = done % log_every == 0 || done == total;
    win_steps++;
    if (logged || t->tty) {
      double mfu = peak_flops > 0 ? flops / span / peak_flops : -1;
      double tok_s = tokens * t->dist.world / span;  // every rank reads batches of the same shapes
      log_line(t, done, total, loss, gnorm, lr, tok_s, mfu, span / win_steps * (double)(total - done),
               done == total);
      if (logged) {
        fprintf(t->metrics, "{\"step\": %lld, \"loss\": %.6f, \"grad_norm\": %.6f, \"lr\": %.6g, \"tokens_per_s\": %.1f",
                (long long)done, loss, gnorm, lr, tok_s);
        if (mfu >= 0) fprintf(t->metrics, ", \"mfu\": %.5f", mfu);
        fprintf(t->metrics, "}\n");
        fflush(t->metrics);
        if (tb_metrics_sync(t->tb, t->metrics, err)) return -1;
      }
    }
    int paused = (eval_every > 0 && done % eval_every == 0) || (save_every > 0 && done % save_every == 0);
    if (eval_every > 0 && done % eval_every == 0 && done != total) {
      double v = evaluate(t, t->comp != NULL, err);
      if (t->tty) printf("\n");
      printf("step %lld: val loss %.4f\n", (long long)done, v);
      char a[32];
      fprintf(t->metrics, "{\"step\": %lld, \"val_loss\": %s}\n", (long long)done, json_loss(v, a, sizeof a));
      if (log_alignment(t, done, err)) return -1;
      if (tb_metrics_sync(t->tb, t->metrics, err)) return -1;
    }
    if (save_every > 0 && done % save_every == 0 && done != total && dist_main(&t->dist) &&
        save_checkpoint(t, done, loss, err))
      return -1;
    if (logged || paused) win_t0 = pith_now_s(), tokens = flops = 0, win_steps = 0;
  }
  if (t->tty) printf("\n");
  int64_t peak_alloc, peak_reserved;  // on CUDA: what the run needed, weights included
  if (pt_cuda_peak_bytes(a->device, &peak_alloc, &peak_reserved) == 0)
    printf("peak GPU memory: %.1f GiB allocated, %.1f GiB reserved\n", peak_alloc / 1073741824.0,
           peak_reserved / 1073741824.0);
  int sig = stop_signal(t);
  if (sig) {
    printf("signal %d: saving a checkpoint at step %lld and stopping\n", sig, (long long)step);
    if (dist_main(&t->dist) && save_checkpoint(t, step, last_loss, err)) return -1;
    return 128 + sig;
  }
  if (dist_main(&t->dist) && save_checkpoint(t, step, last_loss, err)) return -1;
  return finish(t, step, err);
}

// The step a metrics.jsonl line records ({"step": N, ...}), or -1 when it has none.
static int64_t line_step(const char *line, size_t len) {
  static const char key[] = "{\"step\": ";
  if (len < sizeof key || memcmp(line, key, sizeof key - 1)) return -1;
  return strtoll(line + sizeof key - 1, NULL, 10);
}

// On resume, metrics.jsonl loses the lines of the steps after the checkpoint (a killed run wrote
// them, and the resumed run writes them again): one history, as an uninterrupted run leaves.
static int truncate_metrics(const char *path, int64_t step, pith_err *err) {
  size_t len = 0;
  char *text = pith_read_file(path, &len, NULL);
  if (!text) return 0;  // no metrics yet
  size_t keep = 0;
  while (keep < len) {
    const char *nl = memchr(text + keep, '\n', len - keep);
    if (!nl) break;  // a line cut by the kill: dropped
    if (line_step(text + keep, (size_t)(nl - text - keep)) > step) break;
    keep = (size_t)(nl - text) + 1;
  }
  int rc = keep == len ? 0 : pith_write_file_atomic(path, text, keep, err);
  free(text);
  return rc;
}

// Data parallelism (dist.h), before setup: join the ranks, so that a launch that cannot run fails
// first; ranks other than 0 write nothing (their stdout is let go; errors still reach stderr).
static int dist_setup(trainer *t, train_args *args, const char *cmd, pith_err *err) {
  if (dist_init(&t->dist, &args->device, err)) return -1;
  if (!t->dist.pg) return 0;
  if (t->a->task == TRAIN_DISTILL && t->a->distill == DISTILL_CLASSIFIER)
    return pith_fail(err, "WORLD_SIZE=%d: %s method classifier trains on one process only", t->dist.world, cmd);
  if (!dist_main(&t->dist) && !freopen("/dev/null", "w", stdout))
    return pith_fail(err, "rank %d: /dev/null: %s", t->dist.rank, strerror(errno));
  t->tty = t->tty && dist_main(&t->dist);
  printf("%s: %d ranks (torch.distributed), global batch %d = %d per device x %d accumulation x %d ranks\n", cmd,
         t->dist.world, t->a->per_device_train_batch_size * t->a->gradient_accumulation_steps * t->dist.world,
         t->a->per_device_train_batch_size, t->a->gradient_accumulation_steps, t->dist.world);
  return 0;
}

static int run(trainer *t, train_args *args, int resume, const char *cmd, pith_err *err) {
  if (dist_setup(t, args, cmd, err) || setup(t, resume, err)) return -1;
  int64_t start = 0;
  loader_cursor cursor = {0};
  if (resume && load_resume(t, &start, &cursor, err)) return -1;
  // Every rank starts from rank 0's weights (random inits draw the same, but a rank may differ).
  if (dist_broadcast(&t->dist, t->params, t->n_params, err)) return -1;
  if (t->a->ddp_overlap && dist_overlap(&t->dist, t->params, t->n_params, err)) return -1;
  if (t->dist.pg) {  // what a step costs the network, to estimate scaling from
    double elems = 0;
    for (int i = 0; i < t->n_params; i++) elems += (double)pt_numel(t->params[i]);
    printf("%s: each step all-reduces %.1f MB of f32 gradients (%.0f trainable values) in %.0f MB buckets, %s\n",
           cmd, elems * 4 / 1e6, elems, DIST_BUCKET_BYTES / 1048576.0,
           t->a->ddp_overlap ? "during the backward pass (ddp_overlap)" : "after the backward pass (ddp_overlap=false)");
  }
  if (!t->cls && !(t->train = open_loader(t, CORPUS_SPLIT_TRAIN, resume ? &cursor : NULL, err))) return -1;
  int main_rank = dist_main(&t->dist);
  // Everything a run needs has loaded: only now does it get a folder, so a refused run leaves none.
  char path[2304];
  snprintf(path, sizeof path, "%s/config.yaml", t->run_dir);
  if (main_rank && (pith_mkdirs(t->run_dir, err) || run_config_save(t->cfg, path, err))) return -1;
  snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
  if (main_rank && resume && truncate_metrics(path, start, err)) return -1;
  if (t->cls) {  // what the classifier learns from and is measured on
    char labels[2304];
    snprintf(labels, sizeof labels, "%s/labels.jsonl", t->run_dir);
    if (distill_cls_write_labels(t->cls, labels, err)) return -1;
  }
  t->metrics = main_rank ? fopen(path, resume ? "a" : "w") : fopen("/dev/null", "w");
  if (!t->metrics) return pith_fail(err, "%s: cannot write: %s", main_rank ? path : "/dev/null", strerror(errno));
  if (main_rank && t->a->tensorboard && !(t->tb = tb_metrics_open(t->run_dir, path, resume ? start : -1, err)))
    return -1;
  if (t->enc)
    printf("%s classifier: %lld parameters in %d tensors, run folder %s\n", cmd, (long long)encoder_param_count(t->enc),
           t->n_params, t->run_dir);
  else if (t->comp)
    printf("%s %s: k=%d, %d trainable tensors, run folder %s\n", cmd, t->comp->cfg.method == COMP_ICAE ? "icae" : "500x",
           t->comp->cfg.k, t->n_params, t->run_dir);
  else
    printf("%s: %lld parameters in %d tensors, run folder %s\n", cmd, (long long)llama_param_count(t->model),
           t->n_params, t->run_dir);
  if (start == 0 && log_alignment(t, 0, err)) return -1;  // the unaligned scorer
  if (tb_metrics_sync(t->tb, t->metrics, err)) return -1;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  return train_loop(t, start, err);
}

int trainer_run(const train_args *a, const run_config *cfg, const char *run_dir, int resume, const char *cmd,
                pith_err *err) {
  train_args args = *a;  // dist_setup may move a CUDA run to this rank's GPU
  trainer t = {.a = &args, .cfg = cfg, .run_dir = run_dir, .tty = isatty(STDOUT_FILENO)};
  int rc = run(&t, &args, resume, cmd, err);
  dist_close(&t.dist, rc < 0);
  pith_err tb_err = {{0}};  // the last lines (validation, a signal's stop) reach TensorBoard too
  if (tb_metrics_close(t.tb, t.metrics, &tb_err) && rc == 0) {
    rc = -1;
    if (err) *err = tb_err;
  }
  if (t.metrics) fclose(t.metrics);
  loader_close(t.train);
  pt_adamw_free(t.opt);
  pt_gen_free(t.dropout_gen);
  comp_free(t.comp);
  llama_free(t.model);
  llama_free(t.target);
  lora_free(t.lora);
  encoder_free(t.enc);
  distill_cls_free(t.cls);
  tokenizer_free(t.tok);
  task_tokens_free(&t.tt);
  for (int i = 0; i < t.n_params; i++) free(t.names[i]);
  free(t.names);
  free(t.params);
  return rc;
}
