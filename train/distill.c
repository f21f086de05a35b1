// distill: pith distill's checks, the target's generations (sft) and the KL loss (see distill.h).
#include "distill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "align.h"
#include "corpus.h"
#include "distill_classifier.h"
#include "generate.h"
#include "hf_folder.h"
#include "ingest.h"
#include "sha256.h"
#include "task.h"
#include "tokenizer.h"

// A corpus that opens, or one line naming it (what says which key it came from).
static int check_corpus(const char *path, const char *what, pith_err *err) {
  if (!*path) return pith_fail(err, "%s: not set", what);
  if (!pith_is_file(path)) return pith_fail(err, "%s %s: no such file", what, path);
  corpus *c = corpus_open(path, err);
  corpus_close(c);
  return c ? 0 : -1;
}

int distill_preflight(const train_args *a, pith_err *err) {
  if (a->distill == DISTILL_CLASSIFIER) return distill_cls_preflight(a, err);
  if (!*a->model_name_or_path) return pith_fail(err, "model_name_or_path: not set (the scorer)");
  if (!*a->target_model_name_or_path) return pith_fail(err, "target_model_name_or_path: not set (the target LLM)");
  if (a->bf16 && a->device == PT_CPU)
    return pith_fail(err, "bf16: for CUDA (the frozen target in bf16; the scorer trains in f32); CPU runs in f32");
  if (align_check_causal_lm(a->target_model_name_or_path, "target", err) ||
      align_check_causal_lm(a->model_name_or_path, "scorer", err) ||
      align_check_same_vocab(a->target_model_name_or_path, a->model_name_or_path, err) ||
      check_corpus(a->train_file, "train_file", err))
    return -1;
  if (a->distill == DISTILL_SFT) {
    if (*a->generated_file && pith_is_file(a->generated_file))
      return check_corpus(a->generated_file, "generated_file", err);
    if (a->generation_num_prompts < 1 || a->generation_prompt_len < 1 || a->generation_max_new_tokens < 1)
      return pith_fail(err, "generation_num_prompts, generation_prompt_len and generation_max_new_tokens must be >= 1");
    if (a->generation_temperature < 0 || !(a->generation_top_p > 0 && a->generation_top_p <= 1))
      return pith_fail(err, "generation_temperature must be >= 0 and generation_top_p in (0, 1]");
  }
  return 0;
}

// The target's weights file (model.safetensors, or the shards' index) and its sha256.
static int target_fingerprint(const char *dir, char *path, size_t len, char hex[SHA256_HEX_SIZE], pith_err *err) {
  snprintf(path, len, "%s/model.safetensors", dir);
  if (!pith_is_file(path)) snprintf(path, len, "%s/model.safetensors.index.json", dir);
  return sha256_hash_file(path, hex, err);
}

typedef struct {
  tokenizer *tok;
  task_tokens tt;
  llama_model *target;
  corpus *prompts;
  corpus_writer *w;
  corpus_record rec;
  int32_t *buf;
  char *text;
} gen_state;

// One prompt → one document. *made: 1 when a document was written (a record with no tokens is skipped).
static int generate_one(gen_state *g, const train_args *a, int64_t i, int index, int *made, pith_err *err) {
  *made = 0;
  if (corpus_read(g->prompts, i, CORPUS_READ_TOKENS, &g->rec, err)) return -1;
  const corpus_field *f = corpus_get_info(g->prompts)->kind == CORPUS_QA ? &g->rec.context : &g->rec.doc;
  int n = f->n_tokens < a->generation_prompt_len ? (int)f->n_tokens : a->generation_prompt_len;
  if (n < 1) return 0;
  g->buf[0] = g->tt.bos;
  memcpy(g->buf + 1, f->tokens, sizeof *g->buf * (size_t)n);
  const int32_t *eos;
  gen_config gc = {.max_new_tokens = a->generation_max_new_tokens,
                   .temperature = a->generation_temperature,
                   .top_p = a->generation_top_p,
                   .seed = a->seed + (uint64_t)index};
  gc.n_eos = tokenizer_eos_ids(g->tok, &eos);
  gc.eos_ids = eos;
  int32_t *out = NULL;
  int n_out = 0;
  if (generate(g->target, NULL, NULL, NULL, g->buf, n + 1, &gc, NULL, NULL, &out, &n_out, err)) return -1;
  for (int e = 0; n_out > 0 && e < gc.n_eos; e++)
    if (out[n_out - 1] == eos[e]) {
      n_out--;  // the trainer puts its own eos after a document
      break;
    }
  memcpy(g->buf + 1 + n, out, sizeof *out * (size_t)n_out);
  free(out);
  int total = n + n_out;
  free(g->text);
  g->text = tokenizer_decode(g->tok, g->buf + 1, (size_t)total, 1, err);
  if (!g->text) return -1;
  char id[1100];
  snprintf(id, sizeof id, "gen:%s", g->rec.id);
  corpus_span doc = {g->buf + 1, total, g->text, -1};
  if (corpus_writer_add_doc(g->w, id, &doc, err)) return -1;
  *made = 1;
  return 0;
}

