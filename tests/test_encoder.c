// encoder + encoder_folder: shapes, padding (a padded row gives the logits of the row alone),
// XLM-R's positions, dropout, a few training steps, config and folder errors (one line, naming the
// file), save/load round trips (f32, bf16, f16 storage; labels), older and bare weight names, a new
// classifier head, and no leaked handles. Parity with transformers is tests/reference/encoder_parity.py.
#include <sys/stat.h>

#include "check.h"
#include "encoder_folder.h"
#include "safetensors.h"

static char dir[64];

static encoder_config small(encoder_arch arch) {
  encoder_config c = {.arch = arch, .vocab_size = 40, .dim = 24, .n_layers = 2, .n_heads = 3, .hidden_dim = 36,
                      .act = ENCODER_ACT_GELU, .max_positions = 24, .type_vocab_size = arch == ENCODER_BERT ? 2 : 1,
                      .norm_eps = 1e-5, .pad_id = arch == ENCODER_BERT ? 0 : 1, .bos_id = -1, .eos_id = -1,
                      .num_labels = 2, .hidden_dropout = 0.1, .attention_dropout = 0.1, .classifier_dropout = -1};
  return c;
}

static void write_text(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  pith_err err;
  CHECK(pith_write_file_atomic(path, text, strlen(text), &err) == 0);
}

static pt_tensor *ids_tensor(const int64_t *ids, int64_t B, int64_t T) {
  return pt_from_data(ids, PT_I64, PT_SHAPE(B, T), PT_CPU);
}

static pt_tensor *mask_tensor(const uint8_t *m, int64_t B, int64_t T) {
  return pt_from_data(m, PT_BOOL, PT_SHAPE(B, T), PT_CPU);
}

static double max_diff(const pt_tensor *a, const pt_tensor *b) {
  pt_tensor *d = pt_abs(pt_sub(pt_to_dtype(a, PT_F32), pt_to_dtype(b, PT_F32)));
  return pt_item(pt_amax_dim(pt_view(d, PT_SHAPE(-1)), 0, 0));
}

static pt_tensor *logits_of(const encoder_model *m, pt_tensor *ids, pt_tensor *mask) {
  encoder_inputs in = {.ids = ids, .mask = mask};
  encoder_outputs out;
  pith_err err;
  int rc = encoder_forward(m, &in, &out, &err);
  CHECK_MSG(rc == 0, "%s", err.msg);
  return rc ? NULL : out.logits;
}

// Logits of a fixed batch, for comparing two models.
static double model_diff(const encoder_model *a, const encoder_model *b) {
  pt_scope s = pt_scope_begin();
  int64_t ids[2 * 5] = {5, 9, 3, 7, 2, 8, 4, 6, 1, 1};
  uint8_t m[2 * 5] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  pt_tensor *ti = ids_tensor(ids, 2, 5), *tm = mask_tensor(m, 2, 5);
  double d = max_diff(logits_of(a, ti, tm), logits_of(b, ti, tm));
  pt_scope_end(s);
  return d;
}

