// EHPC's pieces: llama_forward's attention probabilities (rows sum to one, nothing on future keys,
// the same whether the forward stops early or runs to the logits, the same with a prefix as the
// positions after it), avg_pool1d and the top-k selection on a hand-worked case, the --heads
// parser, and bad heads, windows and prompts giving one-line errors.
#include "check.h"
#include "ehpc.h"

enum { T = 24 };

static llama_model *tiny(void) {
  llama_config c = {.arch = LLAMA_ARCH_LLAMA, .vocab_size = 64, .dim = 32, .hidden_dim = 48, .n_layers = 3,
                    .n_heads = 4, .n_kv_heads = 2, .max_seq_len = 64, .rope_theta = 10000, .norm_eps = 1e-5,
                    .bos_id = -1, .eos_id = -1};
  pith_err err = {{0}};
  if (llama_config_validate(&c, &err)) return NULL;
  return llama_new_random(&c, 5, PT_F32, PT_CPU, &err);
}

static void test_pool_select(void) {
  // avg_pool1d(kernel 3, padding 1, count_include_pad): y[i] = (x[i-1] + x[i] + x[i+1]) / 3
  const float x[8] = {0, 0, 9, 0, 0, 0, 3, 0};
  const float want[8] = {0, 3, 3, 3, 0, 1, 1, 1};
  float y[8];
  ehpc_pool(x, 8, 3, y);
  for (int i = 0; i < 8; i++) CHECK_MSG(fabsf(y[i] - want[i]) < 1e-6, "pool[%d] = %g, want %g", i, y[i], want[i]);
  // kernel 1 is the identity; kernel 5 near the edge counts the padding
  ehpc_pool(x, 8, 1, y);
  for (int i = 0; i < 8; i++) CHECK(y[i] == x[i]);
  ehpc_pool(x, 8, 5, y);
  CHECK(fabsf(y[0] - 9.0f / 5) < 1e-6 && fabsf(y[7] - 3.0f / 5) < 1e-6 && fabsf(y[4] - 12.0f / 5) < 1e-6);

  // top 2 of {0,3,3,3,0,1,1,1}: the tie of three 3s goes to the earlier positions 1 and 2
  pith_err err = {{0}};
  uint8_t kept[8];
  const float pooled[8] = {0, 3, 3, 3, 0, 1, 1, 1};
  CHECK(ehpc_select(pooled, 8, NULL, 2, kept, &err) == 0);
  const uint8_t want2[8] = {0, 1, 1, 0, 0, 0, 0, 0};
  CHECK(memcmp(kept, want2, 8) == 0);
  // position 7 forced: it is kept besides the top 2
  const uint8_t force[8] = {0, 0, 0, 0, 0, 0, 0, 1};
  CHECK(ehpc_select(pooled, 8, force, 3, kept, &err) == 0);
  const uint8_t want3[8] = {0, 1, 1, 0, 0, 0, 0, 1};
  CHECK(memcmp(kept, want3, 8) == 0);
  // a budget larger than the input keeps everything; one below the forced count is an error
  CHECK(ehpc_select(pooled, 8, NULL, 20, kept, &err) == 0);
  for (int i = 0; i < 8; i++) CHECK(kept[i]);
  CHECK(ehpc_select(pooled, 8, force, 0, kept, &err) == -1);
  CHECK_MSG(strstr(err.msg, "below the 1 kept whole") != NULL, "%s", err.msg);
}

static void test_parse_heads(void) {
  ehpc_heads h;
  pith_err err = {{0}};
  CHECK(ehpc_parse_heads("2:0,3", &h, &err) == 0 && h.layer == 2 && h.n_heads == 2 && h.heads[0] == 0 && h.heads[1] == 3);
  const char *bad[] = {"2", "2:", "x:1", "2:1,,3", "-1:0", "2:a"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err.msg[0] = 0;
    CHECK_MSG(ehpc_parse_heads(bad[i], &h, &err) == -1 && strstr(err.msg, "--heads"), "'%s': %s", bad[i], err.msg);
    CHECK(strchr(err.msg, '\n') == NULL);
  }
}

// attention (1, H, W, S) into a float buffer
static int attn_of(llama_model *m, const llama_inputs *in, float *out, size_t n) {
  pith_err err = {{0}};
  pt_scope s = pt_scope_begin();
  llama_outputs o;
  int rc = llama_forward(m, in, &o, &err);
  if (rc == 0) {
    rc = pt_to_data(o.attn, out, n * sizeof(float));
    if (in->no_logits) rc |= o.logits != NULL;  // an early stop leaves no logits
    llama_outputs_free(&o);
  } else {
    fprintf(stderr, "%s\n", err.msg);
  }
  pt_scope_end(s);
  return rc;
}

