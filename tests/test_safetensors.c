// safetensors: dtypes, bf16/f16 conversions, write + read back, sharded folders, and every way a
// file can be wrong (each must give a one-line error naming the file and the problem, and never
// crash; the suite also runs under ASan + UBSan).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // mkdtemp under -std=c11 too
#endif
#include "safetensors.h"

#include <dirent.h>
#include <float.h>
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"

static char dir[64];  // this run's scratch folder

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  if (n) CHECK(fwrite(data, 1, n, f) == n);
  fclose(f);
}

// A file with header `json` (its length given by the 8-byte prefix) and `nbuf` data bytes.
static void write_raw(const char *path, const char *json, size_t nbuf) {
  size_t nh = strlen(json), n = 8 + nh + nbuf;
  unsigned char *b = calloc(1, n);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)nh >> (8 * i));
  memcpy(b + 8, json, nh);
  for (size_t i = 0; i < nbuf; i++) b[8 + nh + i] = (unsigned char)i;
  write_bytes(path, b, n);
  free(b);
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_dtypes(void) {
  CHECK(!strcmp(st_dtype_name(ST_BF16), "BF16") && st_dtype_size(ST_BF16) == 2);
  CHECK(st_dtype_size(ST_F64) == 8 && st_dtype_size(ST_I64) == 8 && st_dtype_size(ST_BOOL) == 1);
  for (int d = 0; d < ST_DTYPE_COUNT; d++) {
    st_dtype back = ST_DTYPE_COUNT;
    CHECK(st_dtype_from_name(st_dtype_name((st_dtype)d), &back) == 0 && back == (st_dtype)d);
  }
  st_dtype x;
  CHECK(st_dtype_from_name("F8_E4M3", &x) == -1 && st_dtype_from_name("f32", &x) == -1);
  CHECK(st_dtype_size(ST_DTYPE_COUNT) == 0 && !strcmp(st_dtype_name((st_dtype)99), "?"));
}

static void test_bf16(void) {
  CHECK(st_f32_to_bf16(1.0f) == 0x3f80 && st_f32_to_bf16(-2.0f) == 0xc000);
  CHECK(st_bf16_to_f32(0x3f80) == 1.0f && st_bf16_to_f32(0x4049) == 3.140625f);
  CHECK(st_f32_to_bf16(from_bits(0x3f808000)) == 0x3f80);  // tie, even stays
  CHECK(st_f32_to_bf16(from_bits(0x3f818000)) == 0x3f82);  // tie, odd rounds up
  CHECK(st_f32_to_bf16(from_bits(0x3f808001)) == 0x3f81);  // above the tie
  CHECK(st_f32_to_bf16(from_bits(0x3f807fff)) == 0x3f80);  // below the tie
  CHECK(st_f32_to_bf16(FLT_MAX) == 0x7f80);                 // overflow to inf
  CHECK(st_f32_to_bf16(INFINITY) == 0x7f80 && st_f32_to_bf16(-INFINITY) == 0xff80);
  CHECK(st_f32_to_bf16(-0.0f) == 0x8000);
  CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
  CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(from_bits(0x7f800001)))));  // NaN, not inf
  CHECK(isinf(st_bf16_to_f32(0xff80)) && st_bf16_to_f32(0xff80) < 0);
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {  // every non-NaN bf16 survives f32 and back
    float f = st_bf16_to_f32((uint16_t)h);
    if (!isnan(f) && st_f32_to_bf16(f) != h) bad++;
  }
  CHECK_MSG(bad == 0, "%d bf16 values do not round-trip", bad);
  float src[3] = {1.0f, 0.5f, -3.0f}, back[3];
  uint16_t mid[3];
  st_f32_to_bf16_n(src, mid, 3);
  st_bf16_to_f32_n(mid, back, 3);
  CHECK(!memcmp(src, back, sizeof src));
}