static void test_shapes_and_params(void) {
  pith_err err;
  pt_scope s = pt_scope_begin();
  encoder_config c = small(ENCODER_BERT);
  c.num_labels = 3;
  encoder_model *m = encoder_new_random(&c, 1, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  int64_t ids[3 * 7];
  for (int i = 0; i < 21; i++) ids[i] = 1 + (i * 7) % 39;
  int64_t types[3 * 7] = {0, 0, 0, 1, 1, 1, 1};
  encoder_inputs in = {.ids = ids_tensor(ids, 3, 7), .want_hidden = 1};
  encoder_outputs out;
  CHECK(encoder_forward(m, &in, &out, &err) == 0);
  pt_shape ls = pt_shape_of(out.logits), hs = pt_shape_of(out.hidden);
  CHECK(ls.ndim == 3 && ls.d[0] == 3 && ls.d[1] == 7 && ls.d[2] == 3);
  CHECK(hs.ndim == 3 && hs.d[0] == 3 && hs.d[1] == 7 && hs.d[2] == 24);
  // Token types change the result; all-zero types are the default.
  pt_tensor *plain = out.logits;
  in.token_types = pt_from_data(types, PT_I64, PT_SHAPE(1, 7), PT_CPU);
  CHECK(encoder_forward(m, &in, &out, &err) == -1);  // (1, 7) is not (B, T)
  CHECK_CONTAINS(err.msg, "token_types must be (B, T) = (3, 7)");
  in.token_types = pt_expand(pt_from_data(types, PT_I64, PT_SHAPE(1, 7), PT_CPU), PT_SHAPE(3, 7));
  CHECK(encoder_forward(m, &in, &out, &err) == 0);
  CHECK(max_diff(out.logits, plain) > 1e-4);
  in.token_types = pt_zeros(PT_SHAPE(3, 7), PT_I64, PT_CPU);
  CHECK(encoder_forward(m, &in, &out, &err) == 0);
  CHECK(max_diff(out.logits, plain) < 1e-6);
  // Hidden states only.
  in.no_logits = 1;
  CHECK(encoder_forward(m, &in, &out, &err) == 0 && out.logits == NULL && out.hidden != NULL);

  // Parameters: 5 embedding tensors, 16 per layer, the classifier's 2; counts match the shapes.
  int n = encoder_params(m, NULL, 0);
  CHECK(n == 5 + 16 * 2 + 2);
  pt_tensor *params[64];
  CHECK(encoder_params(m, params, 64) == n && params[0] == m->word_emb && params[n - 1] == m->cls_b);
  int64_t D = 24, F = 36, want = (40 + 24 + 2) * D + 2 * D + 2 * (4 * D * D + 4 * D + 2 * D * F + F + D + 4 * D) + 3 * D + 3;
  CHECK_MSG(encoder_param_count(m) == want, "%lld parameters, want %lld", (long long)encoder_param_count(m),
            (long long)want);
  // Random init zeroes the padding row, as transformers does.
  CHECK(pt_item(pt_sum(pt_abs(pt_slice(m->word_emb, 0, 0, 1)))) == 0);
  CHECK(pt_item(pt_sum(pt_abs(pt_slice(m->word_emb, 0, 1, 2)))) > 0);
  // Input errors.
  encoder_inputs bad = {.ids = pt_zeros(PT_SHAPE(2, 3), PT_F32, PT_CPU)};
  CHECK(encoder_forward(m, &bad, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "encoder_forward: ids must be i64");
  bad.ids = pt_zeros(PT_SHAPE(1, 25), PT_I64, PT_CPU);
  CHECK(encoder_forward(m, &bad, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "25 tokens, but the model has 24 positions");
  bad.ids = pt_full(PT_SHAPE(1, 3), 40, PT_I64, PT_CPU);  // past the vocabulary
  CHECK(encoder_forward(m, &bad, &out, &err) == -1);
  CHECK_CONTAINS(err.msg, "encoder_forward: embedding_padded");
  CHECK(pt_ok());
  encoder_free(m);
  pt_scope_end(s);
}

// Each row padded within a batch gives the logits it gives alone; XLM-R also with left padding.
static void test_padding(encoder_arch arch) {
  pith_err err;
  pt_scope s = pt_scope_begin();
  encoder_config c = small(arch);
  encoder_model *m = encoder_new_random(&c, 2, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  enum { B = 3, T = 6 };
  int pad = c.pad_id;
  int64_t rows[B][T] = {{5, 6, 7, 8, 9, 10}, {11, 12, 13, pad, pad, pad}, {pad, pad, 14, 15, 16, 17}};
  uint8_t mask[B][T] = {{1, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0}, {0, 0, 1, 1, 1, 1}};
  int nb = arch == ENCODER_XLM_ROBERTA ? 3 : 2;  // BERT's positions are absolute: left padding shifts them
  pt_tensor *batch = logits_of(m, ids_tensor(&rows[0][0], nb, T), mask_tensor(&mask[0][0], nb, T));
  for (int b = 0; b < nb; b++) {
    int start = 0, len = 0;
    while (!mask[b][start]) start++;
    while (start + len < T && mask[b][start + len]) len++;
    pt_tensor *alone = logits_of(m, ids_tensor(&rows[b][start], 1, len), NULL);
    pt_tensor *part = pt_slice(pt_slice(batch, 0, b, b + 1), 1, start, start + len);
    double d = max_diff(part, alone);
    CHECK_MSG(d < 1e-5, "%s row %d: padded logits differ from the row alone by %g", encoder_model_type(arch), b, d);
  }
  // Position ids: BERT 0..T-1; XLM-R pad + 1, + 2, ... at real tokens, pad at pads.
  pt_tensor *pos = encoder_position_ids(m, mask_tensor(&mask[0][0], B, T), B, T);
  int64_t got[B * T];
  CHECK(pt_to_data(pos, got, sizeof got) == 0);
  for (int b = 0; b < B; b++) {
    int k = 0;
    for (int t = 0; t < T; t++) {
      int64_t want = arch == ENCODER_BERT ? t : mask[b][t] ? pad + ++k : pad;
      CHECK_MSG(got[b * T + t] == want, "%s position [%d,%d] = %lld, want %lld", encoder_model_type(arch), b, t,
                (long long)got[b * T + t], (long long)want);
    }
  }
  // A row with no real token at all still gives finite outputs (it attends to all of its keys).
  uint8_t none[T] = {0};
  pt_tensor *l = logits_of(m, ids_tensor(&rows[1][0], 1, T), mask_tensor(none, 1, T));
  CHECK(l && !isnan(pt_item(pt_sum(l))));
  // XLM-R uses pad + 1 positions less than the table has.
  if (arch == ENCODER_XLM_ROBERTA) {
    encoder_inputs in = {.ids = pt_full(PT_SHAPE(1, 23), 5, PT_I64, PT_CPU)};
    encoder_outputs out;
    CHECK(encoder_forward(m, &in, &out, &err) == -1);
    CHECK_CONTAINS(err.msg, "23 tokens, but the model has 22 positions (max_position_embeddings 24)");
  }
  CHECK(pt_ok());
  encoder_free(m);
  pt_scope_end(s);
}

// Dropout only with a generator; bf16 and f16 close to f32; a few AdamW steps fit a token-labelling task.
static void test_training(void) {
  pith_err err;
  encoder_config c = small(ENCODER_XLM_ROBERTA);
  encoder_model *m = encoder_new_random(&c, 3, PT_F32, PT_CPU, &err);
  CHECK_MSG(m != NULL, "%s", err.msg);
  pt_scope s = pt_scope_begin();
  int64_t ids[2 * 8] = {4, 9, 12, 30, 7, 22, 13, 5, 6, 31, 8, 17, 25, 1, 1, 1};
  uint8_t mk[2 * 8] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
  pt_tensor *ti = ids_tensor(ids, 2, 8), *tm = mask_tensor(mk, 2, 8);
  pt_gen *g = pt_gen_new(9, PT_CPU);
  encoder_inputs in = {.ids = ti, .mask = tm, .dropout_gen = g};
  encoder_outputs a, b;
  CHECK(encoder_forward(m, &in, &a, &err) == 0 && encoder_forward(m, &in, &b, &err) == 0);
  CHECK(max_diff(a.logits, b.logits) > 1e-4);  // different masks drawn
  pt_tensor *eval = logits_of(m, ti, tm);
  CHECK(max_diff(eval, logits_of(m, ti, tm)) == 0);  // no generator: deterministic
  // The step-by-step attention that dropout needs masks as the fused one: with a vanishing rate
  // (and no other dropout) it gives the evaluation logits.
  encoder_config saved = m->cfg;
  m->cfg.hidden_dropout = m->cfg.classifier_dropout = 0;
  m->cfg.attention_dropout = 1e-12;
  CHECK(encoder_forward(m, &in, &a, &err) == 0);
  CHECK_MSG(max_diff(a.logits, eval) < 1e-5, "attention with dropout differs by %g", max_diff(a.logits, eval));
  m->cfg = saved;
  // bf16 weights and compute stay close to f32.
  char half_dir[80];
  snprintf(half_dir, sizeof half_dir, "%s/half", dir);
  CHECK(encoder_folder_save(m, half_dir, &err) == 0);
  pt_dtype halves[2] = {PT_BF16, PT_F16};
  for (int i = 0; i < 2; i++) {
    encoder_model *h = encoder_folder_load(half_dir, halves[i], PT_CPU, NULL, &err);
    CHECK_MSG(h != NULL, "%s", err.msg);
    if (!h) continue;
    pt_tensor *lh = logits_of(h, ti, tm);
    CHECK(pt_dtype_of(lh) == halves[i]);
    double d = max_diff(lh, eval);
    CHECK_MSG(d > 0 && d < 0.05, "%s logits differ from f32 by %g", pt_dtype_name(halves[i]), d);
    encoder_free(h);
  }
  pt_scope_end(s);

  // Labels: keep the token when its id is even. Padded positions are ignored (-100).
  int64_t labels[16];
  for (int i = 0; i < 16; i++) labels[i] = mk[i] ? ids[i] % 2 == 0 : -100;
  CHECK(encoder_set_trainable(m, 1) == 0);
  pt_tensor *params[64];
  int n = encoder_params(m, params, 64);
  pt_adamw *opt = pt_adamw_new(params, n, (pt_adamw_config){1e-2, 0.9, 0.999, 1e-8, 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 30; step++) {
    pt_scope st = pt_scope_begin();
    encoder_inputs tin = {.ids = ids_tensor(ids, 2, 8), .mask = mask_tensor(mk, 2, 8)};
    encoder_outputs out;
    CHECK(encoder_forward(m, &tin, &out, &err) == 0);
    pt_tensor *loss = pt_cross_entropy(pt_view(out.logits, PT_SHAPE(16, 2)),
                                       pt_from_data(labels, PT_I64, PT_SHAPE(16), PT_CPU), -100, PT_REDUCE_MEAN);
    double v = pt_item(loss);
    if (step == 0) first = v;
    last = v;
    CHECK(pt_backward(loss) == 0);
    // Every weight but the padding-only ones learns; the padding row of the word table gets nothing.
    if (step == 0) {
      pt_tensor *gq = pt_grad(m->layers[0].wq), *gw = pt_grad(m->word_emb);
      CHECK(gq && pt_item(pt_sum(pt_abs(gq))) > 0);
      CHECK(gw && pt_item(pt_sum(pt_abs(pt_slice(gw, 0, c.pad_id, c.pad_id + 1)))) == 0);
    }
    CHECK(pt_adamw_step(opt) == 0);
    pt_adamw_zero_grad(opt);
    pt_scope_end(st);
  }
  CHECK_MSG(last < 0.1 * first, "loss went from %g to %g in 30 steps", first, last);
  pt_adamw_free(opt);
  pt_gen_free(g);
  encoder_free(m);
}

// Rewrite DIR/model.safetensors: drop tensors whose names contain `drop`, and rename `from` → `to`
// (substrings; NULL for none).
static void rewrite_weights(const char *drop, const char *from, const char *to) {
  pith_err err;
  char path[128], name[300];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  st_file *f = st_open(path, &err);
  CHECK_MSG(f != NULL, "%s", err.msg);
  if (!f) return;
  st_writer *w = st_writer_new();
  for (int i = 0; i < st_count(f); i++) {
    const st_tensor *t = st_at(f, i);
    if (drop && strstr(t->name, drop)) continue;
    const char *hit = from ? strstr(t->name, from) : NULL;
    if (hit) snprintf(name, sizeof name, "%.*s%s%s", (int)(hit - t->name), t->name, to, hit + strlen(from));
    else snprintf(name, sizeof name, "%s", t->name);
    CHECK(st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, &err) == 0);
  }
  CHECK(st_writer_finish(w, path, &err) == 0);
  st_writer_free(w);
  st_close(f);
}

static void test_roundtrips(void) {
  pith_err err;
  for (int arch = ENCODER_BERT; arch <= ENCODER_XLM_ROBERTA; arch++) {
    encoder_config c = small((encoder_arch)arch);
    c.num_labels = 3;
    snprintf(c.labels[0], ENCODER_LABEL_LEN, "drop");
    snprintf(c.labels[1], ENCODER_LABEL_LEN, "keep");
    c.act = ENCODER_ACT_GELU_TANH;
    c.classifier_dropout = 0.25;
    if (arch == ENCODER_XLM_ROBERTA) c.bos_id = 0, c.eos_id = 2;
    encoder_model *m = encoder_new_random(&c, 4, PT_F32, PT_CPU, &err);
    CHECK(encoder_folder_save(m, dir, &err) == 0);
    CHECK(encoder_folder_is_encoder(dir));
    encoder_model *back = encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    if (back) {
      encoder_config *b = &back->cfg;
      CHECK(b->arch == c.arch && b->num_labels == 3 && !strcmp(b->labels[1], "keep") && !strcmp(b->labels[2], "LABEL_2"));
      CHECK(b->act == ENCODER_ACT_GELU_TANH && b->classifier_dropout == 0.25 && b->hidden_dropout == 0.1);
      CHECK(b->pad_id == c.pad_id && b->bos_id == c.bos_id && b->eos_id == c.eos_id && b->norm_eps == 1e-5);
      CHECK(b->type_vocab_size == c.type_vocab_size && b->max_positions == 24);
      CHECK(model_diff(m, back) == 0);  // f32 storage is exact
      encoder_free(back);
    }
    // bf16 and f16 storage: the model saved in that dtype, loaded back into f32, is close.
    pt_dtype halves[2] = {PT_BF16, PT_F16};
    for (int i = 0; i < 2; i++) {
      encoder_model *h = encoder_new_random(&c, 4, halves[i], PT_CPU, &err);
      CHECK(h && encoder_folder_save(h, dir, &err) == 0);
      char path[128];
      snprintf(path, sizeof path, "%s/model.safetensors", dir);
      st_file *f = st_open(path, &err);
      CHECK(f && st_find(f, "classifier.weight")->dtype == (i ? ST_F16 : ST_BF16));
      st_close(f);
      encoder_model *up = encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err);
      CHECK_MSG(up != NULL, "%s", err.msg);
      if (up) {
        double d = model_diff(m, up);
        CHECK_MSG(d > 0 && d < 0.05, "%s storage: logits differ from f32 by %g", pt_dtype_name(halves[i]), d);
        CHECK(model_diff(h, up) < 0.05);
      }
      encoder_free(up);
      encoder_free(h);
    }

    // Older names (LayerNorm.gamma / .beta) and a bare encoder (no "bert." / "roberta." prefix) load the same.
    CHECK(encoder_folder_save(m, dir, &err) == 0);
    rewrite_weights(NULL, "LayerNorm.weight", "LayerNorm.gamma");
    rewrite_weights(NULL, "LayerNorm.bias", "LayerNorm.beta");
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.", encoder_weight_prefix(c.arch));
    rewrite_weights(NULL, prefix, "");
    back = encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err);
    CHECK_MSG(back != NULL, "old names: %s", err.msg);
    if (back) CHECK(model_diff(m, back) == 0);
    encoder_free(back);

    // A plain encoder with no classifier: an error, unless a new head is asked for.
    rewrite_weights("classifier.", NULL, NULL);
    CHECK(encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err) == NULL);
    CHECK_CONTAINS(err.msg, "/model.safetensors: tensor 'classifier.weight' is missing");
    encoder_load_opts opts = {.new_head = 1, .num_labels = 2, .seed = 5};
    back = encoder_folder_load(dir, PT_F32, PT_CPU, &opts, &err);
    CHECK_MSG(back != NULL, "new head: %s", err.msg);
    pt_scope s = pt_scope_begin();
    if (back) {
      CHECK(back->cfg.num_labels == 2 && back->cfg.labels[0][0] == 0);
      CHECK(pt_size(back->cls_w, 0) == 2 && pt_item(pt_sum(pt_abs(back->cls_b))) == 0);
      double std = sqrt(pt_item(pt_mean(pt_mul(back->cls_w, back->cls_w))));
      CHECK_MSG(std > 0.01 && std < 0.03, "new head std %g", std);
      CHECK(max_diff(back->layers[1].w_out, m->layers[1].w_out) == 0);  // the body is the file's
    }
    pt_scope_end(s);
    encoder_free(back);
    encoder_free(m);
  }
}

// A config.json with `text` gives an error containing `want` and naming the file, on one line.
static void config_error(const char *text, const char *want) {
  write_text("config.json", text);
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", dir);
  encoder_config c;
  pith_err err = {{0}};
  CHECK_MSG(encoder_config_load(path, &c, &err) == -1, "accepted: %s", text);
  CHECK_CONTAINS(err.msg, want);
  CHECK_CONTAINS(err.msg, path);
  CHECK(!strchr(err.msg, '\n'));
}

#define BASE "\"vocab_size\": 40, \"hidden_size\": 24, \"num_hidden_layers\": 1, \"intermediate_size\": 30"

static void test_errors(void) {
  config_error("{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4}",
               "model_type 'llama' is not an encoder that pith reads (bert and xlm-roberta are)");
  config_error("{" BASE ", \"num_attention_heads\": 4}", "missing field 'model_type'");
  config_error("{\"model_type\": \"bert\", \"vocab_size\": 40, \"num_hidden_layers\": 1, \"intermediate_size\": 30, "
               "\"num_attention_heads\": 4}",
               "missing field 'hidden_size'");
  config_error("{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 5}",
               "hidden_size 24 is not a multiple of num_attention_heads 5");
  config_error("{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 4, \"hidden_act\": \"quick_gelu\"}",
               "hidden_act 'quick_gelu' is not supported");
  config_error("{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 4, \"position_embedding_type\": "
               "\"relative_key\"}",
               "position_embedding_type 'relative_key' is not supported");
  config_error("{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 4, \"is_decoder\": true}",
               "a decoder is not a token classifier");
  config_error("{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 4, \"num_labels\": 3, "
               "\"id2label\": {\"0\": \"a\", \"1\": \"b\"}}",
               "num_labels 3 but id2label has 2 entries");
  config_error("{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 4, \"id2label\": {\"0\": \"a\", \"2\": "
               "\"b\"}}",
               "id2label key '2' is not one of 0..1");
  config_error("{\"model_type\": \"xlm-roberta\", " BASE ", \"num_attention_heads\": 4, \"pad_token_id\": 40}",
               "pad_token_id 40 is outside the vocabulary of 40");
  config_error("{\"model_type\": \"xlm-roberta\", " BASE ", \"num_attention_heads\": 4, \"max_position_embeddings\": 2}",
               "max_position_embeddings 2 leaves no position after pad_token_id 1");
  config_error("{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 4, \"layer_norm_eps\": \"small\"}",
               "field 'layer_norm_eps' must be a number");
  config_error("[1, 2]", "not a JSON object");

  // Defaults: transformers' (BERT pad 0, two labels, eps 1e-12, exact GELU, 512 positions).
  write_text("config.json", "{\"model_type\": \"bert\", " BASE ", \"num_attention_heads\": 4}");
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", dir);
  encoder_config c;
  pith_err err;
  CHECK(encoder_config_load(path, &c, &err) == 0);
  CHECK(c.num_labels == 2 && c.pad_id == 0 && c.norm_eps == 1e-12 && c.act == ENCODER_ACT_GELU &&
        c.max_positions == 512 && c.type_vocab_size == 2 && c.classifier_dropout < 0 && c.bos_id == -1);
  CHECK(!encoder_folder_is_encoder("/nonexistent"));
  write_text("config.json", "{\"model_type\": \"xlm-roberta\", " BASE ", \"num_attention_heads\": 4, "
                            "\"eos_token_id\": [2, 5], \"bos_token_id\": 0}");
  CHECK(encoder_config_load(path, &c, &err) == 0 && c.eos_id == 2 && c.bos_id == 0 && c.pad_id == 1);

  // Folders: no weights file, a missing weight, a wrong shape, an integer weight, a LLaMA folder.
  encoder_config sc = small(ENCODER_BERT);
  encoder_model *m = encoder_new_random(&sc, 6, PT_F32, PT_CPU, &err);
  CHECK(encoder_folder_save(m, dir, &err) == 0);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unlink(path);
  CHECK(encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "model.safetensors");
  CHECK(encoder_folder_save(m, dir, &err) == 0);
  rewrite_weights("encoder.layer.1.attention.self.query.bias", NULL, NULL);
  CHECK(encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "/model.safetensors: tensor 'bert.encoder.layer.1.attention.self.query.bias' is missing");
  CHECK(!strchr(err.msg, '\n'));
  CHECK(encoder_folder_save(m, dir, &err) == 0);
  encoder_config wide = sc;
  wide.vocab_size = 41;
  char *json = encoder_config_json(&wide, PT_F32);
  write_text("config.json", json);
  free(json);
  CHECK(encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "/model.safetensors: tensor 'bert.embeddings.word_embeddings.weight' is [40,24], "
                          "config.json implies [41,24]");
  CHECK(encoder_folder_save(m, dir, &err) == 0);
  rewrite_weights("classifier.bias", NULL, NULL);
  {
    st_file *f = st_open(path, &err);
    st_writer *w = st_writer_new();
    for (int i = 0; f && i < st_count(f); i++) {
      const st_tensor *t = st_at(f, i);
      CHECK(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err) == 0);
    }
    int64_t shape[1] = {2}, data[2] = {0, 1};
    CHECK(st_writer_add(w, "classifier.bias", ST_I64, 1, shape, data, &err) == 0);
    CHECK(st_writer_finish(w, path, &err) == 0);
    st_writer_free(w);
    st_close(f);
    encoder_load_opts opts = {.new_head = 1};  // a head in the file is used (and here it is wrong), not drawn
    CHECK(encoder_folder_load(dir, PT_F32, PT_CPU, &opts, &err) == NULL);
    CHECK_CONTAINS(err.msg, "/model.safetensors: tensor 'classifier.bias' is I64 (F32, BF16 or F16 expected)");
  }
  write_text("config.json", "{\"model_type\": \"llama\", \"vocab_size\": 40, \"hidden_size\": 24, "
                            "\"intermediate_size\": 30, \"num_hidden_layers\": 1, \"num_attention_heads\": 4}");
  CHECK(!encoder_folder_is_encoder(dir));
  CHECK(encoder_folder_load(dir, PT_F32, PT_CPU, NULL, &err) == NULL);
  CHECK_CONTAINS(err.msg, "/config.json: model_type 'llama' is not an encoder");
  CHECK(encoder_alloc(&sc, PT_I64, PT_CPU, &err) == NULL);
  CHECK_CONTAINS(err.msg, "compute dtype must be f32, bf16 or f16");
  encoder_free(m);
  CHECK(pt_ok());
}

