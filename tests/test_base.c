// base: atomic file writes and whole-file reads, and their errors; path helpers; the UTF-8 codec;
// strbuf; the arena; the JSON reader. Links pith_base only.
#include "arena.h"
#include "base.h"
#include "check.h"
#include "json.h"
#include "strbuf.h"
#include "utf8.h"

static void test_utf8(void) {
  uint32_t cp = 0;
  // Well-formed sequences of each length, at the edges of their ranges.
  CHECK(utf8_decode("A", 1, &cp) == 1 && cp == 'A');
  CHECK(utf8_decode("\xC2\x80", 2, &cp) == 2 && cp == 0x80);
  CHECK(utf8_decode("\xDF\xBF", 2, &cp) == 2 && cp == 0x7FF);
  CHECK(utf8_decode("\xE0\xA0\x80", 3, &cp) == 3 && cp == 0x800);
  CHECK(utf8_decode("\xED\x9F\xBF", 3, &cp) == 3 && cp == 0xD7FF);
  CHECK(utf8_decode("\xEE\x80\x80", 3, &cp) == 3 && cp == 0xE000);
  CHECK(utf8_decode("\xF0\x90\x80\x80", 4, &cp) == 4 && cp == 0x10000);
  CHECK(utf8_decode("\xF4\x8F\xBF\xBF", 4, &cp) == 4 && cp == 0x10FFFF);
  // Ill-formed: stray continuation, overlongs, surrogates, past U+10FFFF, bad lead bytes, truncation.
  cp = 7;
  CHECK(utf8_decode("\x80", 1, &cp) == 0 && cp == 7);
  CHECK(utf8_decode("\xC0\xAF", 2, &cp) == 0);        // overlong '/'
  CHECK(utf8_decode("\xC1\xBF", 2, &cp) == 0);
  CHECK(utf8_decode("\xE0\x9F\xBF", 3, &cp) == 0);    // overlong U+07FF
  CHECK(utf8_decode("\xF0\x8F\xBF\xBF", 4, &cp) == 0);  // overlong U+FFFF
  CHECK(utf8_decode("\xED\xA0\x80", 3, &cp) == 0);    // U+D800
  CHECK(utf8_decode("\xED\xBF\xBF", 3, &cp) == 0);    // U+DFFF
  CHECK(utf8_decode("\xF4\x90\x80\x80", 4, &cp) == 0);  // U+110000
  CHECK(utf8_decode("\xF5\x80\x80\x80", 4, &cp) == 0);
  CHECK(utf8_decode("\xFF", 1, &cp) == 0);
  CHECK(utf8_decode("\xE2\x82", 2, &cp) == 0);         // truncated
  CHECK(utf8_decode("\xE2\x82\xAC", 2, &cp) == 0);    // n cuts it short
  CHECK(utf8_decode("\xE2\x28\xAC", 3, &cp) == 0);    // bad continuation
  // Maximal ill-formed subparts (one U+FFFD each).
  CHECK(utf8_invalid_len("\x80", 1) == 1);
  CHECK(utf8_invalid_len("\xE2\x82", 2) == 2);
  CHECK(utf8_invalid_len("\xE2\x82x", 3) == 2);
  CHECK(utf8_invalid_len("\xF0\x90\x80", 3) == 3);
  CHECK(utf8_invalid_len("\xED\xA0\x80", 3) == 1);    // a surrogate's second byte is not a continuation of ED
  CHECK(utf8_char_len("\xE2\x82\xAC", 3) == 3 && utf8_char_len("\xE2\x82", 2) == 1 && utf8_char_len("a", 1) == 1);
  // Round trip over every scalar value.
  int bad_rt = 0;
  for (uint32_t c = 0; c <= 0x10FFFF; c++) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    char buf[4];
    size_t k = utf8_encode(c, buf);
    uint32_t back = 0;
    if (k != (c < 0x80 ? 1u : c < 0x800 ? 2u : c < 0x10000 ? 3u : 4u) || utf8_decode(buf, k, &back) != (int)k || back != c)
      bad_rt++;
  }
  CHECK_MSG(bad_rt == 0, "%d code points do not round-trip", bad_rt);
  // Buffers: first invalid offset, counts, stepping back, offsets of code points.
  const char *s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a é € 😀 z: 11 bytes, 5 code points
  CHECK(utf8_invalid_at(s, 11) == -1 && utf8_valid(s, 11));
  CHECK(utf8_invalid_at("ab\xC3", 3) == 2 && !utf8_valid("ab\xC3", 3));
  CHECK(utf8_invalid_at("ab\xED\xA0\x80" "c", 6) == 2);
  CHECK(utf8_invalid_at("", 0) == -1);
  CHECK(utf8_count(s, 11) == 5 && utf8_count("", 0) == 0);
  CHECK(utf8_prev(s, 11) == 10 && utf8_prev(s, 10) == 6 && utf8_prev(s, 6) == 3 && utf8_prev(s, 3) == 1 &&
        utf8_prev(s, 1) == 0);
  CHECK(utf8_prev("\x80\x80\x80\x80\x80", 5) == 1);  // at most 3 continuation bytes back
  CHECK(utf8_offset(s, 11, 0) == 0 && utf8_offset(s, 11, 2) == 3 && utf8_offset(s, 11, 4) == 10);
  CHECK(utf8_offset(s, 11, 5) == 11 && utf8_offset(s, 11, 6) == 12);
}

