// align: scorer–target agreement on held-out text, and the checks that pair them (see align.h).
#include "align.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "corpus.h"
#include "tokenizer.h"

pt_tensor *align_kl_per_token(const pt_tensor *target_logits, const pt_tensor *scorer_logits, double T) {
  int64_t V = pt_size(target_logits, -1), Vs = pt_size(scorer_logits, -1);
  if (Vs < V) V = Vs;  // padded embeddings past the shared tokenizer's ids
  int last = pt_ndim(target_logits) - 1;
  pt_tensor *zt = pt_slice(pt_to_dtype(target_logits, PT_F32), last, 0, V);
  pt_tensor *zs = pt_slice(pt_to_dtype(scorer_logits, PT_F32), last, 0, V);
  if (T != 1) zt = pt_mul_scalar(zt, 1.0 / T), zs = pt_mul_scalar(zs, 1.0 / T);
  pt_tensor *lt = pt_log_softmax(zt, -1), *ls = pt_log_softmax(zs, -1);
  return pt_sum_dim(pt_mul(pt_exp(lt), pt_sub(lt, ls)), -1, 0);
}

// ---- Spearman ------------------------------------------------------------------------------------

typedef struct {
  double v;
  int64_t i;
} ranked;

static int by_value(const void *a, const void *b) {
  double x = ((const ranked *)a)->v, y = ((const ranked *)b)->v;
  return x < y ? -1 : x > y;
}

// rank (n): 1-based ranks of x, ties sharing their average rank.
static int average_ranks(const double *x, int64_t n, double *rank) {
  ranked *r = malloc(sizeof *r * (size_t)n);
  if (!r) return -1;
  for (int64_t i = 0; i < n; i++) r[i] = (ranked){x[i], i};
  qsort(r, (size_t)n, sizeof *r, by_value);
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && r[j + 1].v == r[i].v) j++;
    double avg = (double)(i + j) / 2 + 1;
    for (int64_t k = i; k <= j; k++) rank[r[k].i] = avg;
    i = j + 1;
  }
  free(r);
  return 0;
}

double align_spearman(const double *x, const double *y, int64_t n) {
  if (n < 2) return NAN;
  double *rx = malloc(sizeof *rx * (size_t)n), *ry = malloc(sizeof *ry * (size_t)n);
  double rho = NAN;
  if (rx && ry && !average_ranks(x, n, rx) && !average_ranks(y, n, ry)) {
    // Pearson's r of the ranks (exact with ties, unlike 1 - 6 sum d^2 / (n (n^2 - 1))).
    double mean = (double)(n + 1) / 2, sxy = 0, sxx = 0, syy = 0;
    for (int64_t i = 0; i < n; i++) {
      double a = rx[i] - mean, b = ry[i] - mean;
      sxy += a * b, sxx += a * a, syy += b * b;
    }
    if (sxx > 0 && syy > 0) rho = sxy / sqrt(sxx * syy);
  }
  free(rx);
  free(ry);
  return rho;
}

// ---- measuring -----------------------------------------------------------------------------------

typedef struct {
  double *st, *ss;  // (n) surprisal under the target and the scorer
  int64_t n, cap;
  double kl_sum;
} align_acc;

static int acc_grow(align_acc *a, int64_t more) {
  if (a->n + more <= a->cap) return 0;
  int64_t cap = a->cap ? a->cap : 1024;
  while (cap < a->n + more) cap *= 2;
  double *st = realloc(a->st, sizeof *st * (size_t)cap);
  if (st) a->st = st;
  double *ss = realloc(a->ss, sizeof *ss * (size_t)cap);
  if (ss) a->ss = ss;
  if (!st || !ss) return -1;
  a->cap = cap;
  return 0;
}

