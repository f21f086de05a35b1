// tokenizer: ids of the real LLaMA-3 tokenizer against fixtures from an independent
// implementation, GPT-2 and llama2.c ids checked by hand, a small SentencePiece-style
// tokenizer.json (ids checked with HF tokenizers), encoding from many threads, round trips, and
// the errors for bad files.
#define _GNU_SOURCE  // strdup, mkdtemp
#include <cJSON.h>
#include <pthread.h>
#include <sys/stat.h>

#include "check.h"
#include "tokenizer.h"

static char tmp_dir[] = "/tmp/pith_test_tokenizer_XXXXXX";

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int k = 0;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
  return buf[k];
}

static void write_text(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  fwrite(text, 1, len, f);
  fclose(f);
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
  return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

// Encode (no bos) and compare with want; then decode back to the text when round_trip.
static void check_encode(const tokenizer *t, const char *text, const int32_t *want, size_t n_want, int round_trip) {
  pith_err err = {{0}};
  int32_t *ids = NULL;
  size_t n = 0;
  CHECK_MSG(tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &err) == 0, "%s", err.msg);
  CHECK_MSG(!want || ids_equal(ids, n, want, n_want), "ids of \"%s\" differ (got %zu ids, first %d)", text, n,
            n ? ids[0] : -1);
  if (round_trip) {
    char *back = tokenizer_decode(t, ids, n, 0, &err);
    CHECK_MSG(back && !strcmp(back, text), "round trip of \"%s\" gave \"%s\"", text, back ? back : err.msg);
    free(back);
  }
  free(ids);
}

// ---- LLaMA-3 against the fixtures --------------------------------------------------------------

typedef struct {
  char *text;
  int32_t *ids;
  size_t n;
} fixture;

static fixture *read_fixtures(const char *path, int *count) {
  size_t len;
  pith_err err;
  char *data = pith_read_file(path, &len, &err);
  CHECK_MSG(data != NULL, "%s", err.msg);
  fixture *fx = NULL;
  int n = 0;
  for (char *line = data, *nl; data && *line; line = nl + 1) {
    nl = strchr(line, '\n');
    if (nl) *nl = 0;
    cJSON *o = cJSON_Parse(line), *ids = cJSON_GetObjectItem(o, "ids"), *e;
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(o, "text"));
    CHECK_MSG(o && text && cJSON_IsArray(ids), "bad fixture line %d", n + 1);
    if (o && text && cJSON_IsArray(ids)) {
      fx = realloc(fx, (size_t)(n + 1) * sizeof *fx);
      fx[n].text = strdup(text);
      fx[n].n = (size_t)cJSON_GetArraySize(ids);
      fx[n].ids = malloc((fx[n].n + 1) * sizeof *fx[n].ids);
      size_t k = 0;
      cJSON_ArrayForEach(e, ids) fx[n].ids[k++] = (int32_t)e->valueint;
      n++;
    }
    cJSON_Delete(o);
    if (!nl) break;
  }
  free(data);
  *count = n;
  return fx;
}

typedef struct {
  const tokenizer *t;
  const fixture *fx;
  int n, first, failures;
} worker;

// Encode every fixture (starting at a different one per thread) and count mismatches.
static void *encode_all(void *arg) {
  worker *w = arg;
  for (int r = 0; r < w->n; r++) {
    const fixture *f = &w->fx[(r + w->first) % w->n];
    int32_t *ids = NULL;
    size_t n = 0;
    pith_err err;
    if (tokenizer_encode(w->t, f->text, strlen(f->text), 0, &ids, &n, &err) || !ids_equal(ids, n, f->ids, f->n))
      w->failures++;
    free(ids);
  }
  return NULL;
}

