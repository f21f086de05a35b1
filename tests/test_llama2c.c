// test_llama2c: llama2.c v0 checkpoints into Hugging Face folders. Tiny synthetic checkpoints
// (shared and unshared classifier) are written here with every weight distinct, converted, and
// every tensor of model.safetensors compared with the source, wq/wk through permutation tables
// written out by hand; the tokenizer files are checked (merges, specials, pith loads both forms
// with the same ids); bad inputs give one clear line and leave no folder behind.
#define _GNU_SOURCE
#include <cJSON.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"
#include "llama2c.h"
#include "safetensors.h"
#include "tokenizer.h"

static char tmp[256];

static const char *at(const char *name) {
  static char buf[8][512];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
  return buf[k];
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

// Entries of tmp whose name starts with prefix (to catch partial or moved-aside folders).
static int count_prefix(const char *prefix) {
  DIR *d = opendir(tmp);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
  if (d) closedir(d);
  return n;
}

// Weight i of a synthetic checkpoint: distinct and exact in f32.
static float val(uint64_t i) { return (float)i * 0.25f + 1.0f; }

// A v0 checkpoint: header h, then n_floats weights val(0..) (the freq_cis tables included, as the
// format has them). extra_floats: more (or, negative, fewer) floats than the layout needs.
static void write_checkpoint(const char *path, const int32_t h[7], long extra_floats) {
  int64_t dim = h[0], hid = h[1], L = h[2], nh = h[3], nkv = h[4], V = h[5] < 0 ? -h[5] : h[5], S = h[6];
  int64_t hd = dim / (nh ? nh : 1), kv = nkv * hd;
  bool broken = false;
  for (int i = 0; i < 7; i++) broken |= h[i] == 0 || h[i] > 4096 || (i != 5 && h[i] < 0);
  int64_t n = broken ? 16 : V * dim + L * dim + L * dim * dim + 2 * L * kv * dim + L * dim * dim + L * dim +
                                3 * L * hid * dim + dim + S * hd + (h[5] < 0 ? V * dim : 0) + extra_floats;
  FILE *f = fopen(path, "wb");
  fwrite(h, 4, 7, f);
  for (int64_t i = 0; i < n; i++) {
    float x = val((uint64_t)i);
    fwrite(&x, 4, 1, f);
  }
  fclose(f);
}

// tokenizer.bin: <unk>, <s>, </s>, <0x00>..<0xFF>, then " a" "ab" " ab" " " "a" "b" (scores as
// SentencePiece BPE gives them: merges best first, then the characters) and `more` filler pieces.
static int write_tokenizer(const char *path, int more) {
  FILE *f = fopen(path, "wb");
  int32_t max_len = 8, n = 0;
  fwrite(&max_len, 4, 1, f);
  char piece[16];
  for (int i = 0; i < 259 + 6 + more; i++, n++) {
    float score = 0;
    static const char *extra[6] = {" a", "ab", " ab", " ", "a", "b"};
    if (i == 0) strcpy(piece, "<unk>");
    else if (i == 1) strcpy(piece, "\n<s>\n");
    else if (i == 2) strcpy(piece, "\n</s>\n");
    else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
    else if (i < 265) strcpy(piece, extra[i - 259]), score = -(float)(i - 258);
    else snprintf(piece, sizeof piece, "zz%d", i), score = -100.0f - (float)i;
    int32_t len = (int32_t)strlen(piece);
    fwrite(&score, 4, 1, f);
    fwrite(&len, 4, 1, f);
    fwrite(piece, 1, (size_t)len, f);
  }
  fclose(f);
  return n;
}

static cJSON *read_json(const char *path) {
  pith_err err = {{0}};
  char *text = pith_read_file(path, NULL, &err);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  CHECK_MSG(j != NULL, "%s: not JSON (%s)", path, err.msg);
  return j;
}

static int jint(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valueint : -12345;
}

// Tensor `name` of f has `shape` and element [r][c] == src[row_of(r) * cols + c].
static void check_tensor(const st_file *f, const char *name, int64_t rows, int64_t cols, uint64_t src_off,
                         const int *perm, int hd) {
  const st_tensor *t = st_find(f, name);
  CHECK_MSG(t != NULL, "tensor %s missing", name);
  if (!t) return;
  bool vec = cols == 0;
  CHECK_MSG(t->dtype == ST_F32 && t->ndim == (vec ? 1 : 2) && t->shape[0] == rows && (vec || t->shape[1] == cols),
            "%s: dtype %s, ndim %d, shape [%lld, %lld]", name, st_dtype_name(t->dtype), t->ndim,
            (long long)t->shape[0], (long long)t->shape[1]);
  if (t->nbytes != (size_t)(rows * (vec ? 1 : cols)) * 4) return;
  const float *x = t->data;
  int64_t nc = vec ? 1 : cols, bad = 0;
  for (int64_t r = 0; r < rows; r++) {
    int64_t sr = perm ? (r / hd) * hd + perm[r % hd] : r;
    for (int64_t c = 0; c < nc; c++)
      if (x[r * nc + c] != val(src_off + (uint64_t)(sr * nc + c)) && bad++ < 3)
        fprintf(stderr, "%s[%lld][%lld] = %g, want source row %lld: %g\n", name, (long long)r, (long long)c,
                x[r * nc + c], (long long)sr, val(src_off + (uint64_t)(sr * nc + c)));
  }
  CHECK_MSG(bad == 0, "%s: %lld values differ from the source", name, (long long)bad);
}

// Convert a synthetic checkpoint with header h and check every tensor and the config.
static void check_model(const int32_t h[7], const int *perm_q, const char *out_name) {
  const int64_t dim = h[0], hid = h[1], L = h[2], nh = h[3], nkv = h[4], V = h[5] < 0 ? -h[5] : h[5], S = h[6];
  const int64_t hd = dim / nh, kv = nkv * hd;
  const bool shared = h[5] > 0;
  write_checkpoint(at("model.bin"), h, 0);
  pith_err err = {{0}};
  int rc = llama2c_convert(at("model.bin"), at("tok.bin"), at(out_name), 0, &err);
  CHECK_MSG(rc == 0, "convert: %s", err.msg);
  if (rc) return;
  CHECK(!exists(at("out.partial")));

  // llama2.c's layout, written out again here: offsets in floats.
  uint64_t emb = 0, rms_att = V * dim, wq = rms_att + L * dim, wk = wq + L * dim * dim, wv = wk + L * kv * dim,
           wo = wv + L * kv * dim, rms_ffn = wo + L * dim * dim, w1 = rms_ffn + L * dim, w2 = w1 + L * hid * dim,
           w3 = w2 + L * dim * hid, rms_final = w3 + L * hid * dim, wcls = rms_final + dim + S * hd;
  char path[512], name[128];
  snprintf(path, sizeof path, "%s/model.safetensors", at(out_name));
  st_file *f = st_open(path, &err);
  CHECK_MSG(f != NULL, "%s", err.msg);
  if (!f) return;
  CHECK(st_count(f) == 2 + 9 * L + (shared ? 0 : 1));
  CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "pt"));
  CHECK(st_metadata(f, "pith_source_sha256") && strlen(st_metadata(f, "pith_source_sha256")) == 64);
  check_tensor(f, "model.embed_tokens.weight", V, dim, emb, NULL, 0);
  for (int64_t l = 0; l < L; l++) {
#define N(s) (snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, s), name)
    check_tensor(f, N("input_layernorm.weight"), dim, 0, rms_att + l * dim, NULL, 0);
    check_tensor(f, N("self_attn.q_proj.weight"), dim, dim, wq + l * dim * dim, perm_q, (int)hd);
    check_tensor(f, N("self_attn.k_proj.weight"), kv, dim, wk + l * kv * dim, perm_q, (int)hd);
    check_tensor(f, N("self_attn.v_proj.weight"), kv, dim, wv + l * kv * dim, NULL, 0);
    check_tensor(f, N("self_attn.o_proj.weight"), dim, dim, wo + l * dim * dim, NULL, 0);
    check_tensor(f, N("post_attention_layernorm.weight"), dim, 0, rms_ffn + l * dim, NULL, 0);
    check_tensor(f, N("mlp.gate_proj.weight"), hid, dim, w1 + l * hid * dim, NULL, 0);
    check_tensor(f, N("mlp.down_proj.weight"), dim, hid, w2 + l * dim * hid, NULL, 0);
    check_tensor(f, N("mlp.up_proj.weight"), hid, dim, w3 + l * hid * dim, NULL, 0);
#undef N
  }
  check_tensor(f, "model.norm.weight", dim, 0, rms_final, NULL, 0);
  if (shared) CHECK(st_find(f, "lm_head.weight") == NULL);
  else check_tensor(f, "lm_head.weight", V, dim, wcls, NULL, 0);
  st_close(f);

  snprintf(path, sizeof path, "%s/config.json", at(out_name));
  cJSON *c = read_json(path);
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "model_type")), "llama"));
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "architectures"), 0)), "LlamaForCausalLM"));
  CHECK(jint(c, "hidden_size") == dim && jint(c, "intermediate_size") == hid && jint(c, "num_hidden_layers") == L);
  CHECK(jint(c, "num_attention_heads") == nh && jint(c, "num_key_value_heads") == nkv && jint(c, "vocab_size") == V);
  CHECK(jint(c, "max_position_embeddings") == S && jint(c, "bos_token_id") == 1 && jint(c, "eos_token_id") == 2);
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(c, "tie_word_embeddings")) == shared);
  CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "rms_norm_eps")), 1e-5, 1e-12);
  CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(c, "rope_theta")), 10000.0, 1e-12);
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "hidden_act")), "silu"));
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "torch_dtype")), "float32"));
  cJSON_Delete(c);
}