// One text: ids (n) with bos first; n - 1 tokens predicted.
static int measure_text(const llama_model *target, const llama_model *scorer, const lora_adapter *lora,
                        const int32_t *ids, int n, align_acc *acc, pith_err *err) {
  int64_t *wide = malloc(sizeof *wide * (size_t)n);
  float *kl = malloc(sizeof *kl * (size_t)n), *st = malloc(sizeof *st * (size_t)n),
        *ss = malloc(sizeof *ss * (size_t)n);
  int rc = -1;
  if (!wide || !kl || !st || !ss || acc_grow(acc, n - 1)) {
    pith_fail(err, "align: out of memory");
    goto done;
  }
  for (int i = 0; i < n; i++) wide[i] = ids[i];
  pt_scope s = pt_scope_begin();
  pt_tensor *x = pt_to_device(pt_from_data(wide, PT_I64, PT_SHAPE(1, n), PT_CPU), target->device);
  pt_tensor *next = pt_reshape(pt_slice(x, 1, 1, n), PT_SHAPE(n - 1, 1));
  llama_inputs in = {.ids = x}, ins = {.ids = x, .lora = lora};
  llama_outputs ot, os;
  if (llama_forward(target, &in, &ot, err) || llama_forward(scorer, &ins, &os, err)) {
    pt_scope_end(s);
    goto done;
  }
  int64_t V = pt_size(ot.logits, -1) < pt_size(os.logits, -1) ? pt_size(ot.logits, -1) : pt_size(os.logits, -1);
  pt_tensor *zt =
      pt_reshape(pt_slice(pt_slice(pt_to_dtype(ot.logits, PT_F32), 1, 0, n - 1), 2, 0, V), PT_SHAPE(n - 1, V));
  pt_tensor *zs =
      pt_reshape(pt_slice(pt_slice(pt_to_dtype(os.logits, PT_F32), 1, 0, n - 1), 2, 0, V), PT_SHAPE(n - 1, V));
  pt_tensor *k = align_kl_per_token(zt, zs, 1.0);
  pt_tensor *nt = pt_neg(pt_reshape(pt_gather(pt_log_softmax(zt, -1), 1, next), PT_SHAPE(n - 1)));
  pt_tensor *ns = pt_neg(pt_reshape(pt_gather(pt_log_softmax(zs, -1), 1, next), PT_SHAPE(n - 1)));
  size_t bytes = sizeof(float) * (size_t)(n - 1);
  int bad = !k || !nt || !ns || pt_to_data(pt_to_device(k, PT_CPU), kl, bytes) ||
            pt_to_data(pt_to_device(nt, PT_CPU), st, bytes) || pt_to_data(pt_to_device(ns, PT_CPU), ss, bytes);
  pt_scope_end(s);
  if (bad) {
    pt_fail(err, "align: the models' logits");
    goto done;
  }
  for (int i = 0; i < n - 1; i++) {
    acc->kl_sum += kl[i];
    acc->st[acc->n] = st[i], acc->ss[acc->n] = ss[i];
    acc->n++;
  }
  rc = 0;
done:
  free(wide), free(kl), free(st), free(ss);
  return rc;
}

int align_measure(const llama_model *target, const llama_model *scorer, const lora_adapter *scorer_lora, int32_t bos,
                  const char *corpus_path, int split, int64_t limit, int max_len, align_result *r, pith_err *err) {
  memset(r, 0, sizeof *r);
  if (max_len < 2) return pith_fail(err, "align: max_len %d must be >= 2", max_len);
  corpus *c = corpus_open(corpus_path, err);
  if (!c) return -1;
  corpus_col col = corpus_get_info(c)->kind == CORPUS_QA ? CORPUS_COL_CONTEXT : CORPUS_COL_DOC;
  int64_t n_rec = corpus_get_info(c)->n_records;
  align_acc acc = {0};
  int32_t *ids = malloc(sizeof *ids * (size_t)max_len);
  int rc = ids ? 0 : pith_fail(err, "align: out of memory");
  int was = pt_set_grad_enabled(0);
  for (int64_t i = 0; i < n_rec && !rc && (limit <= 0 || r->n_texts < limit); i++) {
    uint8_t sp;
    if (corpus_read_splits(c, i, 1, &sp, err) < 0) {
      rc = -1;
      break;
    }
    if (split >= 0 && sp != split) continue;
    int64_t off[2];
    if (corpus_read_offsets(c, col, 0, i, 2, off, err) < 0) {
      rc = -1;
      break;
    }
    int64_t len = off[1] - off[0];
    if (len > max_len - 1) len = max_len - 1;
    if (len < 1) continue;
    ids[0] = bos;
    if (corpus_read_flat_tokens(c, col, off[0], len, ids + 1, err) < 0) {
      rc = -1;
      break;
    }
    rc = measure_text(target, scorer, scorer_lora, ids, (int)len + 1, &acc, err);
    if (!rc) r->n_texts++;
  }
  pt_set_grad_enabled(was);
  if (!rc && acc.n == 0)
    rc = pith_fail(err, "%s: no text to measure in the %s split", corpus_path,
                   split >= 0 ? corpus_split_name(split) : "whole");
  if (!rc) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < acc.n; i++) a += acc.st[i], b += acc.ss[i];
    r->n_tokens = acc.n;
    r->kl = acc.kl_sum / (double)acc.n;
    r->nll_target = a / (double)acc.n;
    r->nll_scorer = b / (double)acc.n;
    r->spearman = align_spearman(acc.ss, acc.st, acc.n);
  }
  free(ids);
  free(acc.st);
  free(acc.ss);
  corpus_close(c);
  return rc;
}

