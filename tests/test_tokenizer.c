// tokenizer: ids of the real LLaMA-3 tokenizer against fixtures from an independent
// implementation, GPT-2 and llama2.c ids checked by hand, a small SentencePiece-style
// tokenizer.json (ids checked with HF tokenizers), small BERT (WordPiece) and XLM-R-like
// (Unigram, a Precompiled charsmap built here) tokenizers with ids that follow from their
// vocabularies, encoding from many threads, round trips, and the errors for bad files.
#define _GNU_SOURCE  // strdup, mkdtemp
#include <cJSON.h>
#include <pthread.h>
#include <sys/stat.h>

#include "check.h"
#include "strbuf.h"
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
  const int32_t *pre, *post;
  int n_pre, n_post;  // the post-processor's template: <|begin_of_text|> $A
  CHECK(tokenizer_special_around(t, &pre, &n_pre, &post, &n_post) == 1 && n_pre == 1 && pre[0] == 128000 && n_post == 0);
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
    const int32_t *pre, *post;
    int n_pre, n_post;
    CHECK(tokenizer_special_around(t, &pre, &n_pre, &post, &n_post) == 1 && n_pre == 1 && pre[0] == 1 && n_post == 0);
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

// ---- WordPiece (BERT's layout; the ids follow from the vocabulary, and HF tokenizers agrees) --------

// A BERT tokenizer.json: vocab ids 0..20 as listed; unk: include [UNK]; lowercase (with accents
// stripped, as strip_accents null does) or cased.
static char *bert_json(int lowercase, int max_chars, int unk) {
  static const char *vocab[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "un", "##aff",
                                "##able", ",", "!", "'", "cafe", "\xe4\xb8\xad", "play", "##ing", "a", "##a", "."};
  strbuf j = {0};
  strbuf_printf(&j, "{\"added_tokens\":[");
  for (int i = 0; i < 5; i++)
    strbuf_printf(&j, "%s{\"id\":%d,\"content\":\"%s\",\"special\":true,\"normalized\":false}", i ? "," : "", i, vocab[i]);
  strbuf_printf(&j, "],\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
                    "\"strip_accents\":null,\"lowercase\":%s},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
                    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},"
                    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}}],"
                    "\"special_tokens\":{\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[2],\"tokens\":[\"[CLS]\"]},"
                    "\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[3],\"tokens\":[\"[SEP]\"]}}},"
                    "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
                    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
                    "\"max_input_chars_per_word\":%d,\"vocab\":{",
                lowercase ? "true" : "false", max_chars);
  for (int i = 0, first = 1; i < (int)(sizeof vocab / sizeof vocab[0]); i++) {
    if (!unk && i == 1) continue;
    strbuf_printf(&j, "%s\"%s\":%d", first ? "" : ",", vocab[i], i);
    first = 0;
  }
  strbuf_printf(&j, "}}}");
  return strbuf_take(&j, NULL);
}

static tokenizer *load_json_text(const char *name, char *json) {
  pith_err err = {{0}};
  const char *path = tmp_path(name);
  write_text(path, json, strlen(json));
  free(json);
  tokenizer *t = tokenizer_load(path, &err);
  CHECK_MSG(t != NULL, "%s", err.msg);
  return t;
}

// Encode with the post-processor's special tokens (add_bos) and compare.
static void check_encode_special(const tokenizer *t, const char *text, const int32_t *want, size_t n_want) {
  pith_err err = {{0}};
  int32_t *ids = NULL;
  size_t n = 0;
  CHECK_MSG(tokenizer_encode(t, text, strlen(text), 1, &ids, &n, &err) == 0, "%s", err.msg);
  CHECK_MSG(ids_equal(ids, n, want, n_want), "ids of \"%s\" with special tokens differ (got %zu ids)", text, n);
  free(ids);
}

static void check_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip, const char *want) {
  pith_err err = {{0}};
  char *d = tokenizer_decode(t, ids, n, skip, &err);
  CHECK_MSG(d && !strcmp(d, want), "decode gave \"%s\", want \"%s\"", d ? d : err.msg, want);
  free(d);
}