static void check_tokenizer_files(const char *out) {
  char path[512];
  snprintf(path, sizeof path, "%s/tokenizer.json", out);
  cJSON *t = read_json(path);
  const cJSON *model = cJSON_GetObjectItem(t, "model"), *vocab = cJSON_GetObjectItem(model, "vocab");
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(model, "type")), "BPE"));
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(model, "byte_fallback")));
  CHECK(cJSON_GetArraySize(vocab) == 265);
  CHECK(jint(vocab, "<unk>") == 0 && jint(vocab, "<s>") == 1 && jint(vocab, "</s>") == 2);
  CHECK(jint(vocab, "<0x00>") == 3 && jint(vocab, "<0x0A>") == 13 && jint(vocab, "<0xFF>") == 258);
  CHECK(jint(vocab, "\xe2\x96\x81" "a") == 259 && jint(vocab, "ab") == 260 && jint(vocab, "\xe2\x96\x81" "ab") == 261);
  CHECK(jint(vocab, "\xe2\x96\x81") == 262 && jint(vocab, "a") == 263 && jint(vocab, "b") == 264);
  // Merges by the merged piece's score; "▁ab"'s two splits: the longer left part first.
  const char *want[] = {"\xe2\x96\x81 a", "a b", "\xe2\x96\x81" "a b", "\xe2\x96\x81 ab"};
  const cJSON *merges = cJSON_GetObjectItem(model, "merges");
  CHECK_MSG(cJSON_GetArraySize(merges) == 4, "%d merges", cJSON_GetArraySize(merges));
  for (int i = 0; i < 4 && i < cJSON_GetArraySize(merges); i++) {
    const char *m = cJSON_GetStringValue(cJSON_GetArrayItem(merges, i));
    CHECK_MSG(m && !strcmp(m, want[i]), "merge %d is '%s', want '%s'", i, m ? m : "(not a string)", want[i]);
  }
  const cJSON *added = cJSON_GetObjectItem(t, "added_tokens");
  CHECK(cJSON_GetArraySize(added) == 3);
  for (int i = 0; i < 3; i++) {
    const cJSON *a = cJSON_GetArrayItem(added, i);
    CHECK(jint(a, "id") == i && cJSON_IsTrue(cJSON_GetObjectItem(a, "special")));
  }
  const cJSON *norm = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(t, "normalizer"), "normalizers"), 0);
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(norm, "type")), "Prepend"));
  cJSON_Delete(t);

  snprintf(path, sizeof path, "%s/tokenizer_config.json", out);
  t = read_json(path);
  CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(t, "bos_token")), "<s>"));
  CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t, "add_bos_token")));
  cJSON_Delete(t);
  snprintf(path, sizeof path, "%s/generation_config.json", out);
  t = read_json(path);
  CHECK(jint(t, "bos_token_id") == 1 && jint(t, "eos_token_id") == 2);
  cJSON_Delete(t);

  // tokenizer.bin is a byte copy; pith loads the folder (tokenizer.json) and the .bin alike.
  size_t n1 = 0, n2 = 0;
  pith_err err = {{0}};
  snprintf(path, sizeof path, "%s/tokenizer.bin", out);
  char *a = pith_read_file(at("tok.bin"), &n1, &err), *b = pith_read_file(path, &n2, &err);
  CHECK(a && b && n1 == n2 && !memcmp(a, b, n1));
  free(a), free(b);
  tokenizer *tj = tokenizer_load(out, &err);
  CHECK_MSG(tj != NULL, "pith loading %s: %s", out, err.msg);
  tokenizer *tb = tokenizer_load(at("tok.bin"), &err);
  CHECK_MSG(tb != NULL, "%s", err.msg);
  if (!tj || !tb) goto done;
  CHECK(!strcmp(tokenizer_source_path(tj) + strlen(tokenizer_source_path(tj)) - 14, "tokenizer.json"));
  CHECK(tokenizer_bos_id(tj) == 1 && tokenizer_vocab_size(tj) == 265);
  const int32_t *eos;
  CHECK(tokenizer_eos_ids(tj, &eos) >= 1 && eos[0] == 2);
  const char *texts[] = {"ab", "a b ab  aab", "ba\nab", "\xc3\xa9t\xc3\xa9 ab", " a", "abab ba a"};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    CHECK(tokenizer_encode(tj, texts[i], strlen(texts[i]), 1, &x, &nx, &err) == 0);
    CHECK(tokenizer_encode(tb, texts[i], strlen(texts[i]), 1, &y, &ny, &err) == 0);
    bool same = nx == ny && x && y && !memcmp(x, y, nx * sizeof *x);
    CHECK_MSG(same, "'%s': %zu ids from tokenizer.json, %zu from tokenizer.bin", texts[i], nx, ny);
    char *back = x ? tokenizer_decode(tj, x, nx, 1, &err) : NULL;
    CHECK_MSG(back && !strcmp(back, texts[i]), "'%s' decodes to '%s'", texts[i], back ? back : "(null)");
    free(back), free(x), free(y);
  }
  // "ab ab" -> bos, "▁ab", "▁ab": merges applied across the prepended space.
  int32_t *x = NULL;
  size_t nx = 0;
  CHECK(tokenizer_encode(tj, "ab ab", 5, 1, &x, &nx, &err) == 0);
  CHECK(nx == 3 && x[0] == 1 && x[1] == 261 && x[2] == 261);
  free(x);