static int run_generation(gen_state *g, const train_args *a, const char *out_path, pith_err *err) {
  const char *dir = a->target_model_name_or_path;
  // The scorer's tokenizer (the vocabularies are one, checked): the trainer then finds its own
  // fingerprint on the file (a model folder's config.json is part of a fingerprint).
  const char *tok_path = *a->tokenizer ? a->tokenizer : a->model_name_or_path;
  g->tok = tokenizer_load(tok_path, err);
  if (!g->tok || task_tokens_init(&g->tt, g->tok, tok_path, err)) return -1;
  char wpath[2048], wsha[SHA256_HEX_SIZE], toksha[SHA256_HEX_SIZE];
  if (target_fingerprint(dir, wpath, sizeof wpath, wsha, err) || ingest_tokenizer_fingerprint(g->tok, toksha, err))
    return -1;
  pt_dtype dtype = a->bf16 && a->device != PT_CPU ? PT_BF16 : PT_F32;
  g->target = hf_model_load(dir, dtype, a->device, err);
  g->prompts = g->target ? corpus_open(a->train_file, err) : NULL;
  if (!g->prompts) return -1;
  g->buf = malloc(sizeof *g->buf * (size_t)(1 + a->generation_prompt_len + a->generation_max_new_tokens));
  if (!g->buf) return pith_fail(err, "generation: out of memory");
  // Provenance: everything that decides the generations.
  char command[4096];
  snprintf(command, sizeof command,
           "pith distill (method: sft) generations: target=%s target_weights_sha256=%s prompts=%s "
           "generation_num_prompts=%d generation_prompt_len=%d generation_max_new_tokens=%d "
           "generation_temperature=%g generation_top_p=%g seed=%llu",
           dir, wsha, a->train_file, a->generation_num_prompts, a->generation_prompt_len, a->generation_max_new_tokens,
           a->generation_temperature, a->generation_top_p, (unsigned long long)a->seed);
  corpus_writer_config wc = {.kind = CORPUS_DOCUMENTS,
                             .tokenizer_sha256 = toksha,
                             .vocab_size = tokenizer_vocab_size(g->tok),
                             .command = command,
                             .val_fraction = 0.05};
  g->w = corpus_writer_create(out_path, &wc, err);
  if (!g->w || corpus_writer_add_source(g->w, a->train_file, NULL, err) ||
      corpus_writer_add_source(g->w, wpath, wsha, err))
    return -1;
  int64_t n_rec = corpus_get_info(g->prompts)->n_records;
  int done = 0, was = pt_set_grad_enabled(0), rc = 0;
  double t0 = pith_now_s();
  printf("generating: %s continues up to %d prompts of %s into %s\n", dir, a->generation_num_prompts, a->train_file,
         out_path);
  for (int64_t i = 0; i < n_rec && done < a->generation_num_prompts && !rc; i++) {
    uint8_t sp;
    if (corpus_read_splits(g->prompts, i, 1, &sp, err) < 0) rc = -1;
    if (rc || sp != CORPUS_SPLIT_TRAIN) continue;
    int made;
    rc = generate_one(g, a, i, done, &made, err);
    done += made;
    if (!rc && made && (done % 32 == 0 || done == a->generation_num_prompts))
      printf("generated %d/%d (%.1f s)\n", done, a->generation_num_prompts, pith_now_s() - t0), fflush(stdout);
  }
  pt_set_grad_enabled(was);
  if (rc) return -1;
  if (done == 0)
    return pith_fail(err, "%s: no train-split record with tokens to prompt the target with", a->train_file);
  corpus_writer *w = g->w;
  g->w = NULL;
  if (corpus_writer_close(w, err)) return -1;
  printf("generations written: %s (%d documents)\n", out_path, done);
  return 0;
}

int distill_generate(const train_args *a, const char *out_path, pith_err *err) {
  gen_state g = {0};
  if (a->threads > 0) pt_set_num_threads(a->threads);
  int rc = run_generation(&g, a, out_path, err);
  corpus_writer_abort(g.w);
  corpus_record_free(&g.rec);
  corpus_close(g.prompts);
  llama_free(g.target);
  task_tokens_free(&g.tt);
  tokenizer_free(g.tok);
  free(g.buf);
  free(g.text);
  return rc;
}

pt_tensor *distill_kl_loss(const llama_model *target, const llama_model *scorer, const lora_adapter *scorer_lora,
                           pt_gen *g, const comp_batch *b, double T, pith_err *err) {
  llama_inputs in = {.ids = b->dec_ids, .mask = b->dec_mask};
  llama_inputs ins = {.ids = b->dec_ids, .mask = b->dec_mask, .lora = scorer_lora, .dropout_gen = g};
  llama_outputs ot, os;
  int was = pt_set_grad_enabled(0);  // the teacher: no graph kept
  int bad = llama_forward(target, &in, &ot, err);
  pt_set_grad_enabled(was);
  if (bad || llama_forward(scorer, &ins, &os, err)) return NULL;
  pt_tensor *kl = align_kl_per_token(ot.logits, os.logits, T);  // (B, M)
  pt_tensor *valid = pt_add_scalar(pt_neg(pt_to_dtype(pt_eq_scalar(b->dec_targets, TASK_NO_TARGET), PT_F32)), 1.0);
  pt_tensor *loss = pt_mul_scalar(pt_div(pt_sum(pt_mul(kl, valid)), pt_sum(valid)), T * T);
  if (!loss) pt_fail(err, "kl loss");
  return loss;
}

int distill_lora_merge(llama_model *m, const lora_adapter *l, pith_err *err) {
  int was = pt_set_grad_enabled(0);
  for (int i = 0; i < l->n_layers && pt_ok(); i++) {
    llama_layer *L = &m->layers[i];
    pt_tensor *w[LLAMA_N_PROJ] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
    for (int p = 0; p < LLAMA_N_PROJ; p++) {
      if (!l->a[i][p]) continue;
      pt_scope s = pt_scope_begin();
      pt_tensor *delta = pt_to_dtype(pt_mul_scalar(pt_matmul(l->b[i][p], l->a[i][p]), l->scaling), m->dtype);
      pt_copy_(w[p], pt_add(w[p], delta));
      pt_scope_end(s);
    }
  }
  pt_set_grad_enabled(was);
  return pt_ok() ? 0 : pt_fail(err, "lora merge");
}