static void test_llama3(const char *tok_path, const char *fixtures_path) {
  pith_err err = {{0}};
  tokenizer *t = tokenizer_load(tok_path, &err);
  CHECK_MSG(t != NULL, "%s", err.msg);
  if (!t) return;
  CHECK(tokenizer_vocab_size(t) == 128256);
  CHECK(tokenizer_bos_id(t) == 128000);
  const int32_t *eos;
  CHECK(tokenizer_eos_ids(t, &eos) >= 1 && eos[0] == 128001);
  CHECK(tokenizer_token_id(t, "<|eot_id|>") == 128009);
  CHECK(tokenizer_is_special(t, 128009) && !tokenizer_is_special(t, 9906));
  CHECK(!strcmp(tokenizer_token_piece(t, 9906), "Hello"));
  CHECK_CONTAINS(tokenizer_source_path(t), "tokenizer.json");

  int n = 0, mismatches = 0;
  fixture *fx = read_fixtures(fixtures_path, &n);
  CHECK(n >= 400);
  for (int i = 0; i < n; i++) {
    int32_t *ids = NULL;
    size_t m = 0;
    CHECK_MSG(tokenizer_encode(t, fx[i].text, strlen(fx[i].text), 0, &ids, &m, &err) == 0, "%s", err.msg);
    if (!ids_equal(ids, m, fx[i].ids, fx[i].n) && mismatches++ == 0) {
      size_t k = 0;
      while (k < m && k < fx[i].n && ids[k] == fx[i].ids[k]) k++;
      fprintf(stderr, "fixture %d differs at id %zu (got %d, want %d): %.200s\n", i + 1, k, k < m ? ids[k] : -1,
              k < fx[i].n ? fx[i].ids[k] : -1, fx[i].text);
    }
    char *back = tokenizer_decode(t, ids, m, 0, &err);
    CHECK_MSG(back && !strcmp(back, fx[i].text), "fixture %d: decode(encode(x)) != x", i + 1);
    free(back);
    free(ids);
  }
  CHECK_MSG(mismatches == 0, "%d of %d fixtures differ", mismatches, n);

  // bos on request; skip_special leaves specials out.
  int32_t *ids;
  size_t m;
  const char *s = "<|begin_of_text|>Hi<|eot_id|>";
  CHECK(tokenizer_encode(t, s, strlen(s), 1, &ids, &m, &err) == 0);
  CHECK(m == 4 && ids[0] == 128000 && ids[1] == 128000 && ids[3] == 128009);
  char *d = tokenizer_decode(t, ids, m, 1, &err);
  CHECK(d && !strcmp(d, "Hi"));
  free(d);
  free(ids);

  // Many threads on one tokenizer.
  enum { N_THREADS = 4 };
  pthread_t th[N_THREADS];
  worker w[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) {
    w[i] = (worker){t, fx, n, i * n / N_THREADS, 0};
    CHECK(pthread_create(&th[i], NULL, encode_all, &w[i]) == 0);
  }
  for (int i = 0; i < N_THREADS; i++) {
    pthread_join(th[i], NULL);
    CHECK_MSG(w[i].failures == 0, "thread %d: %d mismatches", i, w[i].failures);
  }

  // Invalid UTF-8 and NUL bytes do not crash; decode yields valid UTF-8 (U+FFFD).
  const char bad[] = "ok \xff\xfe \xe2\x82 end\0tail";
  CHECK(tokenizer_encode(t, bad, sizeof bad - 1, 0, &ids, &m, &err) == 0);
  d = tokenizer_decode(t, ids, m, 0, &err);
  CHECK(d && strstr(d, "ok ") == d && strstr(d, "\xef\xbf\xbd"));
  free(d);
  free(ids);
  int32_t out_of_range = 999999;
  CHECK(tokenizer_decode(t, &out_of_range, 1, 0, &err) == NULL);
  CHECK_CONTAINS(err.msg, "999999");

  for (int i = 0; i < n; i++) free(fx[i].text), free(fx[i].ids);
  free(fx);
  tokenizer_free(t);
}