static void test_f16(void) {
  CHECK(st_f32_to_f16(1.0f) == 0x3c00 && st_f32_to_f16(-2.0f) == 0xc000);
  CHECK(st_f16_to_f32(0x3555) == 0.333251953125f);
  CHECK(st_f32_to_f16(65504.0f) == 0x7bff && st_f32_to_f16(65519.99f) == 0x7bff);
  CHECK(st_f32_to_f16(65520.0f) == 0x7c00 && st_f32_to_f16(-1e10f) == 0xfc00);  // to inf
  CHECK(st_f32_to_f16(INFINITY) == 0x7c00 && st_f16_to_f32(0xfc00) == -INFINITY);
  CHECK(st_f32_to_f16(ldexpf(1, -14)) == 0x0400);          // smallest normal
  CHECK(st_f32_to_f16(ldexpf(1023, -24)) == 0x03ff);       // largest subnormal
  CHECK(st_f32_to_f16(ldexpf(1, -24)) == 0x0001);          // smallest subnormal
  CHECK(st_f32_to_f16(ldexpf(1, -25)) == 0x0000);          // tie to even (0)
  CHECK(st_f32_to_f16(ldexpf(3, -26)) == 0x0001);          // 0.75 ulp rounds up
  CHECK(st_f32_to_f16(ldexpf(3, -25)) == 0x0002);          // tie 1.5 -> 2
  CHECK(st_f32_to_f16(ldexpf(5, -25)) == 0x0002);          // tie 2.5 -> 2
  CHECK(st_f32_to_f16(ldexpf(2047, -25)) == 0x0400);       // rounds up into the normals
  CHECK(st_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00);   // tie, even stays
  CHECK(st_f32_to_f16(1.0f + ldexpf(3, -11)) == 0x3c02);   // tie, odd rounds up
  CHECK(st_f32_to_f16(1e-10f) == 0 && st_f32_to_f16(-1e-10f) == 0x8000);
  CHECK(st_f32_to_f16(-0.0f) == 0x8000 && bits(st_f16_to_f32(0x8000)) == 0x80000000u);
  CHECK(st_f16_to_f32(0x0001) == ldexpf(1, -24) && st_f16_to_f32(0x83ff) == -ldexpf(1023, -24));
  CHECK(isnan(st_f16_to_f32(0x7e00)) && isnan(st_f16_to_f32(st_f32_to_f16(NAN))));
  CHECK(isnan(st_f16_to_f32(st_f32_to_f16(from_bits(0x7f800001)))));  // NaN, not inf
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {  // every non-NaN f16 survives f32 and back
    float f = st_f16_to_f32((uint16_t)h);
    if (!isnan(f) && st_f32_to_f16(f) != h) bad++;
  }
  CHECK_MSG(bad == 0, "%d f16 values do not round-trip", bad);
}

// ---- write, then read back ----------------------------------------------------------------------

static const float f32v[6] = {1.5f, -2.25f, 0.0f, 3e-8f, 1e30f, -7.0f};
static const double f64v[2] = {3.141592653589793, -1e300};
static const int64_t i64v[2] = {INT64_MIN, 1234567890123456789LL};
static const int32_t i32v[1] = {-42};
static const int16_t i16v[2] = {-32768, 32767};
static const int8_t i8v[3] = {-128, 0, 127};
static const uint8_t u8v[5] = {0, 1, 2, 254, 255};
static const uint8_t boolv[2] = {1, 0};
static const float scalarv = 42.5f;