// The tokenizer's files travel with the weights; a config.json among them does not replace pith's.
static void test_save_with_files(void) {
  pith_err err;
  char src[96], out[96], path[160];
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(out, sizeof out, "%s/with_files", dir);
  CHECK(pith_mkdirs(src, &err) == 0);
  const char *names[3] = {"tokenizer.json", "config.json", "sentencepiece.bpe.model"};
  const char *texts[3] = {"{\"model\": {\"type\": \"Unigram\"}}", "{\"model_type\": \"junk\"}", "\x01\x02spm"};
  char paths[3][160];
  const char *files[3];
  for (int i = 0; i < 3; i++) {
    snprintf(paths[i], sizeof paths[i], "%s/%s", src, names[i]);
    CHECK(pith_write_file_atomic(paths[i], texts[i], strlen(texts[i]), &err) == 0);
    files[i] = paths[i];
  }
  encoder_config c = small(ENCODER_XLM_ROBERTA);
  encoder_model *m = encoder_new_random(&c, 8, PT_F32, PT_CPU, &err);
  CHECK(encoder_folder_save_with_files(m, out, files, 3, &err) == 0);
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", out, names[i]);
    size_t len;
    char *got = pith_read_file(path, &len, &err);
    CHECK_MSG(got != NULL, "%s", err.msg);
    if (i == 1) CHECK(got && strstr(got, "XLMRobertaForTokenClassification") != NULL);
    else CHECK(got && len == strlen(texts[i]) && !memcmp(got, texts[i], len));
    free(got);
  }
  encoder_model *back = encoder_folder_load(out, PT_F32, PT_CPU, NULL, &err);
  CHECK_MSG(back && model_diff(m, back) == 0, "%s", err.msg);
  encoder_free(back);
  files[1] = "/nonexistent/tokenizer_config.json";
  CHECK(encoder_folder_save_with_files(m, out, files, 3, &err) == -1);
  CHECK_CONTAINS(err.msg, "/nonexistent/tokenizer_config.json");
  encoder_free(m);
}