// ---- GPT-2 folder and llama2.c tokenizer.bin -----------------------------------------------------

static void test_gpt2(const char *dir) {
  pith_err err = {{0}};
  tokenizer *t = tokenizer_load(dir, &err);
  CHECK_MSG(t != NULL, "%s", err.msg);
  if (!t) return;
  CHECK(tokenizer_vocab_size(t) == 50257);
  CHECK(tokenizer_bos_id(t) == 50256);
  // "Hello" 15496, " world" 995, "<|endoftext|>" 50256 (GPT-2's vocab.json)
  check_encode(t, "Hello world<|endoftext|>", (int32_t[]){15496, 995, 50256}, 3, 1);
  // " " is "Ġ" (220); "'s" is a token of its own (338)
  check_encode(t, "it's  ok", (int32_t[]){270, 338, 220, 12876}, 4, 1);
  check_encode(t, "Grüße, 世界! 👋\n\n\ttabs", NULL, 0, 1);
  const char *const *files;
  CHECK(tokenizer_source_files(t, &files) >= 2 && strstr(files[1], "merges.txt"));
  tokenizer_free(t);
}

static void test_llama2c(const char *llama2_bin, const char *tok512_bin) {
  pith_err err = {{0}};
  tokenizer *t = llama2_bin ? tokenizer_load(llama2_bin, &err) : NULL;
  CHECK_MSG(!llama2_bin || t != NULL, "%s", err.msg);
  if (t) {
    CHECK(tokenizer_vocab_size(t) == 32000 && tokenizer_bos_id(t) == 1);
    const int32_t *eos;
    CHECK(tokenizer_eos_ids(t, &eos) == 1 && eos[0] == 2);
    // "▁Hello" 15043, "▁world" 3186: the ids SentencePiece gives too
    check_encode(t, "Hello world", (int32_t[]){15043, 3186}, 2, 1);
    // "\n" has no piece: byte fallback <0x0A> = 10 + 3
    check_encode(t, "\n", (int32_t[]){29871, 13}, 2, 1);
    check_encode(t, "Grüße, 世界! 👋\n\n\ttabs  and   spaces", NULL, 0, 1);
    int32_t *ids;
    size_t n;
    CHECK(tokenizer_encode(t, "Hi", 2, 1, &ids, &n, &err) == 0 && n >= 2 && ids[0] == 1);
    char *d = tokenizer_decode(t, ids, n, 1, &err);
    CHECK(d && !strcmp(d, "Hi"));
    free(d);
    free(ids);
    tokenizer_free(t);
  }
  t = tok512_bin ? tokenizer_load(tok512_bin, &err) : NULL;
  CHECK_MSG(!tok512_bin || t != NULL, "%s", err.msg);
  if (t) {
    CHECK(tokenizer_vocab_size(t) == 512);
    // " a" is token 261; "\n" falls back to byte 0x0A (id 13) after the dummy " " (410)
    check_encode(t, "a", (int32_t[]){261}, 1, 1);
    check_encode(t, "\n", (int32_t[]){410, 13}, 2, 1);
    check_encode(t, "Once upon a time, there was a little girl named Lily.", NULL, 0, 1);
    tokenizer_free(t);
  }
}

// ---- A small SentencePiece-style tokenizer.json (expected ids from HF tokenizers 0.23) -----------