static void test_strbuf(void) {
  strbuf b = STRBUF_INIT;
  CHECK(strbuf_add(&b, "", 0) == 0 && b.p && b.p[0] == 0 && b.n == 0);
  for (int i = 0; i < 1000; i++) CHECK(strbuf_addc(&b, (char)('a' + i % 26)) == 0);
  CHECK(b.n == 1000 && b.cap > 1000 && b.p[1000] == 0 && b.p[26] == 'a' && b.p[999] == 'a' + 999 % 26);
  strbuf_clear(&b);
  CHECK(b.n == 0 && b.p[0] == 0);
  CHECK(strbuf_adds(&b, "x=") == 0 && strbuf_printf(&b, "%d/%s", 42, "y") == 0 && !strcmp(b.p, "x=42/y"));
  char big[3000];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK(strbuf_printf(&b, "[%s]", big) == 0 && b.n == 6 + 2 + 2999 && b.p[b.n - 1] == ']' && b.p[7] == 'q');
  strbuf_clear(&b);
  CHECK(strbuf_add_json(&b, "a\"b\\c\n\t\r\x01\x1f/\xC3\xA9", 13) == 0);
  CHECK_MSG(!strcmp(b.p, "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f/\xC3\xA9\""), "got %s", b.p);
  strbuf_clear(&b);
  CHECK(strbuf_add_json(&b, "a\0b", 3) == 0 && !strcmp(b.p, "\"a\\u0000b\""));
  size_t len = 0;
  char *own = strbuf_take(&b, &len);
  CHECK(own && len == strlen(own) && !strcmp(own, "\"a\\u0000b\"") && b.p == NULL && b.n == 0);
  free(own);
  own = strbuf_take(&b, &len);  // nothing appended: an empty string
  CHECK(own && len == 0 && own[0] == 0);
  free(own);
  b.oom = 1;  // a failed growth is sticky
  CHECK(strbuf_adds(&b, "x") == -1 && !strbuf_ok(&b) && strbuf_take(&b, &len) == NULL && len == 0);
  strbuf_free(&b);
}

static void test_paths(void) {
  char out[64];
  CHECK(!strcmp(pith_base_name("a/b/c.txt"), "c.txt") && !strcmp(pith_base_name("c.txt"), "c.txt"));
  CHECK(!strcmp(pith_base_name("/x"), "x") && !strcmp(pith_base_name("dir/"), ""));
  CHECK(!strcmp(pith_parent_dir("a/b/c.txt", out, sizeof out), "a/b"));
  CHECK(!strcmp(pith_parent_dir("c.txt", out, sizeof out), "."));
  CHECK(!strcmp(pith_parent_dir("/c.txt", out, sizeof out), "/"));
  CHECK(!strcmp(pith_parent_dir("/a/c.txt", out, 3), "/a"));  // cut to fit
  CHECK(pith_path_join(out, sizeof out, "runs/x", "config.yaml") == 0 && !strcmp(out, "runs/x/config.yaml"));
  CHECK(pith_path_join(out, 8, "runs/x", "config.yaml") == -1);
}