static void test_wordpiece(void) {
  tokenizer *t = load_json_text("bert.json", bert_json(1, 100, 1));
  if (t) {
    check_encode(t, "Hello, World!", (int32_t[]){5, 11, 6, 12}, 4, 0);
    check_encode(t, "unaffable", (int32_t[]){8, 9, 10}, 3, 0);               // greedy longest match
    check_encode(t, "playing worlds", (int32_t[]){16, 17, 6, 7}, 4, 0);
    check_encode(t, "xyz", (int32_t[]){1}, 1, 0);                            // no piece fits: the word is unk
    check_encode(t, "playx", (int32_t[]){1}, 1, 0);                          // a rest that fits nothing: all unk
    check_encode(t, "aaa", (int32_t[]){18, 19, 19}, 3, 0);
    check_encode(t, "a'a", (int32_t[]){18, 13, 18}, 3, 0);                   // punctuation alone
    check_encode(t, "Caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87", (int32_t[]){14, 15, 1}, 3, 0);  // Café 中文: accents, CJK
    check_encode(t, "\xc3\x80" "A", (int32_t[]){18, 19}, 2, 0);             // ÀA -> aa
    check_encode(t, "hel\xe2\x80\x8blo\x01", (int32_t[]){5}, 1, 0);          // U+200B and U+0001 removed
    check_encode(t, "hello\xc2\xa0world\tworld", (int32_t[]){5, 6, 6}, 3, 0);  // NBSP and tab are spaces
    check_encode(t, "[MASK] hello", (int32_t[]){4, 5}, 2, 0);                // special tokens in the text
    check_encode(t, "", NULL, 0, 0);
    check_encode_special(t, "hello", (int32_t[]){2, 5, 3}, 3);              // [CLS] A [SEP]
    check_encode_special(t, "", (int32_t[]){2, 3}, 2);
    CHECK(tokenizer_bos_id(t) == 2 && tokenizer_adds_bos(t));
    const int32_t *pre, *post;
    int n_pre, n_post;
    CHECK(tokenizer_special_around(t, &pre, &n_pre, &post, &n_post) == 2 && n_pre == 1 && pre[0] == 2 && n_post == 1 &&
          post[0] == 3);
    check_decode(t, (int32_t[]){2, 5, 11, 6, 12, 3}, 6, 0, "[CLS] hello, world! [SEP]");
    check_decode(t, (int32_t[]){2, 5, 11, 6, 12, 3}, 6, 1, "hello, world!");
    check_decode(t, (int32_t[]){16, 17, 6, 7, 20, 18, 13, 18}, 8, 0, "playing worlds. a ' a");
    tokenizer_free(t);
  }
  t = load_json_text("bert_cased.json", bert_json(0, 100, 1));
  if (t) {
    check_encode(t, "Hello hello", (int32_t[]){1, 5}, 2, 0);  // no lowercasing
    check_encode(t, "Caf\xc3\xa9", (int32_t[]){1}, 1, 0);     // nor accent stripping
    tokenizer_free(t);
  }
  t = load_json_text("bert_short.json", bert_json(1, 8, 1));
  if (t) {
    check_encode(t, "unaffable hello", (int32_t[]){1, 5}, 2, 0);  // 9 characters > max_input_chars_per_word
    tokenizer_free(t);
  }
  t = load_json_text("bert_long.json", bert_json(1, 1000000, 1));
  if (t) {  // a 200k-character word: pieces are tried from the longest that can exist, not from the end
    size_t len = 200000;
    char *word = malloc(len);
    memset(word, 'a', len);
    pith_err err = {{0}};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_MSG(tokenizer_encode(t, word, len, 0, &ids, &n, &err) == 0, "%s", err.msg);
    int ok = n == len && ids[0] == 18;
    for (size_t i = 1; ok && i < n; i++) ok = ids[i] == 19;
    CHECK_MSG(ok, "a ##a ##a ...: got %zu ids", n);
    free(ids);
    free(word);
    tokenizer_free(t);
  }
  t = load_json_text("bert_nounk.json", bert_json(1, 100, 0));
  if (t) {  // without an unk token, only a word that needs it fails
    check_encode(t, "hello", (int32_t[]){5}, 1, 0);
    pith_err err = {{0}};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(tokenizer_encode(t, "xyz", 3, 0, &ids, &n, &err) == -1);
    CHECK_CONTAINS(err.msg, "unk token '[UNK]'");
    free(ids);
    tokenizer_free(t);
  }
}