static char *spm_json(int legacy) {
  size_t cap = 64 * 1024, n = 0;
  char *j = malloc(cap);
  n += (size_t)snprintf(j + n, cap - n,
                        "{\"version\":\"1.0\",\"added_tokens\":["
                        "{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
                        "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
                        "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"normalized\":false}],");
  if (legacy)
    n += (size_t)snprintf(j + n, cap - n,
                          "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
                          "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},"
                          "\"pre_tokenizer\":null,");
  else
    n += (size_t)snprintf(j + n, cap - n,
                          "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\","
                          "\"prepend_scheme\":\"first\",\"split\":false},");
  n += (size_t)snprintf(j + n, cap - n,
                        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},"
                        "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                        "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
                        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
                        "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2");
  for (int b = 0; b < 256; b++) n += (size_t)snprintf(j + n, cap - n, ",\"<0x%02X>\":%d", b, 3 + b);
  snprintf(j + n, cap - n,
           ",\"\xe2\x96\x81\":259,\"a\":260,\"b\":261,\"\xe2\x96\x81" "a\":262,\"ab\":263,\"\xe2\x96\x81" "ab\":264,\"c\":265},"
           "\"merges\":[[\"\xe2\x96\x81\",\"a\"],[\"a\",\"b\"],\"\xe2\x96\x81" "a b\"]}}");
  return j;
}

static void test_spm_json(void) {
  pith_err err = {{0}};
  for (int legacy = 0; legacy < 2; legacy++) {
    char *j = spm_json(legacy);
    const char *path = tmp_path(legacy ? "spm_legacy.json" : "spm.json");
    write_text(path, j, strlen(j));
    free(j);
    tokenizer *t = tokenizer_load(path, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (!t) continue;
    check_encode(t, "ab", (int32_t[]){264}, 1, 1);
    check_encode(t, "ab c", (int32_t[]){264, 259, 265}, 3, 1);
    check_encode(t, "\xc3\xa9", (int32_t[]){259, 198, 172}, 3, 1);  // é: byte fallback
    if (legacy) {  // the normalizer prepends to every piece between special tokens
      check_encode(t, "<s>ab", (int32_t[]){1, 264}, 2, 0);
      check_encode(t, " ab", (int32_t[]){259, 264}, 2, 1);
      check_encode(t, "ab</s>ab  c", (int32_t[]){264, 2, 264, 259, 259, 265}, 6, 0);
    } else {  // Metaspace "first": only at the start of the text
      check_encode(t, "<s>ab", (int32_t[]){1, 263}, 2, 1);
      check_encode(t, " ab", (int32_t[]){264}, 1, 0);
      check_encode(t, "ab</s>ab  c", (int32_t[]){264, 2, 263, 259, 259, 265}, 6, 1);
    }
    check_encode(t, "", NULL, 0, 1);
    tokenizer_free(t);
  }
}

// ---- Specials from tokenizer_config.json and generation_config.json ------------------------------

static void test_configs(void) {
  pith_err err = {{0}};
  mkdir(tmp_path("cfg"), 0755);
  char *j = spm_json(0);
  write_text(tmp_path("cfg/tokenizer.json"), j, strlen(j));
  free(j);
  const char *cfg = "{\"bos_token\":{\"content\":\"<s>\",\"__type\":\"AddedToken\"},\"eos_token\":\"</s>\","
                    "\"pad_token\":\"<unk>\",\"add_bos_token\":true}";
  write_text(tmp_path("cfg/tokenizer_config.json"), cfg, strlen(cfg));
  const char *gen = "{\"bos_token_id\":1,\"eos_token_id\":[2,265]}";
  write_text(tmp_path("cfg/generation_config.json"), gen, strlen(gen));
  tokenizer *t = tokenizer_load(tmp_path("cfg"), &err);
  CHECK_MSG(t != NULL, "%s", err.msg);
  if (!t) return;
  const int32_t *eos;
  CHECK(tokenizer_bos_id(t) == 1 && tokenizer_pad_id(t) == 0 && tokenizer_adds_bos(t));
  CHECK(tokenizer_eos_ids(t, &eos) == 2 && eos[0] == 2 && eos[1] == 265);
  const char *const *files;
  CHECK(tokenizer_source_files(t, &files) == 3);
  tokenizer_free(t);
}

// ---- Errors: one line naming the file -----------------------------------------------------------

static void check_load_error(const char *path, const char *want) {
  pith_err err = {{0}};
  tokenizer *t = tokenizer_load(path, &err);
  CHECK_MSG(t == NULL, "%s loaded", path);
  tokenizer_free(t);
  CHECK_CONTAINS(err.msg, path);
  CHECK_CONTAINS(err.msg, want);
  CHECK_MSG(!strchr(err.msg, '\n'), "not one line: %s", err.msg);
}

static void test_errors(const char *llama3_path) {
  const char *wordlevel = "{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"a\":0}}}";
  write_text(tmp_path("wordlevel.json"), wordlevel, strlen(wordlevel));
  check_load_error(tmp_path("wordlevel.json"), "model type 'WordLevel' is not supported (BPE, WordPiece or Unigram)");

  const char *punct = "{\"pre_tokenizer\":{\"type\":\"Punctuation\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
  write_text(tmp_path("punct.json"), punct, strlen(punct));
  check_load_error(tmp_path("punct.json"), "pre_tokenizer type 'Punctuation' is not supported");

  const char *badmerge = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}";
  write_text(tmp_path("badmerge.json"), badmerge, strlen(badmerge));
  check_load_error(tmp_path("badmerge.json"), "not in the vocabulary");

  const char *badre = "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
  write_text(tmp_path("badre.json"), badre, strlen(badre));
  check_load_error(tmp_path("badre.json"), "regex");

  if (llama3_path) {  // the real file cut short
    size_t len;
    pith_err err;
    char *full = pith_read_file(llama3_path, &len, &err);
    if (full) write_text(tmp_path("truncated.json"), full, len / 3);
    free(full);
    check_load_error(tmp_path("truncated.json"), "truncated");
  }
  write_text(tmp_path("short.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\"", 40);
  check_load_error(tmp_path("short.json"), "invalid JSON");
  write_text(tmp_path("garbage.bin"), "\x01\x00\x00\x00garbage", 11);
  check_load_error(tmp_path("garbage.bin"), "not a tokenizer.json nor a llama2.c tokenizer.bin");
  check_load_error(tmp_path("missing.json"), "cannot open");
  mkdir(tmp_path("empty"), 0755);
  check_load_error(tmp_path("empty"), "no tokenizer.json");
}

static void cleanup(void) {
  static const char *names[] = {"spm.json", "spm_legacy.json", "cfg/tokenizer.json", "cfg/tokenizer_config.json",
                                "cfg/generation_config.json", "wordlevel.json", "punct.json", "badmerge.json",
                                "badre.json", "truncated.json", "short.json", "garbage.bin"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i]));
  rmdir(tmp_path("cfg"));
  rmdir(tmp_path("empty"));
  rmdir(tmp_dir);
}

