// st_dump: the C side of tests/reference/safetensors_parity.py.
//   st_dump PATH          print a safetensors file, or a model folder (sharded or not), as JSON:
//                         {"metadata": {..}, "tensors": [{"name", "dtype", "shape", "hex", "f32"}]}
//                         "hex" is the raw little-endian bytes; "f32" (floating dtypes only) the
//                         values through st_read_f32. Exit 1 with the error on stderr.
//   st_dump --convert IN OUT
//                         read IN and write OUT with st_writer: every tensor as it is, plus for each
//                         F32 tensor NAME the tensors NAME.bf16 and NAME.f16 converted by
//                         st_f32_to_bf16 / st_f32_to_f16; IN's metadata plus "writer": "pith".
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"

static void print_json_string(const char *s) {
  putchar('"');
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') printf("\\%c", *c);
    else if (*c < 0x20) printf("\\u%04x", *c);
    else putchar(*c);
  }
  putchar('"');
}

static void print_float(float v) {
  if (isnan(v)) printf("NaN");
  else if (isinf(v)) printf(v > 0 ? "Infinity" : "-Infinity");
  else printf("%.9e", v);  // a float in JSON, -0 included; 10 digits round-trip f32
}

static int print_tensor(const st_tensor *t) {
  printf("{\"name\": ");
  print_json_string(t->name);
  printf(", \"dtype\": \"%s\", \"shape\": [", st_dtype_name(t->dtype));
  for (int i = 0; i < t->ndim; i++) printf("%s%lld", i ? ", " : "", (long long)t->shape[i]);
  printf("], \"hex\": \"");
  for (size_t i = 0; i < t->nbytes; i++) printf("%02x", ((const unsigned char *)t->data)[i]);
  printf("\"");
  if (t->dtype == ST_F64 || t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
    size_t n = (size_t)st_numel(t);
    float *v = malloc(sizeof *v * (n + 1));
    pith_err err = {{0}};
    if (!v || st_read_f32(t, v, n, &err) != 0) {
      fprintf(stderr, "st_dump: %s\n", v ? err.msg : "out of memory");
      free(v);
      return -1;
    }
    printf(", \"f32\": [");
    for (size_t i = 0; i < n; i++) {
      if (i) printf(", ");
      print_float(v[i]);
    }
    printf("]");
    free(v);
  }
  printf("}");
  return 0;
}

static int dump_file(const char *path) {
  pith_err err = {{0}};
  st_file *f = st_open(path, &err);
  if (!f) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  printf("{\"metadata\": {");
  for (int i = 0; i < st_metadata_count(f); i++) {
    const char *key, *value = st_metadata_at(f, i, &key);
    printf(i ? ", " : "");
    print_json_string(key);
    printf(": ");
    print_json_string(value);
  }
  printf("}, \"tensors\": [");
  int rc = 0;
  for (int i = 0; i < st_count(f) && rc == 0; i++) {
    printf(i ? ",\n  " : "\n  ");
    rc = print_tensor(st_at(f, i));
  }
  printf("]}\n");
  st_close(f);
  return rc ? 1 : 0;
}

static int dump_set(const char *dir) {
  pith_err err = {{0}};
  st_set *s = st_set_open(dir, &err);
  if (!s) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  const char *total = st_set_metadata(s, "total_size");
  printf("{\"metadata\": {");
  if (total) {
    printf("\"total_size\": ");
    print_json_string(total);
  }
  printf("}, \"nfiles\": %d, \"tensors\": [", st_set_nfiles(s));
  int rc = 0;
  for (int i = 0; i < st_set_count(s) && rc == 0; i++) {
    printf(i ? ",\n  " : "\n  ");
    rc = print_tensor(st_set_at(s, i));
  }
  printf("]}\n");
  st_set_close(s);
  return rc ? 1 : 0;
}

// Add NAME.bf16 and NAME.f16 for an F32 tensor.
static int add_converted(st_writer *w, const st_tensor *t, pith_err *err) {
  size_t n = (size_t)st_numel(t);
  float *src = malloc(sizeof *src * (n + 1));
  uint16_t *bf = malloc(sizeof *bf * (n + 1)), *hf = malloc(sizeof *hf * (n + 1));
  char name[1024];
  int rc = -1;
  if (src && bf && hf && st_read_f32(t, src, n, err) == 0) {
    st_f32_to_bf16_n(src, bf, n);
    st_f32_to_f16_n(src, hf, n);
    snprintf(name, sizeof name, "%s.bf16", t->name);
    rc = st_writer_add(w, name, ST_BF16, t->ndim, t->shape, bf, err);
    snprintf(name, sizeof name, "%s.f16", t->name);
    if (rc == 0) rc = st_writer_add(w, name, ST_F16, t->ndim, t->shape, hf, err);
  }
  free(src);
  free(bf);
  free(hf);
  return rc;
}

static int convert(const char *in, const char *out) {
  pith_err err = {{0}};
  st_file *f = st_open(in, &err);
  st_writer *w = st_writer_new();
  int rc = f && w ? 0 : -1;
  for (int i = 0; f && w && i < st_count(f) && rc == 0; i++) {
    const st_tensor *t = st_at(f, i);
    rc = st_writer_add_ref(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err);
    if (rc == 0 && t->dtype == ST_F32) rc = add_converted(w, t, &err);
  }
  for (int i = 0; f && w && rc == 0 && i < st_metadata_count(f); i++) {
    const char *key, *value = st_metadata_at(f, i, &key);
    rc = st_writer_set_metadata(w, key, value, &err);
  }
  if (rc == 0) rc = st_writer_set_metadata(w, "writer", "pith", &err);
  if (rc == 0) rc = st_writer_finish(w, out, &err);  // f is still open: refs stay valid
  if (rc != 0) fprintf(stderr, "%s\n", err.msg[0] ? err.msg : "st_dump: out of memory");
  st_writer_free(w);
  st_close(f);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--convert")) return convert(argv[2], argv[3]);
  if (argc != 2) {
    fprintf(stderr, "usage: st_dump PATH | st_dump --convert IN OUT\n");
    return 2;
  }
  struct stat st;
  if (stat(argv[1], &st) == 0 && S_ISDIR(st.st_mode)) return dump_set(argv[1]);
  return dump_file(argv[1]);
}