// ---- Unigram and the Precompiled normalizer ----------------------------------------------------

static void b64_encode(strbuf *out, const uint8_t *p, size_t n) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    char q[4] = {a[v >> 18], a[(v >> 12) & 63], i + 1 < n ? a[(v >> 6) & 63] : '=', i + 2 < n ? a[v & 63] : '='};
    strbuf_add(out, q, 4);
  }
}

// sentencepiece's precompiled_charsmap for keys -> vals, base64, into out: a Darts double array in
// which the children of trie node k sit in a 256-unit block of their own at 256 (k + 1), label 0
// of a block holding the node's value (the offset of its replacement).
static void make_charsmap(strbuf *out, const char *const *keys, const char *const *vals, int n) {
  enum { MAXN = 64 };
  static int child[MAXN][256];
  int leaf[MAXN], nodes = 1;
  uint32_t pos[MAXN], voff[16];
  memset(child, 0, sizeof child);
  for (int i = 0; i < MAXN; i++) leaf[i] = -1;
  strbuf norm = {0};
  for (int i = 0; i < n; i++) {
    int node = 0;
    for (const uint8_t *c = (const uint8_t *)keys[i]; *c; c++) {
      if (!child[node][*c]) child[node][*c] = nodes++;
      node = child[node][*c];
    }
    leaf[node] = i;
    voff[i] = (uint32_t)norm.n;
    strbuf_add(&norm, vals[i], strlen(vals[i]) + 1);
  }
  size_t n_units = 256 * ((size_t)nodes + 1);
  uint32_t *u = calloc(n_units, sizeof *u);
  pos[0] = 0;
  for (int k = 0; k < nodes; k++) {
    uint32_t block = 256u * (uint32_t)(k + 1);
    u[pos[k]] |= (pos[k] ^ block) << 10;  // offset: from the node to its block
    if (leaf[k] >= 0) u[pos[k]] |= 1u << 8, u[block] = 1u << 31 | voff[leaf[k]];
    for (int c = 1; c < 256; c++)
      if (child[k][c]) pos[child[k][c]] = block ^ (uint32_t)c, u[block ^ (uint32_t)c] = (uint32_t)c;
  }
  strbuf blob = {0};
  uint32_t size = (uint32_t)(n_units * 4);
  uint8_t le[4];
  for (int b = 0; b < 4; b++) le[b] = (uint8_t)(size >> (8 * b));
  strbuf_add(&blob, le, 4);
  for (size_t i = 0; i < n_units; i++) {
    for (int b = 0; b < 4; b++) le[b] = (uint8_t)(u[i] >> (8 * b));
    strbuf_add(&blob, le, 4);
  }
  strbuf_add(&blob, norm.p, norm.n);
  b64_encode(out, (const uint8_t *)blob.p, blob.n);
  free(u);
  free(blob.p);
  free(norm.p);
}