// On a GPU: the folder loaded onto cuda:0 gives the CPU's logits (f32 to 1e-4, bf16 to 5e-2) and
// trains (a backward pass reaches the weights). Skipped, with a line saying so, without CUDA.
static void test_cuda(void) {
  if (pt_cuda_device_count() == 0) {
    printf("test_cuda: no CUDA device, GPU checks skipped\n");
    return;
  }
  pith_err err;
  encoder_config c = small(ENCODER_XLM_ROBERTA);
  encoder_model *cpu = encoder_new_random(&c, 10, PT_F32, PT_CPU, &err);
  CHECK(encoder_folder_save(cpu, dir, &err) == 0);
  pt_scope s = pt_scope_begin();
  int64_t ids[2 * 6] = {4, 9, 12, 30, 7, 22, 13, 5, 6, 1, 1, 1};
  uint8_t mk[2 * 6] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
  pt_tensor *ti = ids_tensor(ids, 2, 6), *tm = mask_tensor(mk, 2, 6);
  pt_tensor *want = logits_of(cpu, ti, tm);
  pt_dtype dts[2] = {PT_F32, PT_BF16};
  double tols[2] = {1e-4, 5e-2};
  for (int i = 0; i < 2; i++) {
    encoder_model *g = encoder_folder_load(dir, dts[i], 0, NULL, &err);
    CHECK_MSG(g != NULL, "cuda load: %s", err.msg);
    if (!g) continue;
    CHECK(encoder_set_trainable(g, 1) == 0);
    pt_tensor *got = logits_of(g, pt_to_device(ti, 0), pt_to_device(tm, 0));
    CHECK(got && pt_device_of(got) == 0);
    double d = max_diff(pt_to_device(got, PT_CPU), want);
    CHECK_MSG(d < tols[i], "cuda %s logits differ from the CPU's by %g", pt_dtype_name(dts[i]), d);
    CHECK(pt_backward(pt_sum(pt_to_dtype(got, PT_F32))) == 0);
    pt_tensor *gq = pt_grad(g->layers[0].wq);
    CHECK(gq && pt_item(pt_sum(pt_abs(pt_to_dtype(gq, PT_F32)))) > 0);
    printf("test_cuda: %s logits differ from the CPU's by %.2g\n", pt_dtype_name(dts[i]), d);
    encoder_free(g);
  }
  CHECK(pt_ok());
  pt_scope_end(s);
  encoder_free(cpu);
}