static void add_all(st_writer *w) {
  pith_err err = {{0}};
  uint16_t bf[4], hf[3];
  float bsrc[4] = {1.0f, -0.5f, 3.0f, 1e-3f}, hsrc[3] = {0.5f, -65504.0f, 6e-8f};
  st_f32_to_bf16_n(bsrc, bf, 4);
  st_f32_to_f16_n(hsrc, hf, 3);
  CHECK(st_writer_add_ref(w, "layers.0.w", ST_F32, 2, (int64_t[]){2, 3}, f32v, &err) == 0);
  CHECK(st_writer_add(w, "f64", ST_F64, 1, (int64_t[]){2}, f64v, &err) == 0);
  CHECK(st_writer_add(w, "bf16", ST_BF16, 2, (int64_t[]){2, 2}, bf, &err) == 0);  // copied
  CHECK(st_writer_add(w, "f16", ST_F16, 1, (int64_t[]){3}, hf, &err) == 0);
  CHECK(st_writer_add(w, "i64", ST_I64, 1, (int64_t[]){2}, i64v, &err) == 0);
  CHECK(st_writer_add(w, "i32", ST_I32, 1, (int64_t[]){1}, i32v, &err) == 0);
  CHECK(st_writer_add(w, "i16", ST_I16, 1, (int64_t[]){2}, i16v, &err) == 0);
  CHECK(st_writer_add(w, "i8", ST_I8, 1, (int64_t[]){3}, i8v, &err) == 0);
  CHECK(st_writer_add(w, "u8", ST_U8, 1, (int64_t[]){5}, u8v, &err) == 0);
  CHECK(st_writer_add(w, "mask", ST_BOOL, 1, (int64_t[]){2}, boolv, &err) == 0);
  CHECK(st_writer_add(w, "scalar", ST_F32, 0, NULL, &scalarv, &err) == 0);
  CHECK(st_writer_add(w, "empty", ST_F32, 2, (int64_t[]){0, 4}, NULL, &err) == 0);
  CHECK_MSG(err.msg[0] == 0, "%s", err.msg);
  CHECK(st_writer_set_metadata(w, "format", "pt", &err) == 0);
  CHECK(st_writer_set_metadata(w, "note", "quote \" backslash \\ tab \t é", &err) == 0);
  CHECK(st_writer_set_metadata(w, "format", "pith", &err) == 0);  // replaces
}

static void check_tensor(const st_file *f, const char *name, st_dtype d, int ndim,
                         const int64_t *shape, const void *data, size_t nbytes) {
  const st_tensor *t = st_find(f, name);
  CHECK_MSG(t != NULL, "tensor %s missing", name);
  if (!t) return;
  CHECK(!strcmp(t->name, name) && t->dtype == d && t->ndim == ndim && t->nbytes == nbytes);
  for (int i = 0; i < ndim; i++) CHECK(t->shape[i] == shape[i]);
  CHECK(nbytes == 0 || !memcmp(t->data, data, nbytes));
  CHECK_MSG((uintptr_t)t->data % st_dtype_size(d) == 0, "%s is not aligned", name);
}