// An XLM-R-like tokenizer.json: normalizer (a JSON value), Metaspace, <s> A </s>, Metaspace decoder.
static char *unigram_json(const char *normalizer, int byte_fallback, const char *unk_id) {
  static const char *pieces[] = {"<s>", "<pad>", "</s>", "<unk>", "\xe2\x96\x81", "\xe2\x96\x81" "a", "b",
                                 "\xe2\x96\x81" "ab", "a", "c", "A", "f", "i", "\xc3\xa9", "<0x64>", "\xe2\x96\x81" "fi"};
  static const double scores[] = {0, 0, 0, 0, -2, -1.5, -2, -3, -3, -2.5, -3, -3, -3, -3, -5, -2};
  strbuf j = {0};
  strbuf_printf(&j, "{\"added_tokens\":[");
  for (int i = 0; i < 4; i++)
    strbuf_printf(&j, "%s{\"id\":%d,\"content\":\"%s\",\"special\":true,\"normalized\":false}", i ? "," : "", i, pieces[i]);
  strbuf_printf(&j, "],\"normalizer\":%s,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\","
                    "\"prepend_scheme\":\"always\",\"split\":true},\"post_processor\":{\"type\":\"TemplateProcessing\","
                    "\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
                    "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"special_tokens\":{"
                    "\"<s>\":{\"id\":\"<s>\",\"ids\":[0],\"tokens\":[\"<s>\"]},\"</s>\":{\"id\":\"</s>\",\"ids\":[2],\"tokens\":[\"</s>\"]}}},"
                    "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true},"
                    "\"model\":{\"type\":\"Unigram\",\"unk_id\":%s,\"byte_fallback\":%s,\"vocab\":[",
                normalizer, unk_id, byte_fallback ? "true" : "false");
  for (int i = 0; i < (int)(sizeof pieces / sizeof pieces[0]); i++)
    strbuf_printf(&j, "%s[\"%s\",%g]", i ? "," : "", pieces[i], scores[i]);
  strbuf_printf(&j, "]}}");
  return strbuf_take(&j, NULL);
}