static void test_attention(llama_model *m) {
  int64_t ids[T];
  for (int i = 0; i < T; i++) ids[i] = (i * 29 + 7) % 64;
  const int W = 5, H = m->cfg.n_heads;
  static float a[4 * 5 * T], b[4 * 5 * T], full[4 * T * T];
  pt_scope s = pt_scope_begin();
  pt_tensor *x = pt_from_data(ids, PT_I64, PT_SHAPE(1, T), PT_CPU);
  for (int layer = 0; layer < m->cfg.n_layers; layer++) {
    llama_inputs early = {.ids = x, .no_logits = 1, .want_attn = 1, .attn_layer = layer, .attn_window = W};
    llama_inputs late = {.ids = x, .want_attn = 1, .attn_layer = layer, .attn_window = W};
    llama_inputs all = {.ids = x, .no_logits = 1, .want_attn = 1, .attn_layer = layer};
    CHECK(attn_of(m, &early, a, sizeof a / sizeof *a) == 0);
    CHECK(attn_of(m, &late, b, sizeof b / sizeof *b) == 0);
    CHECK(attn_of(m, &all, full, sizeof full / sizeof *full) == 0);
    double worst_sum = 0, future = 0, diff = 0, win = 0;
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++) {
        int q = T - W + w;  // the query's position
        double sum = 0;
        for (int j = 0; j < T; j++) {
          float p = a[(h * W + w) * T + j];
          sum += p;
          if (j > q) future = fmax(future, p);
          diff = fmax(diff, fabs(p - b[(h * W + w) * T + j]));
          win = fmax(win, fabs(p - full[(h * T + q) * T + j]));  // the window is the last rows of all
        }
        worst_sum = fmax(worst_sum, fabs(sum - 1));
      }
    CHECK_MSG(worst_sum < 1e-5, "layer %d: a row sums to 1 +- %g", layer, worst_sum);
    CHECK_MSG(future == 0, "layer %d: %g on a future key", layer, future);
    CHECK_MSG(diff < 1e-6, "layer %d: early stop vs full forward differ by %g", layer, diff);
    CHECK_MSG(win < 1e-6, "layer %d: window vs all queries differ by %g", layer, win);
  }
  // a mask of all-real tokens (the masked path) gives the same probabilities as plain causal
  pt_tensor *mask = pt_ones(PT_SHAPE(1, T), PT_BOOL, PT_CPU);
  llama_inputs masked = {.ids = x, .mask = mask, .no_logits = 1, .want_attn = 1, .attn_layer = 1, .attn_window = W};
  llama_inputs plain = {.ids = x, .no_logits = 1, .want_attn = 1, .attn_layer = 1, .attn_window = W};
  CHECK(attn_of(m, &masked, a, sizeof a / sizeof *a) == 0);
  CHECK(attn_of(m, &plain, b, sizeof b / sizeof *b) == 0);
  double d = 0;
  for (size_t i = 0; i < sizeof a / sizeof *a; i++) d = fmax(d, fabs(a[i] - b[i]));
  CHECK_MSG(d < 1e-6, "masked vs causal differ by %g", d);
  // bad requests
  pith_err err = {{0}};
  llama_outputs o;
  llama_inputs bad_layer = {.ids = x, .no_logits = 1, .want_attn = 1, .attn_layer = 3, .attn_window = W};
  CHECK(llama_forward(m, &bad_layer, &o, &err) == -1 && strstr(err.msg, "layers 0..2"));
  llama_inputs bad_window = {.ids = x, .no_logits = 1, .want_attn = 1, .attn_layer = 0, .attn_window = T + 1};
  CHECK(llama_forward(m, &bad_window, &o, &err) == -1 && strstr(err.msg, "window"));
  pt_scope_end(s);
}

static void test_scores(llama_model *m) {
  int32_t ids[T];
  for (int i = 0; i < T; i++) ids[i] = (i * 29 + 7) % 64;
  float s1[T], s2[T], s12[T], heads_att[4 * T];
  pith_err err = {{0}};
  ehpc_heads h1 = {.layer = 1, .n_heads = 1, .heads = {0}}, h2 = {.layer = 1, .n_heads = 1, .heads = {3}};
  ehpc_heads h12 = {.layer = 1, .n_heads = 2, .heads = {0, 3}};
  CHECK(ehpc_token_scores(m, &h1, ids, T, 4, s1, &err) == 0);
  CHECK(ehpc_token_scores(m, &h2, ids, T, 4, s2, &err) == 0);
  CHECK(ehpc_token_scores(m, &h12, ids, T, 4, s12, &err) == 0);
  CHECK(ehpc_layer_attention(m, 1, ids, T, 4, heads_att, &err) == 0);
  double d = 0, total = 0;
  for (int i = 0; i < T; i++) {
    d = fmax(d, fabs(s12[i] - s1[i] - s2[i]));
    d = fmax(d, fabs(heads_att[0 * T + i] - s1[i]) + fabs(heads_att[3 * T + i] - s2[i]));
    total += s12[i];
  }
  CHECK_MSG(d < 1e-6, "summed heads differ by %g", d);
  CHECK_MSG(fabs(total - 2) < 1e-5, "two heads' averaged rows sum to %g, not 2", total);

  // bad heads and windows: one line each
  struct {
    ehpc_heads h;
    int window, n;
    const char *says;
  } bad[] = {
      {{.layer = 1, .n_heads = 0}, 4, T, "no evaluator heads"},
      {{.layer = 3, .n_heads = 1, .heads = {0}}, 4, T, "layer 3 is out of range"},
      {{.layer = 0, .n_heads = 1, .heads = {4}}, 4, T, "head 4 is out of range"},
      {{.layer = 0, .n_heads = 2, .heads = {1, 1}}, 4, T, "given twice"},
      {{.layer = 0, .n_heads = 1, .heads = {1}}, T, T, "window of 24 tokens needs a prompt longer"},
      {{.layer = 0, .n_heads = 1, .heads = {1}}, 0, T, "window of 0"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err.msg[0] = 0;
    int rc = ehpc_token_scores(m, &bad[i].h, ids, bad[i].n, bad[i].window, s1, &err);
    CHECK_MSG(rc == -1 && strstr(err.msg, bad[i].says) && !strchr(err.msg, '\n'), "case %zu: %s", i, err.msg);
  }
  int32_t longer[80] = {0};
  CHECK(ehpc_token_scores(m, &h1, longer, 80, 4, s1, &err) == -1 && strstr(err.msg, "max_position_embeddings 64"));
}

int main(void) {
  test_pool_select();
  test_parse_heads();
  llama_model *m = tiny();
  CHECK(m != NULL);
  if (m) {
    test_attention(m);
    test_scores(m);
  }
  llama_free(m);
  return check_done("test_ehpc");
}