static void check_read_back(const st_file *f) {
  check_tensor(f, "layers.0.w", ST_F32, 2, (int64_t[]){2, 3}, f32v, sizeof f32v);
  check_tensor(f, "f64", ST_F64, 1, (int64_t[]){2}, f64v, sizeof f64v);
  check_tensor(f, "i64", ST_I64, 1, (int64_t[]){2}, i64v, sizeof i64v);
  check_tensor(f, "i32", ST_I32, 1, (int64_t[]){1}, i32v, sizeof i32v);
  check_tensor(f, "i16", ST_I16, 1, (int64_t[]){2}, i16v, sizeof i16v);
  check_tensor(f, "i8", ST_I8, 1, (int64_t[]){3}, i8v, sizeof i8v);
  check_tensor(f, "u8", ST_U8, 1, (int64_t[]){5}, u8v, sizeof u8v);
  check_tensor(f, "mask", ST_BOOL, 1, (int64_t[]){2}, boolv, sizeof boolv);
  check_tensor(f, "scalar", ST_F32, 0, NULL, &scalarv, 4);
  check_tensor(f, "empty", ST_F32, 2, (int64_t[]){0, 4}, NULL, 0);
  CHECK(st_count(f) == 12 && st_find(f, "nope") == NULL && st_find(f, "__metadata__") == NULL);
  CHECK(st_numel(st_find(f, "scalar")) == 1 && st_numel(st_find(f, "empty")) == 0);

  float out[4];
  pith_err err = {{0}};
  CHECK(st_read_f32(st_find(f, "bf16"), out, 4, &err) == 0);
  CHECK(out[0] == 1.0f && out[1] == -0.5f && out[2] == 3.0f && fabsf(out[3] - 1e-3f) < 1e-5f);
  CHECK(st_read_f32(st_find(f, "f16"), out, 3, &err) == 0);
  CHECK(out[0] == 0.5f && out[1] == -65504.0f && out[2] == ldexpf(1, -24));
  CHECK(st_read_f32(st_find(f, "f64"), out, 2, &err) == 0 && out[0] == (float)f64v[0]);
  CHECK(st_read_f32(st_find(f, "i32"), out, 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "not a floating dtype");
  CHECK(st_read_f32(st_find(f, "bf16"), out, 3, &err) == -1);
  CHECK_CONTAINS(err.msg, "4 elements");

  CHECK(st_metadata_count(f) == 2 && !strcmp(st_metadata(f, "format"), "pith"));
  CHECK(!strcmp(st_metadata(f, "note"), "quote \" backslash \\ tab \t é"));
  CHECK(st_metadata(f, "missing") == NULL);
  const char *key = NULL;
  CHECK(st_metadata_at(f, 0, &key) && !strcmp(key, "format"));

  // File order follows the data; the writer put the 8-byte dtypes first, I64 before F64.
  CHECK(!strcmp(st_at(f, 0)->name, "i64") && !strcmp(st_at(f, 1)->name, "f64"));
  CHECK(!strcmp(st_at(f, st_count(f) - 1)->name, "mask"));
  for (int i = 1; i < st_count(f); i++)
    CHECK((const char *)st_at(f, i)->data >= (const char *)st_at(f, i - 1)->data);
  CHECK(st_at(f, -1) == NULL && st_at(f, st_count(f)) == NULL);
}

static int count_files(const char *d) {
  DIR *dp = opendir(d);
  int n = 0;
  for (struct dirent *e; dp && (e = readdir(dp));) n += e->d_name[0] != '.';
  if (dp) closedir(dp);
  return n;
}

static void test_roundtrip(void) {
  pith_err err = {{0}};
  st_writer *w = st_writer_new();
  add_all(w);
  char path[512];
  snprintf(path, sizeof path, "%s", tmp_path("rt.safetensors"));  // tmp_path's buffers rotate
  int before = count_files(dir);
  CHECK(st_writer_finish(w, path, &err) == 0);
  CHECK_MSG(err.msg[0] == 0, "%s", err.msg);
  CHECK(count_files(dir) == before + 1);  // no temp file left behind

  st_file *f = st_open(path, &err);
  CHECK_MSG(f != NULL, "%s", err.msg);
  if (f) check_read_back(f);
  st_close(f);

  // The header is padded to 8 bytes, and finishing again rewrites the same file.
  FILE *fp = fopen(path, "rb");
  unsigned char len[8] = {0};
  CHECK(fp && fread(len, 1, 8, fp) == 8);
  if (fp) fclose(fp);
  CHECK(len[0] % 8 == 0);
  CHECK(st_writer_finish(w, path, &err) == 0);
  f = st_open(path, &err);
  CHECK(f && st_count(f) == 12);
  st_close(f);

  // Writer mistakes.
  float one = 1;
  CHECK(st_writer_add(w, "f64", ST_F32, 0, NULL, &one, &err) == -1);
  CHECK_CONTAINS(err.msg, "'f64' added twice");
  CHECK(st_writer_add(w, "__metadata__", ST_F32, 0, NULL, &one, &err) == -1);
  CHECK(st_writer_add(w, "", ST_F32, 0, NULL, &one, &err) == -1);
  CHECK(st_writer_add(w, "neg", ST_F32, 1, (int64_t[]){-1}, &one, &err) == -1);
  CHECK_CONTAINS(err.msg, "dimension 0 is -1");
  CHECK(st_writer_add(w, "deep", ST_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, &one, &err) ==
        -1);
  CHECK(st_writer_add(w, "null", ST_F32, 1, (int64_t[]){2}, NULL, &err) == -1);
  CHECK(st_writer_add(w, "huge", ST_F32, 3, (int64_t[]){1LL << 40, 1LL << 40, 1LL << 40}, &one,
                      &err) == -1);
  CHECK_CONTAINS(err.msg, "overflows");
  CHECK(st_writer_add(w, "bad", (st_dtype)42, 0, NULL, &one, &err) == -1);
  CHECK(st_writer_finish(w, tmp_path("no/such/dir/x.safetensors"), &err) == -1);
  CHECK_CONTAINS(err.msg, "no/such/dir/x.safetensors");
  st_writer_free(w);

  // Many tensors: the name table grows, duplicates are still caught, lookups find each.
  w = st_writer_new();
  char name[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(name, sizeof name, "layers.%d.w", i);
    CHECK(st_writer_add_ref(w, name, ST_F32, 0, NULL, &one, &err) == 0);
  }
  CHECK(st_writer_add_ref(w, "layers.517.w", ST_F32, 0, NULL, &one, &err) == -1);
  CHECK_CONTAINS(err.msg, "'layers.517.w' added twice");
  CHECK(st_writer_finish(w, path, &err) == 0);
  st_writer_free(w);
  f = st_open(path, &err);
  int found = 0;
  for (int i = 0; f && i < 1000; i++) {
    snprintf(name, sizeof name, "layers.%d.w", i);
    found += st_find(f, name) != NULL;
  }
  CHECK(f && st_count(f) == 1000 && found == 1000);
  st_close(f);

  // An empty writer makes a valid empty file.
  w = st_writer_new();
  CHECK(st_writer_finish(w, tmp_path("empty.safetensors"), &err) == 0);
  st_writer_free(w);
  f = st_open(tmp_path("empty.safetensors"), &err);
  CHECK(f && st_count(f) == 0 && st_metadata_count(f) == 0);
  st_close(f);
  unlink(tmp_path("empty.safetensors"));
  unlink(path);
}

// ---- sharded folders ----------------------------------------------------------------------------

static void write_shard(const char *path, const char *n1, const char *n2, float base) {
  pith_err err = {{0}};
  float v[4] = {base, base + 1, base + 2, base + 3};
  st_writer *w = st_writer_new();
  CHECK(st_writer_add(w, n1, ST_F32, 1, (int64_t[]){2}, v, &err) == 0);
  CHECK(st_writer_add(w, n2, ST_F32, 2, (int64_t[]){1, 2}, v + 2, &err) == 0);
  CHECK(st_writer_finish(w, path, &err) == 0);
  st_writer_free(w);
}

static void write_index(const char *folder, const char *json) {
  char p[600];
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", folder);
  pith_err err = {{0}};
  CHECK(pith_write_file_atomic(p, json, strlen(json), &err) == 0);
}

static void expect_set_error(const char *folder, const char *want) {
  pith_err err = {{0}};
  st_set *s = st_set_open(folder, &err);
  CHECK(s == NULL);
  st_set_close(s);
  CHECK_CONTAINS(err.msg, want);
}

static void test_sharded(void) {
  pith_err err = {{0}};
  char sd[512];
  snprintf(sd, sizeof sd, "%s/sharded", dir);
  CHECK(mkdir(sd, 0755) == 0);
  write_shard(tmp_path("sharded/model-00002-of-00002.safetensors"), "b.w", "b.bias", 10);
  write_shard(tmp_path("sharded/model-00001-of-00002.safetensors"), "a.w", "a.bias", 0);
  write_index(sd, "{\"metadata\": {\"total_size\": 32, \"format\": \"pt\"}, \"weight_map\": {"
                  "\"b.w\": \"model-00002-of-00002.safetensors\","
                  "\"a.bias\": \"model-00001-of-00002.safetensors\","
                  "\"a.w\": \"model-00001-of-00002.safetensors\","
                  "\"b.bias\": \"model-00002-of-00002.safetensors\"}}");
  st_set *s = st_set_open(sd, &err);
  CHECK_MSG(s != NULL, "%s", err.msg);
  if (s) {
    CHECK(st_set_count(s) == 4 && st_set_nfiles(s) == 2);
    const st_tensor *t = st_set_find(s, "b.bias");
    CHECK(t && t->ndim == 2 && ((const float *)t->data)[1] == 13.0f);
    t = st_set_find(s, "a.w");
    CHECK(t && ((const float *)t->data)[0] == 0.0f);
    CHECK(st_set_find(s, "c.w") == NULL);
    CHECK(!strcmp(st_set_at(s, 0)->name, "a.bias") || !strcmp(st_set_at(s, 0)->name, "a.w"));
    CHECK(!strcmp(st_set_at(s, 3)->name, "b.bias") || !strcmp(st_set_at(s, 3)->name, "b.w"));
    CHECK(!strcmp(st_set_metadata(s, "total_size"), "32"));
    CHECK(!strcmp(st_set_metadata(s, "format"), "pt"));
    CHECK_CONTAINS(st_path(st_set_file(s, 0)), "model-00001-of-00002");
  }
  st_set_close(s);

  // Index errors: a tensor absent from its shard, a missing shard, a shard escaping the folder.
  write_index(sd, "{\"weight_map\": {\"a.w\": \"model-00001-of-00002.safetensors\","
                  "\"c.w\": \"model-00002-of-00002.safetensors\"}}");
  expect_set_error(sd, "model.safetensors.index.json: tensor 'c.w' is listed in shard");
  write_index(sd, "{\"weight_map\": {\"a.w\": \"model-00001-of-00003.safetensors\"}}");
  expect_set_error(sd, "shard 'model-00001-of-00003.safetensors' (listed for tensor 'a.w') is "
                       "missing");
  write_index(sd, "{\"weight_map\": {\"a.w\": \"../rt.safetensors\"}}");
  expect_set_error(sd, "not a shard file name");
  write_index(sd, "{\"weight_map\": [1, 2]}");
  expect_set_error(sd, "no \"weight_map\" object");
  write_index(sd, "{\"weight_map\": {\"a.w\": ");
  expect_set_error(sd, "model.safetensors.index.json: not a JSON object");
  write_index(sd, "{\"weight_map\": {\"a.w\": \"model-00001-of-00002.safetensors\","
                  "\"a.w\": \"model-00002-of-00002.safetensors\"}}");
  expect_set_error(sd, "'a.w' appears twice in weight_map");

  // A shard that is itself broken: its own error, naming the shard.
  write_index(sd, "{\"weight_map\": {\"x\": \"broken.safetensors\"}}");
  write_bytes(tmp_path("sharded/broken.safetensors"), "abc", 3);
  expect_set_error(sd, "broken.safetensors: file is 3 bytes");

  // A folder with one model.safetensors, a plain file path, and a folder with neither.
  char one[512];
  snprintf(one, sizeof one, "%s/single", dir);
  CHECK(mkdir(one, 0755) == 0);
  write_shard(tmp_path("single/model.safetensors"), "x", "y", 5);
  s = st_set_open(one, &err);
  CHECK(s && st_set_count(s) == 2 && st_set_nfiles(s) == 1 && st_set_find(s, "y"));
  st_set_close(s);
  s = st_set_open(tmp_path("single/model.safetensors"), &err);
  CHECK(s && st_set_count(s) == 2 && st_set_find(s, "x"));
  st_set_close(s);
  expect_set_error(dir, "no model.safetensors or model.safetensors.index.json");

  unlink(tmp_path("single/model.safetensors"));
  rmdir(one);
  unlink(tmp_path("sharded/model-00001-of-00002.safetensors"));
  unlink(tmp_path("sharded/model-00002-of-00002.safetensors"));
  unlink(tmp_path("sharded/broken.safetensors"));
  unlink(tmp_path("sharded/model.safetensors.index.json"));
  rmdir(sd);
}

// ---- broken files -------------------------------------------------------------------------------

// st_open(path) fails with a one-line message that names the file and contains `want`.
static void expect_open_error(const char *path, const char *want) {
  pith_err err = {{0}};
  st_file *f = st_open(path, &err);
  CHECK_MSG(f == NULL, "%s opened but should not (want \"%s\")", path, want);
  st_close(f);
  CHECK_MSG(!strncmp(err.msg, path, strlen(path)), "\"%s\" does not start with the path",
            err.msg);
  CHECK_CONTAINS(err.msg, want);
  CHECK(strchr(err.msg, '\n') == NULL);
}

static void expect_raw_error(const char *json, size_t nbuf, const char *want) {
  const char *p = tmp_path("bad.safetensors");
  write_raw(p, json, nbuf);
  expect_open_error(p, want);
}

#define T(dt, shape, b, e) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" b "," e "]}"

static void test_errors(void) {
  const char *p = tmp_path("bad.safetensors");
  write_bytes(p, "\x05\0\0\0\0", 5);
  expect_open_error(p, "file is 5 bytes, too short for the 8-byte header length");
  write_bytes(p, "\x40\0\0\0\0\0\0\0{}", 10);
  expect_open_error(p, "header length 64 runs past the end of the file (10 bytes)");
  write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
  expect_open_error(p, "runs past the end of the file");
  expect_open_error(tmp_path("missing.safetensors"), "cannot open");
  expect_open_error(dir, "not a regular file");

  expect_raw_error("{\"w\":" T("F32", "[4,4]", "0", "64") "}", 32,
                   "tensor 'w' claims 64 bytes at [0,64) but the file's data is only 32 bytes");
  expect_raw_error("{\"w\":" T("F32", "[2]", "0", "4") "}", 4,
                   "tensor 'w' is F32 [2] (8 bytes) but its data_offsets [0,4) hold 4 bytes");
  expect_raw_error("{\"w\":" T("F32", "[1099511627776,1099511627776,1099511627776]", "0", "0") "}",
                   0, "more bytes than 64 bits count");
  expect_raw_error("{\"a\":" T("U8", "[8]", "0", "8") ",\"b\":" T("U8", "[8]", "4", "12") "}", 12,
                   "tensors 'a' at [0,8) and 'b' at [4,12) overlap");
  expect_raw_error("{\"a\":" T("U8", "[4]", "0", "4") ",\"b\":" T("U8", "[4]", "8", "12") "}", 12,
                   "bytes [4,8) of the file's 12 data bytes belong to no tensor");
  expect_raw_error("{\"a\":" T("U8", "[4]", "0", "4") "}", 6,
                   "bytes [4,6) of the file's 6 data bytes belong to no tensor");
  expect_raw_error("{\"w\":" T("F8_E4M3", "[4]", "0", "4") "}", 4,
                   "tensor 'w' has unknown dtype 'F8_E4M3'");
  expect_raw_error("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0,", 4,
                   "header is not valid JSON");
  expect_raw_error("{\"w\":" T("U8", "[4]", "0", "4") "} x", 4, "header has bytes after its JSON");
  expect_raw_error("[1, 2]", 0, "header is JSON but not an object");
  expect_raw_error("{\"w\":" T("U8", "[-4]", "0", "4") "}", 4, "tensor 'w' has a bad shape");
  expect_raw_error("{\"w\":" T("U8", "[1.5]", "0", "4") "}", 4, "tensor 'w' has a bad shape");
  expect_raw_error("{\"w\":" T("U8", "[\"4\"]", "0", "4") "}", 4, "tensor 'w' has a bad shape");
  expect_raw_error("{\"w\":" T("U8", "[1,1,1,1,1,1,1,1,1]", "0", "1") "}", 1,
                   "tensor 'w' has 9 dimensions");
  expect_raw_error("{\"w\":" T("U8", "[4]", "4", "0") "}", 4, "tensor 'w' has bad \"data_offsets\"");
  expect_raw_error("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 4,
                   "bad \"data_offsets\"");
  expect_raw_error("{\"w\":{\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                   "tensor 'w' has no \"dtype\" string");
  expect_raw_error("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,4]}}", 4,
                   "tensor 'w' has no \"shape\" list");
  expect_raw_error("{\"w\": 3}", 0, "tensor 'w' is not a JSON object");
  expect_raw_error("{\"w\":" T("U8", "[2]", "0", "2") ",\"w\":" T("U8", "[2]", "2", "4") "}", 4,
                   "tensor 'w' appears twice");
  expect_raw_error("{\"__metadata__\":{\"a\":1}}", 0, "\"__metadata__\" value for 'a' is not a string");
  expect_raw_error("{\"__metadata__\":[]}", 0, "\"__metadata__\" is not an object");

  // Accepted: trailing spaces, unpadded headers, null metadata, an empty tensor anywhere.
  pith_err err = {{0}};
  write_raw(p, "{\"__metadata__\":null,\"e\":" T("F32", "[0]", "4", "4") ",\"w\":" T("U8", "[4]", "0",
            "4") "}  \n", 4);
  st_file *f = st_open(p, &err);
  CHECK_MSG(f && st_count(f) == 2 && !strcmp(st_at(f, 0)->name, "w"), "%s", err.msg);
  st_close(f);
  unlink(p);
}

// Cut a valid file at every length and poke bytes of its header: st_open never crashes, and when
// it accepts, what it hands out lies inside the file.
static void test_mangled(void) {
  pith_err err = {{0}};
  st_writer *w = st_writer_new();
  add_all(w);
  const char *good = tmp_path("good.safetensors"), *bad = tmp_path("mangled.safetensors");
  CHECK(st_writer_finish(w, good, &err) == 0);
  st_writer_free(w);
  size_t n = 0;
  char *bytes = pith_read_file(good, &n, &err);
  CHECK(bytes != NULL);
  if (!bytes) return;
  int failed = 0, accepted = 0;
  for (size_t len = 0; len < n; len++) {
    write_bytes(bad, bytes, len);
    st_file *f = st_open(bad, &err);
    failed += f == NULL && strstr(err.msg, bad) == err.msg;
    st_close(f);
  }
  CHECK_MSG(failed == (int)n, "%d of %zu truncations failed cleanly", failed, n);
  size_t hlen = (unsigned char)bytes[0] | (size_t)(unsigned char)bytes[1] << 8;
  const char pokes[] = {'x', '9', '0', '"', '{', ']', ',', '\0', '-', '.'};
  for (size_t i = 0; i < 8 + hlen; i++)
    for (size_t k = 0; k < sizeof pokes; k++) {
      char *m = malloc(n);
      memcpy(m, bytes, n);
      m[i] = pokes[k];
      write_bytes(bad, m, n);
      free(m);
      st_file *f = st_open(bad, &err);
      if (f) {
        accepted++;
        size_t total = 0;
        for (int t = 0; t < st_count(f); t++) total += st_at(f, t)->nbytes;
        CHECK(total <= n);
      } else {
        CHECK(strstr(err.msg, bad) == err.msg);
      }
      st_close(f);
    }
  printf("mangled headers: %d of %zu accepted (harmless edits such as digits in names)\n",
         accepted, (8 + hlen) * sizeof pokes);
  free(bytes);
  unlink(good);
  unlink(bad);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/pith_test_st_XXXXXX");
  CHECK_SKIP_IF(mkdtemp(dir) == NULL, "cannot make a temp folder");
  test_dtypes();
  test_bf16();
  test_f16();
  test_roundtrip();
  test_sharded();
  test_errors();
  test_mangled();
  rmdir(dir);
  return check_done("test_safetensors");
}