static void test_unigram(void) {
  tokenizer *t = load_json_text("unigram.json", unigram_json("null", 0, "3"));
  if (t) {
    check_encode(t, "ab", (int32_t[]){7}, 1, 1);              // ▁ab (-3) beats ▁a b (-3.5) and ▁ a b (-7)
    check_encode(t, "ab c", (int32_t[]){7, 4, 9}, 3, 1);      // no ▁c: ▁ c
    check_encode(t, "a", (int32_t[]){5}, 1, 1);
    check_encode(t, "dd", (int32_t[]){4, 3}, 2, 0);           // unknown characters in a row: one unk
    check_encode(t, "dbd", (int32_t[]){4, 3, 6, 3}, 4, 0);
    check_encode(t, "<s>ab</s>", (int32_t[]){0, 7, 2}, 3, 0);
    check_encode(t, "", NULL, 0, 1);
    check_encode_special(t, "ab", (int32_t[]){0, 7, 2}, 3);  // <s> A </s>
    CHECK(tokenizer_bos_id(t) == 0 && tokenizer_adds_bos(t));
    const int32_t *pre, *post;
    int n_pre, n_post;
    CHECK(tokenizer_special_around(t, &pre, &n_pre, &post, &n_post) == 2 && pre[0] == 0 && post[0] == 2);
    check_decode(t, (int32_t[]){0, 7, 4, 9, 2}, 5, 0, "<s> ab c</s>");
    check_decode(t, (int32_t[]){0, 7, 4, 9, 2}, 5, 1, "ab c");
    tokenizer_free(t);
  }
  t = load_json_text("unigram_bytes.json", unigram_json("null", 1, "3"));
  if (t) {
    check_encode(t, "dd", (int32_t[]){4, 14, 14}, 3, 0);  // byte_fallback: <0x64> <0x64>
    check_encode(t, "dx", (int32_t[]){4, 3}, 2, 0);       // x has no byte piece: the run is unk
    tokenizer_free(t);
  }
  t = load_json_text("unigram_nounk.json", unigram_json("null", 0, "null"));
  if (t) {
    check_encode(t, "ab", (int32_t[]){7}, 1, 0);
    pith_err err = {{0}};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(tokenizer_encode(t, "xd", 2, 0, &ids, &n, &err) == -1);
    CHECK_CONTAINS(err.msg, "no unk_id");
    free(ids);
    tokenizer_free(t);
  }

  // The Precompiled normalizer, as HF applies it: per grapheme cluster under 6 bytes, the
  // replacement of the shortest key that is a prefix of it; otherwise per character.
  static const char *keys[] = {"\xef\xbc\xa1", "\xef\xac\x81", "e\xcc\x81", "\r", "\x01"};  // Ａ ﬁ é \r \x01
  static const char *vals[] = {"A", "fi", "\xc3\xa9", " ", ""};
  strbuf norm = {0};
  strbuf_printf(&norm, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"");
  make_charsmap(&norm, keys, vals, 5);
  strbuf_printf(&norm, "\"},{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\" \"}]}");
  t = load_json_text("unigram_charsmap.json", unigram_json(norm.p, 0, "3"));
  free(norm.p);
  if (t) {
    check_encode(t, "\xef\xbc\xa1", (int32_t[]){4, 10}, 2, 0);                 // Ａ -> A
    check_encode(t, "\xef\xac\x81", (int32_t[]){15}, 1, 0);                    // ﬁ -> fi
    check_encode(t, "e\xcc\x81", (int32_t[]){4, 13}, 2, 0);                    // e + U+0301 -> é
    check_encode(t, "\xef\xbc\xa1\xcc\x81", (int32_t[]){4, 10}, 2, 0);         // Ａ + U+0301 (5 bytes) -> A
    check_encode(t, "\xef\xbc\xa1\xcc\x81\xcc\x81", (int32_t[]){4, 10, 3}, 3, 0);  // 7 bytes: per character
    check_encode(t, "a\r\nb", (int32_t[]){5, 4, 6}, 3, 0);                     // CR LF is one cluster -> " "
    check_encode(t, "a\x01" "b", (int32_t[]){7}, 1, 0);                        // removed
    check_encode(t, "a  \r  b", (int32_t[]){5, 4, 6}, 3, 0);                   // runs of spaces -> one
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

  // Ids size the tables: an absurd one is a broken file, not 4 GB of memory (found by fuzz_tokenizer_json).
  const char *huge = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":20000000},\"merges\":[]}}";
  write_text(tmp_path("huge.json"), huge, strlen(huge));
  check_load_error(tmp_path("huge.json"), "vocab ids must be integers from 0 to 16777216");
  const char *huge_added = "{\"added_tokens\":[{\"id\":900000000,\"content\":\"<x>\"}],"
                           "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
  write_text(tmp_path("huge_added.json"), huge_added, strlen(huge_added));
  check_load_error(tmp_path("huge_added.json"), "added token '<x>' has id 900000000 (ids go from 0 to 16777216)");

  const char *punct = "{\"pre_tokenizer\":{\"type\":\"Punctuation\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
  write_text(tmp_path("punct.json"), punct, strlen(punct));
  check_load_error(tmp_path("punct.json"), "pre_tokenizer type 'Punctuation' is not supported");

  const char *badmap = "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"!!!\"},"
                       "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"a\",0.0]]}}";
  write_text(tmp_path("badmap.json"), badmap, strlen(badmap));
  check_load_error(tmp_path("badmap.json"), "precompiled_charsmap is not base64");
  const char *shortmap = "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAAAAA==\"},"
                         "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"a\",0.0]]}}";
  write_text(tmp_path("shortmap.json"), shortmap, strlen(shortmap));
  check_load_error(tmp_path("shortmap.json"), "not a sentencepiece charsmap");
  const char *badvocab = "{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"a\",0.0],[\"b\"]]}}";
  write_text(tmp_path("badvocab.json"), badvocab, strlen(badvocab));
  check_load_error(tmp_path("badvocab.json"), "Unigram vocab entry 1 is not [piece, score]");
  const char *badunk = "{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",0.0]]}}";
  write_text(tmp_path("badunk.json"), badunk, strlen(badunk));
  check_load_error(tmp_path("badunk.json"), "unk_id 5 is not in the vocabulary");
  const char *badtpl = "{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\"}},"
                       "{\"Sequence\":{\"id\":\"A\"}}]},\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}";
  write_text(tmp_path("badtpl.json"), badtpl, strlen(badtpl));
  check_load_error(tmp_path("badtpl.json"), "special token '[CLS]' is not in the vocabulary");

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
                                "badre.json", "badmap.json", "shortmap.json", "badvocab.json", "badunk.json", "badtpl.json",
                                "bert.json", "bert_cased.json", "bert_short.json", "bert_long.json", "bert_nounk.json", "unigram.json",
                                "unigram_bytes.json", "unigram_nounk.json", "unigram_charsmap.json", "truncated.json", "short.json", "garbage.bin"};
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
  test_wordpiece();
  test_unigram();

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