static int count_shape(const char *name, pt_tensor **slot, pt_shape shape, void *ctx) {
  int64_t n = 1;
  for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
  ((int64_t *)ctx)[0] += n;
  ((int64_t *)ctx)[1]++;
  return 0;
}

// The config.json files of LLMLingua-2's published scorers (their fields as published, trimmed of
// the ones transformers ignores) parse, and give the models transformers builds from them: the
// parameter and tensor counts are what AutoModelForTokenClassification has on the meta device.
static void test_published_configs(void) {
  struct {
    const char *json;
    encoder_arch arch;
    int64_t params, tensors;
  } cases[] = {
      {"{\"_name_or_path\": \"qianhuiwu/llmlingua-2-xlm-roberta-large-meetingbank\", \"architectures\": "
       "[\"XLMRobertaForTokenClassification\"], \"attention_probs_dropout_prob\": 0.1, \"bos_token_id\": 0, "
       "\"classifier_dropout\": null, \"eos_token_id\": 2, \"hidden_act\": \"gelu\", \"hidden_dropout_prob\": 0.1, "
       "\"hidden_size\": 1024, \"initializer_range\": 0.02, \"intermediate_size\": 4096, \"layer_norm_eps\": 1e-05, "
       "\"max_position_embeddings\": 514, \"model_type\": \"xlm-roberta\", \"num_attention_heads\": 16, "
       "\"num_hidden_layers\": 24, \"output_past\": true, \"pad_token_id\": 1, \"position_embedding_type\": "
       "\"absolute\", \"torch_dtype\": \"float32\", \"transformers_version\": \"4.38.2\", \"type_vocab_size\": 1, "
       "\"use_cache\": true, \"vocab_size\": 250102}",
       ENCODER_XLM_ROBERTA, 558945282, 391},
      {"{\"architectures\": [\"BertForTokenClassification\"], \"attention_probs_dropout_prob\": 0.1, "
       "\"classifier_dropout\": null, \"directionality\": \"bidi\", \"hidden_act\": \"gelu\", "
       "\"hidden_dropout_prob\": 0.1, \"hidden_size\": 768, \"initializer_range\": 0.02, \"intermediate_size\": 3072, "
       "\"layer_norm_eps\": 1e-12, \"max_position_embeddings\": 512, \"model_type\": \"bert\", "
       "\"num_attention_heads\": 12, \"num_hidden_layers\": 12, \"pad_token_id\": 0, \"pooler_fc_size\": 768, "
       "\"pooler_type\": \"first_token_transform\", \"position_embedding_type\": \"absolute\", \"torch_dtype\": "
       "\"float32\", \"type_vocab_size\": 2, \"use_cache\": true, \"vocab_size\": 119647}",
       ENCODER_BERT, 177341186, 199},
  };
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", dir);
  for (int i = 0; i < 2; i++) {
    write_text("config.json", cases[i].json);
    encoder_config c;
    pith_err err;
    CHECK_MSG(encoder_config_load(path, &c, &err) == 0, "%s", err.msg);
    CHECK(c.arch == cases[i].arch && c.num_labels == 2 && c.act == ENCODER_ACT_GELU && c.classifier_dropout < 0);
    encoder_model *m = encoder_alloc(&c, PT_F32, PT_CPU, &err);  // shapes only: no weights drawn
    CHECK_MSG(m != NULL, "%s", err.msg);
    if (!m) continue;
    int64_t count[2] = {0, 0};
    encoder_visit_weights(m, count_shape, count);
    CHECK_MSG(count[0] == cases[i].params && count[1] == cases[i].tensors, "%s: %lld parameters in %lld tensors",
              encoder_model_type(c.arch), (long long)count[0], (long long)count[1]);
    encoder_free(m);
  }
}

int main(void) {
  pt_set_num_threads(2);
  snprintf(dir, sizeof dir, "/tmp/pith_test_encoder_XXXXXX");
  CHECK_SKIP_IF(mkdtemp(dir) == NULL, "cannot make a temporary folder under /tmp");
  size_t base = pt_live_handles();
  test_shapes_and_params();
  test_padding(ENCODER_BERT);
  test_padding(ENCODER_XLM_ROBERTA);
  test_training();
  test_roundtrips();
  test_errors();
  test_save_with_files();
  test_published_configs();
  test_cuda();
  CHECK_MSG(pt_live_handles() == base, "%zu handles leaked", pt_live_handles() - base);
  pith_remove_tree(dir);
  return check_done("test_encoder");
}