static char *dup_asset(const char *rel) {
  const char *p = check_asset(rel);
  return p ? strdup(p) : NULL;
}

int main(void) {
  CHECK(mkdtemp(tmp_dir) != NULL);
  test_spm_json();
  test_configs();

  char *llama3 = dup_asset("tokenizers/llama3/tokenizer.json");
  char *fixtures = dup_asset("../fixtures/llama3_tokenizer_cases.jsonl");
  char *gpt2 = dup_asset("tokenizers/gpt2/merges.txt");
  char *llama2 = dup_asset("tokenizers/llama2/tokenizer.bin");
  char *tok512 = dup_asset("models/tok512.bin");
  test_errors(llama3);
  cleanup();
  if (check_failures_) return check_done("test_tokenizer");
  CHECK_SKIP_IF(!llama3 || !fixtures || !gpt2 || !llama2 || !tok512,
                "test assets missing (see above); the synthetic tokenizer tests passed %d of %d checks",
                check_count_ - check_failures_, check_count_);
  test_llama3(llama3, fixtures);
  *strrchr(gpt2, '/') = 0;
  test_gpt2(gpt2);
  test_llama2c(llama2, tok512);
  free(llama3), free(fixtures), free(gpt2), free(llama2), free(tok512);
  return check_done("test_tokenizer");
}