done:
  tokenizer_free(tj);
  tokenizer_free(tb);
}

// A conversion that must fail with a message containing `want` and leave nothing behind.
static void check_fails(const char *ckpt, const char *tok, int force, const char *want, const char *what) {
  pith_err err = {{0}};
  int rc = llama2c_convert(ckpt, tok, at("bad"), force, &err);
  CHECK_MSG(rc != 0, "%s: converted", what);
  CHECK_MSG(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, want);
  CHECK_MSG(strchr(err.msg, '\n') == NULL, "%s: message is not one line", what);
  CHECK_MSG(count_prefix("bad") == 0, "%s: left something behind", what);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "/tmp/pith_test_llama2c_XXXXXX");
  if (!mkdtemp(tmp)) {
    printf("cannot create a temp folder\n");
    return 1;
  }
  CHECK(write_tokenizer(at("tok.bin"), 0) == 265);

  // Shared classifier, head_dim 4: HF rows of a head are llama2.c rows 0 2 | 1 3 (the even
  // elements of the pairs, then the odd ones); GQA with one kv head.
  static const int perm4[4] = {0, 2, 1, 3};
  const int32_t shared[7] = {8, 12, 2, 2, 1, 265, 16};
  check_model(shared, perm4, "out");
  check_tokenizer_files(at("out"));
  llama2c_config cfg;
  pith_err err = {{0}};
  CHECK(llama2c_read_config(at("model.bin"), &cfg, &err) == 0);
  CHECK(cfg.head_dim == 4 && cfg.kv_dim == 4 && cfg.shared_classifier == 1 && cfg.vocab_size == 265);

  // Unshared classifier, head_dim 8: rows 0 2 4 6 | 1 3 5 7.
  static const int perm8[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  const int32_t unshared[7] = {16, 8, 1, 2, 2, -265, 4};
  check_model(unshared, perm8, "out2");

  // An existing folder: refused without force (untouched), replaced with it.
  FILE *marker = fopen(at("out/marker"), "w");
  if (marker) fclose(marker);
  err.msg[0] = 0;
  CHECK(llama2c_convert(at("model.bin"), at("tok.bin"), at("out"), 0, &err) != 0);
  CHECK_CONTAINS(err.msg, "already exists");
  CHECK_CONTAINS(err.msg, at("out"));
  CHECK(exists(at("out/marker")) && !exists(at("out.partial")));
  CHECK(llama2c_convert(at("model.bin"), at("tok.bin"), at("out"), 1, &err) == 0);
  CHECK(!exists(at("out/marker")) && exists(at("out/model.safetensors")) && exists(at("out/config.json")));
  CHECK(count_prefix("out") == 2);  // out and out2: nothing moved aside or partial is left
  // "out/" names the same folder (the partial is out.partial, not out/.partial).
  char slash[512];
  snprintf(slash, sizeof slash, "%s/", at("out"));
  CHECK(llama2c_convert(at("model.bin"), at("tok.bin"), slash, 0, &err) != 0);
  CHECK_CONTAINS(err.msg, "already exists");
  // A stale partial folder: refused without force, cleared with it.
  CHECK(mkdir(at("out3.partial"), 0755) == 0);
  CHECK(llama2c_convert(at("model.bin"), at("tok.bin"), at("out3"), 0, &err) != 0);
  CHECK_CONTAINS(err.msg, "out3.partial");
  CHECK(!exists(at("out3")));
  CHECK(llama2c_convert(at("model.bin"), at("tok.bin"), at("out3"), 1, &err) == 0);
  CHECK(exists(at("out3/model.safetensors")) && !exists(at("out3.partial")));

  // Truncated, padded, shared/unshared mix-up.
  write_checkpoint(at("short.bin"), unshared, -1);
  check_fails(at("short.bin"), at("tok.bin"), 0, "truncated", "truncated checkpoint");
  check_fails(at("short.bin"), at("tok.bin"), 0, at("short.bin"), "truncated checkpoint names the file");
  write_checkpoint(at("long.bin"), shared, 1);
  check_fails(at("long.bin"), at("tok.bin"), 1, "trailing bytes", "padded checkpoint");
  int32_t flipped[7];
  memcpy(flipped, unshared, sizeof flipped);
  write_checkpoint(at("flip.bin"), unshared, 0);
  flipped[5] = 265;  // the header says shared, the file has a classifier
  FILE *f = fopen(at("flip.bin"), "r+b");
  fwrite(flipped, 4, 7, f);
  fclose(f);
  check_fails(at("flip.bin"), at("tok.bin"), 0, "sign of vocab_size", "shared/unshared mix-up");
  f = fopen(at("tiny.bin"), "wb");
  fwrite("abc", 1, 3, f);
  fclose(f);
  check_fails(at("tiny.bin"), at("tok.bin"), 0, "too short", "3-byte file");
  check_fails(at("missing.bin"), at("tok.bin"), 0, "cannot open", "missing checkpoint");

  // Bad headers.
  int32_t h[7];
  memcpy(h, shared, sizeof h), h[3] = 3;
  write_checkpoint(at("h.bin"), h, 0);
  check_fails(at("h.bin"), at("tok.bin"), 0, "not a multiple of n_heads", "dim % n_heads");
  memcpy(h, shared, sizeof h), h[4] = 2, h[3] = 4, h[0] = 12;  // 4 heads of 3: odd head_dim
  write_checkpoint(at("h.bin"), h, 0);
  check_fails(at("h.bin"), at("tok.bin"), 0, "is odd", "odd head_dim");
  memcpy(h, shared, sizeof h), h[4] = 3, h[3] = 2;
  write_checkpoint(at("h.bin"), h, 0);
  check_fails(at("h.bin"), at("tok.bin"), 0, "n_kv_heads", "n_kv_heads > n_heads");
  memcpy(h, shared, sizeof h), h[2] = 0;
  write_checkpoint(at("h.bin"), h, 0);
  check_fails(at("h.bin"), at("tok.bin"), 0, "n_layers is 0", "no layers");
  memcpy(h, shared, sizeof h), h[0] = -8;
  write_checkpoint(at("h.bin"), h, 0);
  check_fails(at("h.bin"), at("tok.bin"), 0, "dim is -8", "negative dim");
  memcpy(h, shared, sizeof h), h[0] = 0x616b3432, h[1] = 2;
  write_checkpoint(at("h.bin"), h, 0);
  check_fails(at("h.bin"), at("tok.bin"), 0, "only the legacy v0", "a v2 export");

  // Tokenizer problems.
  write_checkpoint(at("model.bin"), shared, 0);
  check_fails(at("model.bin"), at("no_tok.bin"), 0, "no_tok.bin: cannot open", "missing tokenizer");
  CHECK(write_tokenizer(at("tok300.bin"), 35) == 300);
  check_fails(at("model.bin"), at("tok300.bin"), 0, "has 300 tokens, but the checkpoint's vocab_size is 265",
              "tokenizer of another size");
  f = fopen(at("garbage.bin"), "wb");
  fwrite("\x08\x00\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00zz", 1, 14, f);
  fclose(f);
  check_fails(at("model.bin"), at("garbage.bin"), 0, "garbage.bin: not a llama2.c tokenizer.bin", "garbage tokenizer");
  // A truncated tokenizer.bin.
  size_t tn = 0;
  char *tb = pith_read_file(at("tok.bin"), &tn, &err);
  if (tb) pith_write_file_atomic(at("tok_cut.bin"), tb, tn - 2, &err);
  free(tb);
  check_fails(at("model.bin"), at("tok_cut.bin"), 0, "tok_cut.bin: truncated", "truncated tokenizer");

  if (!check_failures_) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("could not remove %s\n", tmp);
  } else {
    printf("files kept in %s\n", tmp);
  }
  return check_done("test_llama2c");
}