// ---- pairing checks ------------------------------------------------------------------------------

int align_check_causal_lm(const char *dir, const char *role, pith_err *err) {
  char path[2048];
  if (!pith_is_dir(dir)) return pith_fail(err, "%s %s: no such model folder", role, dir);
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (!pith_is_file(path))
    return pith_fail(err, "%s: missing (the %s must be a Hugging Face model folder)", path, role);
  char *text = pith_read_file(path, NULL, err);
  if (!text) return -1;
  cJSON *root = cJSON_Parse(text);
  free(text);
  if (!root) return pith_fail(err, "%s: not valid JSON", path);
  int rc = 0;
  const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  if (cJSON_IsArray(arch) && cJSON_GetArraySize(arch) > 0) {
    int causal = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, arch) {
      const char *s = cJSON_GetStringValue(a);
      size_t n = s ? strlen(s) : 0;
      if (n >= 11 && !strcmp(s + n - 11, "ForCausalLM")) causal = 1;
    }
    if (!causal) {
      const char *first = cJSON_GetStringValue(cJSON_GetArrayItem(arch, 0));
      rc = pith_fail(err, "%s: architectures %s is not a causal LM (the %s must be a LLaMA-family *ForCausalLM)", path,
                     first ? first : "?", role);
    }
  }
  const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "model_type"));
  if (!rc && (!type || (strcmp(type, "llama") && strcmp(type, "mistral") && strcmp(type, "qwen2"))))
    rc = pith_fail(err, "%s: model_type '%s' is not a causal LM pith reads (llama, mistral, qwen2 are)", path,
                   type ? type : "(missing)");
  cJSON_Delete(root);
  if (rc) return rc;
  char st[2048], idx[2048];
  snprintf(st, sizeof st, "%s/model.safetensors", dir);
  snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
  if (!pith_is_file(st) && !pith_is_file(idx))
    return pith_fail(err, "%s: missing (nor model.safetensors.index.json): the %s has no weights", st, role);
  return 0;
}

int align_check_same_vocab(const char *target_dir, const char *scorer_dir, pith_err *err) {
  tokenizer *tt = tokenizer_load(target_dir, err);
  if (!tt) return -1;
  tokenizer *ts = tokenizer_load(scorer_dir, err);
  if (!ts) {
    tokenizer_free(tt);
    return -1;
  }
  char why[256] = "";
  int32_t V = tokenizer_vocab_size(tt);
  if (V != tokenizer_vocab_size(ts)) {
    snprintf(why, sizeof why, "%d tokens vs %d", V, tokenizer_vocab_size(ts));
  } else if (tokenizer_bos_id(tt) != tokenizer_bos_id(ts)) {
    snprintf(why, sizeof why, "bos %d vs %d", tokenizer_bos_id(tt), tokenizer_bos_id(ts));
  } else {
    for (int32_t i = 0; i < V; i++) {
      const char *a = tokenizer_token_piece(tt, i), *b = tokenizer_token_piece(ts, i);
      if ((a || b) && (!a || !b || strcmp(a, b))) {
        snprintf(why, sizeof why, "id %d is '%.40s' vs '%.40s'", i, a ? a : "(none)", b ? b : "(none)");
        break;
      }
    }
  }
  tokenizer_free(tt);
  tokenizer_free(ts);
  if (*why)
    return pith_fail(
        err, "the target %s and the scorer %s have different tokenizers (%s); distillation needs one vocabulary",
        target_dir, scorer_dir, why);
  return 0;
}