static const json_value *parse(json_parser *P, arena *a, const char *s) { return json_parse(P, a, s, strlen(s)); }

static void test_json(void) {
  arena a = {0};
  json_parser P;
  const json_value *v = parse(&P, &a, " {\"a\": [1, -2.5e3, \"x\\u00e9\\ud83d\\ude00\", true, null], \"a\": 7, \"b\": {}} ");
  CHECK(v && v->type == JSON_OBJ && v->n == 3);
  const json_value *m = json_get(v, "a");  // the last one wins
  CHECK(m && m->type == JSON_NUM && m->is_int && m->i == 7);
  const json_value *arr = v ? v->child : NULL;
  CHECK(arr && arr->type == JSON_ARR && arr->n == 5 && arr->off == 7);
  const json_value *e = arr ? arr->child : NULL;
  CHECK(e && e->type == JSON_NUM && e->is_int && e->i == 1);
  e = e ? e->next : NULL;
  CHECK(e && e->type == JSON_NUM && !e->is_int && e->len == 6 && !memcmp(e->s, "-2.5e3", 6));
  e = e ? e->next : NULL;
  CHECK(e && e->type == JSON_STR && e->len == 7 && !memcmp(e->s, "x\xC3\xA9\xF0\x9F\x98\x80", 7));
  e = e ? e->next : NULL;
  CHECK(e && e->type == JSON_BOOL && e->i == 1);
  e = e ? e->next : NULL;
  CHECK(e && e->type == JSON_NULL && e->next == NULL);
  CHECK(json_get(v, "b") && json_get(v, "b")->type == JSON_OBJ && json_get(v, "b")->n == 0);
  CHECK(json_get(v, "zz") == NULL && json_get(arr, "a") == NULL && json_get(NULL, "a") == NULL);
  CHECK(!strcmp(json_type_name(arr), "an array") && !strcmp(json_type_name(NULL), "missing"));
  v = parse(&P, &a, "\"a\\u0000b\"");
  CHECK(v && v->type == JSON_STR && v->len == 3 && v->s[1] == 0);
  v = parse(&P, &a, "-9223372036854775807");
  CHECK(v && v->is_int && v->i == -INT64_C(9223372036854775807));
  v = parse(&P, &a, "99999999999999999999");
  CHECK(v && v->type == JSON_NUM && !v->is_int);
  // Errors: why and where.
  struct { const char *text, *why; size_t off; } bad[] = {
    {"", "value is missing", 0},
    {"[1, 2", "unexpected end of input in an array", 5},
    {"{\"a\" 1}", "expected ':'", 5},
    {"{1: 2}", "expected a string key", 1},
    {"[1 2]", "expected ',' or ']'", 3},
    {"\"abc", "unterminated string", 0},
    {"\"a\\qb\"", "bad escape '\\q'", 2},
    {"\"\\u12\"", "bad \\u escape", 1},
    {"\"\\ud800x\"", "lone surrogate \\uD800", 1},
    {"\"\\udc00\"", "lone surrogate \\uDC00", 1},
    {"\"a\tb\"", "raw control character U+0009", 2},
    {"\"\xC3\x28\"", "invalid UTF-8 (byte 0xC3)", 1},
    {"\"\xED\xA0\x80\"", "invalid UTF-8 (byte 0xED)", 1},
    {"01", "unexpected characters after the JSON value", 1},
    {"1.", "digits must follow '.'", 0},
    {"1e+", "digits must follow the exponent", 0},
    {"-", "bad number", 0},
    {"tru", "unexpected character 't'", 0},
    {"[1] x", "unexpected characters after", 4},
    {"\x01", "unexpected byte 0x01", 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    v = parse(&P, &a, bad[i].text);
    CHECK_MSG(v == NULL && strstr(P.why, bad[i].why) && P.err_off == bad[i].off, "case %zu: %s: got '%s' at %zu", i,
              bad[i].text, P.why, P.err_off);
  }
  char deep[256];
  memset(deep, '[', 101);
  deep[101] = 0;
  v = parse(&P, &a, deep);
  CHECK(v == NULL && strstr(P.why, "nesting deeper than 100") && P.err_off == 100);
  memset(deep, '[', 100);
  memset(deep + 100, ']', 100);
  deep[200] = 0;
  CHECK(parse(&P, &a, deep) != NULL);
  arena_free(&a);
  CHECK(a.head == NULL && a.oom == 0);
}

static void test_arena(void) {
  arena a = {0};
  char *p = arena_alloc(&a, 3), *q = arena_alloc(&a, 1);
  CHECK(p && q && ((uintptr_t)p % 16) == 0 && ((uintptr_t)q % 16) == 0 && q - p == 16);
  char *big = arena_alloc(&a, 200 << 10);  // bigger than a block: it gets its own
  char *r = arena_alloc(&a, 8);
  CHECK(big && r && r - q == 16);  // the current block keeps its room
  memset(big, 1, 200 << 10);
  CHECK(!strcmp(arena_strndup(&a, "hello", 4), "hell"));
  CHECK(!strcmp(arena_printf(&a, "%s-%d", "x", 5), "x-5"));
  arena_free(&a);
  CHECK(a.head == NULL);
}

int main(void) {
  test_utf8();
  test_strbuf();
  test_paths();
  test_json();
  test_arena();

  pith_err err = {{0}};
  char dir[] = "/tmp/pith_test_base_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/f.bin", dir);

  CHECK(pith_write_file_atomic(path, "hello", 5, &err) == 0);
  size_t len = 0;
  char *got = pith_read_file(path, &len, &err);
  CHECK(got && len == 5 && memcmp(got, "hello", 5) == 0 && got[5] == 0);
  free(got);

  // Overwrite: the new content replaces the old one whole.
  CHECK(pith_write_file_atomic(path, "bye", 3, &err) == 0);
  got = pith_read_file(path, &len, &err);
  CHECK(got && len == 3 && !strcmp(got, "bye"));
  free(got);

  // Errors name the file.
  char missing[300];
  snprintf(missing, sizeof missing, "%s/nope/f.bin", dir);
  CHECK(pith_write_file_atomic(missing, "x", 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "nope/f.bin");
  CHECK(pith_read_file(missing, &len, &err) == NULL);
  CHECK_CONTAINS(err.msg, "cannot open");

  // Folders: mkdir -p, fsync, is-a-folder / is-a-file, rm -r.
  char deep[320], file[360];
  snprintf(deep, sizeof deep, "%s/a/b/c", dir);
  CHECK(pith_mkdirs(deep, &err) == 0);
  CHECK(pith_mkdirs(deep, &err) == 0);  // already there: fine
  CHECK(pith_fsync_dir(deep, &err) == 0);
  snprintf(file, sizeof file, "%s/leaf.txt", deep);
  CHECK(pith_write_file_atomic(file, "x", 1, &err) == 0);
  CHECK(pith_is_dir(deep) && !pith_is_file(deep));
  CHECK(pith_is_file(file) && !pith_is_dir(file));
  CHECK(!pith_is_dir(missing) && !pith_is_file(missing));
  snprintf(file, sizeof file, "%s/f.bin/sub", dir);  // a file in the way
  CHECK(pith_mkdirs(file, &err) == -1);
  CHECK_CONTAINS(err.msg, "f.bin/sub");
  snprintf(deep, sizeof deep, "%s/a", dir);
  CHECK(pith_remove_tree(deep) == 0);
  CHECK(access(deep, F_OK) != 0);
  CHECK(pith_remove_tree(deep) == 0);  // gone already: fine

  unlink(path);
  rmdir(dir);
  return check_done("test_base");
}
