// safetensors: reader (mmap + full validation), model-folder sets (single file or sharded), an
// atomic streaming writer, dtypes and bf16/f16 conversions. See safetensors.h.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // mmap, O_CLOEXEC, fsync under -std=c11 too
#endif
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; pith reads it in place and needs a little-endian machine"
#endif

#define JSON_MAX_EXACT 9007199254740992.0  // 2^53: integers above it do not survive a double

// ---- dtypes -------------------------------------------------------------------------------------

static const struct {
  const char *name;  // the header's spelling
  size_t size;       // bytes per element
  int rank;          // place in the reference library's Dtype enum (ascending alignment); the
                     // writer orders tensors by it, largest first, as that library does
} dtypes[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8, 8},  [ST_F32] = {"F32", 4, 7},   [ST_F16] = {"F16", 2, 4},
    [ST_BF16] = {"BF16", 2, 5}, [ST_I64] = {"I64", 8, 9},  [ST_I32] = {"I32", 4, 6},
    [ST_I16] = {"I16", 2, 3},  [ST_I8] = {"I8", 1, 2},     [ST_U8] = {"U8", 1, 1},
    [ST_BOOL] = {"BOOL", 1, 0},
};

static int dtype_ok(st_dtype d) { return (int)d >= 0 && d < ST_DTYPE_COUNT; }

const char *st_dtype_name(st_dtype d) { return dtype_ok(d) ? dtypes[d].name : "?"; }

size_t st_dtype_size(st_dtype d) { return dtype_ok(d) ? dtypes[d].size : 0; }

int st_dtype_from_name(const char *name, st_dtype *out) {
  for (int d = 0; d < ST_DTYPE_COUNT; d++)
    if (name && !strcmp(name, dtypes[d].name)) {
      *out = (st_dtype)d;
      return 0;
    }
  return -1;
}

// ---- bf16 / f16 <-> f32 -------------------------------------------------------------------------

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even; overflow carries to inf
  return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  if (exp == 0) {                                                          // zero, subnormal
    float v = (float)mant * 0x1p-24f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

// |f| below the smallest normal f16 (2^-14): a multiple of 2^-24, rounded to nearest even.
static uint16_t f16_subnormal(uint32_t a) {
  int shift = 126 - (int)(a >> 23);  // value = mant * 2^(e-150) = (mant >> shift) * 2^-24
  if (shift >= 25) return 0;         // below half the smallest subnormal
  uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) q++;
  return (uint16_t)q;
}

uint16_t st_f32_to_f16(float f) {
  uint32_t u = f32_bits(f), a = u & 0x7fffffffu;
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu);  // quiet NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (a < 0x38800000u) return sign | f16_subnormal(a);
  // Rebias the exponent (127 -> 15) and round away the low 13 mantissa bits, ties to even.
  return sign | (uint16_t)((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13);
}

void st_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = st_bf16_to_f32(src[i]);
}

void st_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = st_f32_to_bf16(src[i]);
}

void st_f16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = st_f16_to_f32(src[i]);
}

void st_f32_to_f16_n(const float *src, uint16_t *dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = st_f32_to_f16(src[i]);
}

// ---- tensors ------------------------------------------------------------------------------------

int64_t st_numel(const st_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

// One element of a floating tensor as f32; p may be unaligned.
static float load_f32(st_dtype d, const uint8_t *p) {
  double f64;
  float f32;
  uint16_t h;
  switch (d) {
    case ST_F64: memcpy(&f64, p, 8); return (float)f64;
    case ST_F32: memcpy(&f32, p, 4); return f32;
    case ST_F16: memcpy(&h, p, 2); return st_f16_to_f32(h);
    default: memcpy(&h, p, 2); return st_bf16_to_f32(h);  // ST_BF16
  }
}

int st_read_f32(const st_tensor *t, float *out, size_t n, pith_err *err) {
  if (t->dtype != ST_F64 && t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
    return pith_fail(err, "st_read_f32: tensor '%s' is %s, not a floating dtype", t->name,
                     st_dtype_name(t->dtype));
  if ((int64_t)n != st_numel(t))
    return pith_fail(err, "st_read_f32: tensor '%s' has %lld elements but the output holds %zu",
                     t->name, (long long)st_numel(t), n);
  size_t size = st_dtype_size(t->dtype);
  const uint8_t *p = t->data;
  if (t->dtype == ST_F32 && n) memcpy(out, p, n * 4);
  else
    for (size_t i = 0; i < n; i++) out[i] = load_f32(t->dtype, p + i * size);
  return 0;
}

// "[2,3]" into buf.
static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (len < cap) snprintf(buf + len, cap - len, "]");
  return buf;
}

// prod(shape) * size into *out; -1 on overflow.
static int shape_bytes(const int64_t *shape, int ndim, size_t size, uint64_t *out) {
  uint64_t n = size;
  for (int i = 0; i < ndim; i++)
    if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
  *out = n;
  return 0;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

// ---- name index: tensors sorted by name, found by binary search ---------------------------------

static int cmp_tensor_name(const void *a, const void *b) {
  return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_key_tensor(const void *key, const void *elem) {
  return strcmp((const char *)key, (*(const st_tensor *const *)elem)->name);
}

// Sort `idx` by name; return the first name that occurs twice, or NULL.
static const char *name_index_sort(const st_tensor **idx, int n) {
  qsort(idx, (size_t)n, sizeof *idx, cmp_tensor_name);
  for (int i = 1; i < n; i++)
    if (!strcmp(idx[i - 1]->name, idx[i]->name)) return idx[i]->name;
  return NULL;
}

static const st_tensor *name_index_find(const st_tensor *const *idx, int n, const char *name) {
  if (!name || n == 0) return NULL;
  const st_tensor *const *hit = bsearch(name, idx, (size_t)n, sizeof *idx, cmp_key_tensor);
  return hit ? *hit : NULL;
}

// ---- metadata: key/value string pairs -----------------------------------------------------------

typedef struct {
  char **kv;  // (2 * count) key, value, key, value... in the order first set; owned
  int count;  // number of pairs
  int cap;    // pairs allocated
} meta_list;

static int meta_set(meta_list *m, const char *key, const char *value) {
  for (int i = 0; i < m->count; i++)
    if (!strcmp(m->kv[2 * i], key)) {
      char *v = xstrdup(value);
      if (!v) return -1;
      free(m->kv[2 * i + 1]);
      m->kv[2 * i + 1] = v;
      return 0;
    }
  if (m->count == m->cap) {
    int cap = m->cap ? 2 * m->cap : 8;
    char **kv = realloc(m->kv, sizeof *kv * 2 * (size_t)cap);
    if (!kv) return -1;
    m->kv = kv;
    m->cap = cap;
  }
  char *k = xstrdup(key), *v = xstrdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return -1;
  }
  m->kv[2 * m->count] = k;
  m->kv[2 * m->count + 1] = v;
  m->count++;
  return 0;
}

static const char *meta_get(const meta_list *m, const char *key) {
  for (int i = 0; key && i < m->count; i++)
    if (!strcmp(m->kv[2 * i], key)) return m->kv[2 * i + 1];
  return NULL;
}

static void meta_free(meta_list *m) {
  for (int i = 0; i < 2 * m->count; i++) free(m->kv[i]);
  free(m->kv);
  memset(m, 0, sizeof *m);
}

// ---- reader -------------------------------------------------------------------------------------

typedef struct {
  st_tensor t;           // what st_at hands out
  uint64_t begin, end;   // data_offsets as read, relative to the data buffer
  int pos;               // position in the header: equal offsets keep header order
} st_entry;

struct st_file {
  char *path;              // as given to st_open; starts every error message
  uint8_t *map;            // the whole file, mapped read-only
  size_t size;             // bytes in the file (and in the mapping)
  uint64_t header_len;     // N: bytes of JSON header after the 8-byte length
  uint64_t buf_size;       // bytes of the data buffer after the header
  st_entry *entries;       // (count) tensors in file order once validated
  int count;               // number of tensors
  const st_tensor **by_name;  // (count) the tensors sorted by name
  meta_list meta;          // "__metadata__"
};

static int map_file(st_file *f, pith_err *err) {
  int fd = open(f->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return pith_fail(err, "%s: cannot open: %s", f->path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return pith_fail(err, "%s: not a regular file", f->path);
  }
  f->size = (size_t)st.st_size;
  if (f->size < 8) {
    close(fd);
    return pith_fail(err, "%s: file is %zu bytes, too short for the 8-byte header length",
                     f->path, f->size);
  }
  void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return pith_fail(err, "%s: cannot mmap: %s", f->path, strerror(e));
  f->map = p;
  return 0;
}

static int read_header_len(st_file *f, pith_err *err) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
  if (n > f->size - 8)
    return pith_fail(err, "%s: header length %llu runs past the end of the file (%zu bytes); "
                     "truncated or not a safetensors file", f->path, (unsigned long long)n, f->size);
  if (n > ST_MAX_HEADER)
    return pith_fail(err, "%s: header length %llu is over the %u-byte limit", f->path,
                     (unsigned long long)n, ST_MAX_HEADER);
  f->header_len = n;
  f->buf_size = f->size - 8 - n;
  return 0;
}

static cJSON *parse_header(st_file *f, pith_err *err) {
  const char *hdr = (const char *)f->map + 8, *end = NULL;
  size_t n = (size_t)f->header_len;
  cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
  if (!root) {
    size_t at = (end >= hdr && end <= hdr + n) ? (size_t)(end - hdr) : 0;
    pith_fail(err, "%s: header is not valid JSON (near byte %zu of %zu)", f->path, at, n);
    return NULL;
  }
  for (const char *p = end; p && p < hdr + n; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      cJSON_Delete(root);
      pith_fail(err, "%s: header has bytes after its JSON object (at byte %zu of %zu)", f->path,
                (size_t)(p - hdr), n);
      return NULL;
    }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    pith_fail(err, "%s: header is JSON but not an object", f->path);
    return NULL;
  }
  return root;
}

// A JSON number that is a non-negative integer a double holds exactly.
static int json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return -1;
  double v = j->valuedouble;
  if (!(v >= 0 && v <= JSON_MAX_EXACT) || v != floor(v)) return -1;
  *out = (uint64_t)v;
  return 0;
}

static int parse_dtype(st_file *f, const char *name, const cJSON *item, st_tensor *t,
                       pith_err *err) {
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  if (!cJSON_IsString(d))
    return pith_fail(err, "%s: tensor '%s' has no \"dtype\" string", f->path, name);
  if (st_dtype_from_name(d->valuestring, &t->dtype) != 0)
    return pith_fail(err, "%s: tensor '%s' has unknown dtype '%s' (pith reads F64 F32 F16 BF16 "
                     "I64 I32 I16 I8 U8 BOOL)", f->path, name, d->valuestring);
  return 0;
}

static int parse_shape(st_file *f, const char *name, const cJSON *item, st_tensor *t,
                       pith_err *err) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(item, "shape");
  if (!cJSON_IsArray(s))
    return pith_fail(err, "%s: tensor '%s' has no \"shape\" list", f->path, name);
  int ndim = cJSON_GetArraySize(s);
  if (ndim > ST_MAX_DIMS)
    return pith_fail(err, "%s: tensor '%s' has %d dimensions; pith reads at most %d", f->path,
                     name, ndim, ST_MAX_DIMS);
  t->ndim = 0;
  for (const cJSON *d = s->child; d; d = d->next) {
    uint64_t v;
    if (json_uint(d, &v) != 0)
      return pith_fail(err, "%s: tensor '%s' has a bad shape: dimension %d is not a "
                       "non-negative integer", f->path, name, t->ndim);
    t->shape[t->ndim++] = (int64_t)v;
  }
  return 0;
}

static int parse_offsets(st_file *f, const char *name, const cJSON *item, st_entry *e,
                         pith_err *err) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2 || json_uint(o->child, &e->begin) != 0 ||
      json_uint(o->child->next, &e->end) != 0 || e->begin > e->end)
    return pith_fail(err, "%s: tensor '%s' has bad \"data_offsets\" (want [begin, end], "
                     "integers with 0 <= begin <= end)", f->path, name);
  return 0;
}

// The entry's bytes lie inside the buffer and match its dtype and shape.
static int check_extent(st_file *f, st_entry *e, pith_err *err) {
  st_tensor *t = &e->t;
  uint64_t want, have = e->end - e->begin;
  char sh[160];
  if (e->end > f->buf_size)
    return pith_fail(err, "%s: tensor '%s' claims %llu bytes at [%llu,%llu) but the file's data "
                     "is only %llu bytes", f->path, t->name, (unsigned long long)have,
                     (unsigned long long)e->begin, (unsigned long long)e->end,
                     (unsigned long long)f->buf_size);
  if (shape_bytes(t->shape, t->ndim, st_dtype_size(t->dtype), &want) != 0)
    return pith_fail(err, "%s: tensor '%s' is %s %s: more bytes than 64 bits count", f->path,
                     t->name, st_dtype_name(t->dtype), shape_str(t->shape, t->ndim, sh, sizeof sh));
  if (want != have)
    return pith_fail(err, "%s: tensor '%s' is %s %s (%llu bytes) but its data_offsets [%llu,%llu) "
                     "hold %llu bytes", f->path, t->name, st_dtype_name(t->dtype),
                     shape_str(t->shape, t->ndim, sh, sizeof sh), (unsigned long long)want,
                     (unsigned long long)e->begin, (unsigned long long)e->end,
                     (unsigned long long)have);
  t->nbytes = (size_t)have;
  t->data = f->map + 8 + f->header_len + e->begin;
  return 0;
}

static int parse_entry(st_file *f, const cJSON *item, st_entry *e, pith_err *err) {
  const char *name = item->string;
  if (!cJSON_IsObject(item))
    return pith_fail(err, "%s: tensor '%s' is not a JSON object", f->path, name);
  e->t.name = xstrdup(name);
  if (!e->t.name) return pith_fail(err, "%s: out of memory", f->path);
  if (parse_dtype(f, name, item, &e->t, err) || parse_shape(f, name, item, &e->t, err) ||
      parse_offsets(f, name, item, e, err))
    return -1;
  return check_extent(f, e, err);
}

static int parse_metadata(st_file *f, const cJSON *item, pith_err *err) {
  if (cJSON_IsNull(item)) return 0;
  if (!cJSON_IsObject(item))
    return pith_fail(err, "%s: \"__metadata__\" is not an object", f->path);
  for (const cJSON *kv = item->child; kv; kv = kv->next) {
    if (!cJSON_IsString(kv))
      return pith_fail(err, "%s: \"__metadata__\" value for '%s' is not a string", f->path,
                       kv->string);
    if (meta_set(&f->meta, kv->string, kv->valuestring) != 0)
      return pith_fail(err, "%s: out of memory", f->path);
  }
  return 0;
}

static int parse_entries(st_file *f, const cJSON *root, pith_err *err) {
  f->entries = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *f->entries);
  if (!f->entries) return pith_fail(err, "%s: out of memory", f->path);
  for (const cJSON *item = root->child; item; item = item->next) {
    if (!strcmp(item->string, "__metadata__")) {
      if (parse_metadata(f, item, err) != 0) return -1;
      continue;
    }
    st_entry *e = &f->entries[f->count];
    e->pos = f->count++;
    if (parse_entry(f, item, e, err) != 0) return -1;
  }
  return 0;
}

static int cmp_entry_offset(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->pos - y->pos;
}

// Sorted by offset, the tensors tile the buffer exactly: no overlap, no gap, nothing left over.
static int check_coverage(st_file *f, pith_err *err) {
  qsort(f->entries, (size_t)f->count, sizeof *f->entries, cmp_entry_offset);
  uint64_t covered = 0;
  for (int i = 0; i < f->count; i++) {
    const st_entry *e = &f->entries[i], *prev = i ? &f->entries[i - 1] : NULL;
    if (e->begin < covered)
      return pith_fail(err, "%s: tensors '%s' at [%llu,%llu) and '%s' at [%llu,%llu) overlap",
                       f->path, prev->t.name, (unsigned long long)prev->begin,
                       (unsigned long long)prev->end, e->t.name, (unsigned long long)e->begin,
                       (unsigned long long)e->end);
    if (e->begin > covered) break;
    covered = e->end;
  }
  if (covered != f->buf_size) {
    uint64_t gap_end = f->buf_size;
    for (int i = 0; i < f->count; i++)
      if (f->entries[i].begin > covered) { gap_end = f->entries[i].begin; break; }
    return pith_fail(err, "%s: bytes [%llu,%llu) of the file's %llu data bytes belong to no "
                     "tensor", f->path, (unsigned long long)covered,
                     (unsigned long long)gap_end, (unsigned long long)f->buf_size);
  }
  return 0;
}

static int index_file_names(st_file *f, pith_err *err) {
  f->by_name = malloc(sizeof *f->by_name * ((size_t)f->count + 1));
  if (!f->by_name) return pith_fail(err, "%s: out of memory", f->path);
  for (int i = 0; i < f->count; i++) f->by_name[i] = &f->entries[i].t;
  const char *dup = name_index_sort(f->by_name, f->count);
  if (dup) return pith_fail(err, "%s: tensor '%s' appears twice in the header", f->path, dup);
  return 0;
}

static int load_file(st_file *f, pith_err *err) {
  if (map_file(f, err) != 0 || read_header_len(f, err) != 0) return -1;
  cJSON *root = parse_header(f, err);
  if (!root) return -1;
  int rc = parse_entries(f, root, err);
  cJSON_Delete(root);
  if (rc != 0 || check_coverage(f, err) != 0) return -1;
  return index_file_names(f, err);
}

st_file *st_open(const char *path, pith_err *err) {
  st_file *f = calloc(1, sizeof *f);
  if (f) f->path = xstrdup(path);
  if (!f || !f->path) {
    free(f);
    pith_fail(err, "%s: out of memory", path);
    return NULL;
  }
  if (load_file(f, err) != 0) {
    st_close(f);
    return NULL;
  }
  return f;
}

void st_close(st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->size);
  for (int i = 0; f->entries && i < f->count; i++) free((char *)f->entries[i].t.name);
  free(f->entries);
  free(f->by_name);
  meta_free(&f->meta);
  free(f->path);
  free(f);
}

const char *st_path(const st_file *f) { return f->path; }
int st_count(const st_file *f) { return f->count; }

const st_tensor *st_at(const st_file *f, int i) {
  return i >= 0 && i < f->count ? &f->entries[i].t : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
  return name_index_find(f->by_name, f->count, name);
}

int st_metadata_count(const st_file *f) { return f->meta.count; }

const char *st_metadata_at(const st_file *f, int i, const char **key) {
  if (i < 0 || i >= f->meta.count) return NULL;
  if (key) *key = f->meta.kv[2 * i];
  return f->meta.kv[2 * i + 1];
}

const char *st_metadata(const st_file *f, const char *key) { return meta_get(&f->meta, key); }

// ---- sets: a model folder -----------------------------------------------------------------------

struct st_set {
  st_file **files;            // (nfiles) the one file, or the shards sorted by file name
  int nfiles;                 // number of files opened
  const st_tensor **order;    // (count) tensors by shard, then file order
  const st_tensor **by_name;  // (count) the same tensors sorted by name
  int count;                  // number of tensors in the set
  meta_list meta;             // the index's "metadata", or the one file's "__metadata__"
};

// One "weight_map" line of an index.
typedef struct {
  const char *tensor;  // tensor name (in the parsed index)
  const char *shard;   // shard file name, relative to the folder (in the parsed index)
  int file;            // index of the shard in the set's files
} wm_entry;

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static int cmp_wm_tensor(const void *a, const void *b) {
  return strcmp(((const wm_entry *)a)->tensor, ((const wm_entry *)b)->tensor);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int set_alloc_tensors(st_set *s, int n) {
  s->order = malloc(sizeof *s->order * ((size_t)n + 1));
  s->by_name = malloc(sizeof *s->by_name * ((size_t)n + 1));
  return s->order && s->by_name ? 0 : -1;
}

static int set_add_file(st_set *s, const char *path, pith_err *err) {
  st_file **files = realloc(s->files, sizeof *files * ((size_t)s->nfiles + 1));
  if (!files) return pith_fail(err, "%s: out of memory", path);
  s->files = files;
  s->files[s->nfiles] = st_open(path, err);
  return s->files[s->nfiles] ? (s->nfiles++, 0) : -1;
}

static int set_open_single(st_set *s, const char *path, pith_err *err) {
  if (set_add_file(s, path, err) != 0) return -1;
  const st_file *f = s->files[0];
  if (set_alloc_tensors(s, f->count) != 0) return pith_fail(err, "%s: out of memory", path);
  for (int i = 0; i < f->count; i++) s->order[i] = &f->entries[i].t;
  memcpy(s->by_name, f->by_name, sizeof *s->by_name * (size_t)f->count);
  s->count = f->count;
  for (int i = 0; i < f->meta.count; i++)
    if (meta_set(&s->meta, f->meta.kv[2 * i], f->meta.kv[2 * i + 1]) != 0)
      return pith_fail(err, "%s: out of memory", path);
  return 0;
}

// Read "weight_map" into a name-sorted wm list.
static wm_entry *index_weight_map(const char *ipath, const cJSON *root, int *n, pith_err *err) {
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(wm)) {
    pith_fail(err, "%s: no \"weight_map\" object", ipath);
    return NULL;
  }
  wm_entry *e = calloc((size_t)cJSON_GetArraySize(wm) + 1, sizeof *e);
  if (!e) {
    pith_fail(err, "%s: out of memory", ipath);
    return NULL;
  }
  *n = 0;
  for (const cJSON *kv = wm->child; kv; kv = kv->next) {
    const char *sh = cJSON_IsString(kv) ? kv->valuestring : NULL;
    if (!sh || !*sh || sh[0] == '/' || strstr(sh, "..")) {
      pith_fail(err, "%s: weight_map entry for '%s' is not a shard file name in the folder",
                ipath, kv->string);
      free(e);
      return NULL;
    }
    e[*n].tensor = kv->string;
    e[(*n)++].shard = sh;
  }
  qsort(e, (size_t)*n, sizeof *e, cmp_wm_tensor);
  for (int i = 1; i < *n; i++)
    if (!strcmp(e[i - 1].tensor, e[i].tensor)) {
      pith_fail(err, "%s: tensor '%s' appears twice in weight_map", ipath, e[i].tensor);
      free(e);
      return NULL;
    }
  return e;
}

static int shard_missing(const char *ipath, const char *shard, const wm_entry *wm, int n,
                         pith_err *err) {
  const char *who = "";
  for (int j = 0; j < n; j++)
    if (!strcmp(wm[j].shard, shard)) { who = wm[j].tensor; break; }
  return pith_fail(err, "%s: shard '%s' (listed for tensor '%s') is missing from the folder",
                   ipath, shard, who);
}

// Open each distinct shard once, in file name order, and point each wm entry at its file.
static int index_open_shards(st_set *s, const char *dir, const char *ipath, wm_entry *wm, int n,
                             pith_err *err) {
  const char **names = malloc(sizeof *names * ((size_t)n + 1));
  if (!names) return pith_fail(err, "%s: out of memory", ipath);
  for (int i = 0; i < n; i++) names[i] = wm[i].shard;
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  int nd = 0, rc = 0;
  for (int i = 0; i < n; i++)
    if (nd == 0 || strcmp(names[nd - 1], names[i])) names[nd++] = names[i];
  for (int i = 0; i < nd && rc == 0; i++) {
    char *p = path_join(dir, names[i]);
    if (!p) rc = pith_fail(err, "%s: out of memory", ipath);
    else if (!pith_is_file(p)) rc = shard_missing(ipath, names[i], wm, n, err);
    else rc = set_add_file(s, p, err);
    free(p);
  }
  for (int i = 0; rc == 0 && i < n; i++) {
    const char **hit = bsearch(&wm[i].shard, names, (size_t)nd, sizeof *names, cmp_str);
    wm[i].file = (int)(hit - names);
  }
  free(names);
  return rc;
}

// Every listed tensor is in its shard; the set holds them in shard order, then file order.
static int index_collect(st_set *s, const char *ipath, wm_entry *wm, int n, pith_err *err) {
  for (int i = 0; i < n; i++)
    if (!st_find(s->files[wm[i].file], wm[i].tensor))
      return pith_fail(err, "%s: tensor '%s' is listed in shard '%s' but that shard has no such "
                       "tensor", ipath, wm[i].tensor, st_path(s->files[wm[i].file]));
  if (set_alloc_tensors(s, n) != 0) return pith_fail(err, "%s: out of memory", ipath);
  for (int fi = 0; fi < s->nfiles; fi++)
    for (int j = 0; j < s->files[fi]->count; j++) {
      const st_tensor *t = st_at(s->files[fi], j);
      wm_entry key = {.tensor = t->name};
      const wm_entry *hit = bsearch(&key, wm, (size_t)n, sizeof *wm, cmp_wm_tensor);
      if (hit && hit->file == fi) s->order[s->count++] = t;
    }
  memcpy(s->by_name, s->order, sizeof *s->order * (size_t)s->count);
  name_index_sort(s->by_name, s->count);  // unique: weight_map names are
  return 0;
}

// The index's "metadata": strings as they are, numbers in decimal, anything else skipped.
static int index_metadata(st_set *s, const char *ipath, const cJSON *root, pith_err *err) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "metadata");
  for (const cJSON *kv = cJSON_IsObject(m) ? m->child : NULL; kv; kv = kv->next) {
    char num[64];
    const char *v = NULL;
    if (cJSON_IsString(kv)) v = kv->valuestring;
    else if (cJSON_IsNumber(kv)) {
      double d = kv->valuedouble;
      snprintf(num, sizeof num, fabs(d) < JSON_MAX_EXACT && d == floor(d) ? "%.0f" : "%.17g", d);
      v = num;
    }
    if (v && meta_set(&s->meta, kv->string, v) != 0)
      return pith_fail(err, "%s: out of memory", ipath);
  }
  return 0;
}

static int set_open_sharded(st_set *s, const char *dir, const char *ipath, pith_err *err) {
  size_t len;
  char *text = pith_read_file(ipath, &len, err);
  if (!text) return -1;
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return pith_fail(err, "%s: not a JSON object", ipath);
  }
  int n = 0, rc = -1;
  wm_entry *wm = index_weight_map(ipath, root, &n, err);
  if (wm && index_open_shards(s, dir, ipath, wm, n, err) == 0 &&
      index_collect(s, ipath, wm, n, err) == 0)
    rc = index_metadata(s, ipath, root, err);
  free(wm);
  cJSON_Delete(root);
  return rc;
}

static int set_load(st_set *s, const char *dir, pith_err *err) {
  if (pith_is_file(dir)) return set_open_single(s, dir, err);
  char *ipath = path_join(dir, "model.safetensors.index.json");
  char *mpath = path_join(dir, "model.safetensors");
  int rc;
  if (!ipath || !mpath) rc = pith_fail(err, "%s: out of memory", dir);
  else if (pith_is_file(ipath)) rc = set_open_sharded(s, dir, ipath, err);
  else if (pith_is_file(mpath)) rc = set_open_single(s, mpath, err);
  else rc = pith_fail(err, "%s: no model.safetensors or model.safetensors.index.json there", dir);
  free(ipath);
  free(mpath);
  return rc;
}

st_set *st_set_open(const char *dir, pith_err *err) {
  st_set *s = calloc(1, sizeof *s);
  if (!s) {
    pith_fail(err, "%s: out of memory", dir);
    return NULL;
  }
  if (set_load(s, dir, err) != 0) {
    st_set_close(s);
    return NULL;
  }
  return s;
}

void st_set_close(st_set *s) {
  if (!s) return;
  for (int i = 0; i < s->nfiles; i++) st_close(s->files[i]);
  free(s->files);
  free(s->order);
  free(s->by_name);
  meta_free(&s->meta);
  free(s);
}

int st_set_count(const st_set *s) { return s->count; }

const st_tensor *st_set_at(const st_set *s, int i) {
  return i >= 0 && i < s->count ? s->order[i] : NULL;
}

const st_tensor *st_set_find(const st_set *s, const char *name) {
  return name_index_find(s->by_name, s->count, name);
}

const char *st_set_metadata(const st_set *s, const char *key) { return meta_get(&s->meta, key); }
int st_set_nfiles(const st_set *s) { return s->nfiles; }

const st_file *st_set_file(const st_set *s, int i) {
  return i >= 0 && i < s->nfiles ? s->files[i] : NULL;
}

// ---- writer -------------------------------------------------------------------------------------

typedef struct {
  char *name;                   // owned copy
  st_dtype dtype;               // element type
  int ndim;                     // number of dimensions
  int64_t shape[ST_MAX_DIMS];   // (ndim) sizes
  const void *data;             // (nbytes) bytes to write: `owned`, or the caller's
  size_t nbytes;                // prod(shape) * dtype size
  void *owned;                  // our copy for st_writer_add, NULL for st_writer_add_ref
} st_wtensor;

struct st_writer {
  st_wtensor *t;    // (count) tensors in the order added
  int count, cap;   // used and allocated entries of t
  meta_list meta;   // "__metadata__" in the order keys were first set
  int *slots;       // (nslots) hash table of names, open addressing: index into t + 1, 0 empty
  size_t nslots;    // a power of two, at least twice count once anything was added
};

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->count; i++) {
    free(w->t[i].name);
    free(w->t[i].owned);
  }
  free(w->t);
  free(w->slots);
  meta_free(&w->meta);
  free(w);
}

static uint64_t name_hash(const char *s) {  // FNV-1a
  uint64_t h = 14695981039346656037ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

// The slot holding `name`, or the empty slot where it would go.
static size_t writer_slot(const st_writer *w, const char *name) {
  size_t i = (size_t)name_hash(name) & (w->nslots - 1);
  while (w->slots[i] && strcmp(w->t[w->slots[i] - 1].name, name)) i = (i + 1) & (w->nslots - 1);
  return i;
}

// Keep the table at most half full, counting one more name.
static int writer_grow_slots(st_writer *w) {
  if ((size_t)w->count * 2 + 2 <= w->nslots) return 0;
  size_t n = w->nslots ? 2 * w->nslots : 64;
  int *slots = calloc(n, sizeof *slots);
  if (!slots) return -1;
  free(w->slots);
  w->slots = slots;
  w->nslots = n;
  for (int i = 0; i < w->count; i++) w->slots[writer_slot(w, w->t[i].name)] = i + 1;
  return 0;
}

static int writer_check(const st_writer *w, const char *name, st_dtype dtype, int ndim,
                        const int64_t *shape, const void *data, uint64_t *nbytes, pith_err *err) {
  if (!name || !*name || !strcmp(name, "__metadata__"))
    return pith_fail(err, "st_writer_add: bad tensor name '%s'", name ? name : "(null)");
  if (!dtype_ok(dtype))
    return pith_fail(err, "st_writer_add: tensor '%s': unknown dtype %d", name, (int)dtype);
  if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
    return pith_fail(err, "st_writer_add: tensor '%s': ndim %d (want 0..%d and a shape)", name,
                     ndim, ST_MAX_DIMS);
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0)
      return pith_fail(err, "st_writer_add: tensor '%s': dimension %d is %lld", name, i,
                       (long long)shape[i]);
  if (shape_bytes(shape, ndim, st_dtype_size(dtype), nbytes) != 0 || *nbytes > SIZE_MAX / 2)
    return pith_fail(err, "st_writer_add: tensor '%s': size overflows", name);
  if (*nbytes && !data) return pith_fail(err, "st_writer_add: tensor '%s': data is NULL", name);
  if (w->nslots && w->slots[writer_slot(w, name)])
    return pith_fail(err, "st_writer_add: tensor '%s' added twice", name);
  return 0;
}

static int writer_push(st_writer *w, const char *name, st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, int copy, pith_err *err) {
  uint64_t nbytes = 0;
  if (!w) return pith_fail(err, "st_writer_add: no writer");
  if (writer_check(w, name, dtype, ndim, shape, data, &nbytes, err) != 0) return -1;
  if (writer_grow_slots(w) != 0) return pith_fail(err, "st_writer_add: out of memory");
  if (w->count == w->cap) {
    int cap = w->cap ? 2 * w->cap : 16;
    st_wtensor *t = realloc(w->t, sizeof *t * (size_t)cap);
    if (!t) return pith_fail(err, "st_writer_add: out of memory");
    w->t = t;
    w->cap = cap;
  }
  st_wtensor e = {.name = xstrdup(name), .dtype = dtype, .ndim = ndim, .nbytes = nbytes};
  if (ndim) memcpy(e.shape, shape, sizeof *shape * (size_t)ndim);
  e.data = data;
  if (copy && nbytes) e.data = e.owned = malloc(nbytes);
  if (!e.name || (copy && nbytes && !e.owned)) {
    free(e.name);
    free(e.owned);
    return pith_fail(err, "st_writer_add: tensor '%s': out of memory", name);
  }
  if (e.owned) memcpy(e.owned, data, nbytes);
  w->t[w->count++] = e;
  w->slots[writer_slot(w, e.name)] = w->count;
  return 0;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data, pith_err *err) {
  return writer_push(w, name, dtype, ndim, shape, data, 1, err);
}

int st_writer_add_ref(st_writer *w, const char *name, st_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, pith_err *err) {
  return writer_push(w, name, dtype, ndim, shape, data, 0, err);
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value, pith_err *err) {
  if (!w || !key || !value) return pith_fail(err, "st_writer_set_metadata: NULL argument");
  if (meta_set(&w->meta, key, value) != 0)
    return pith_fail(err, "st_writer_set_metadata: out of memory");
  return 0;
}

// A growing string for the header.
typedef struct {
  char *p;          // bytes so far (not NUL-terminated)
  size_t len, cap;  // used and allocated bytes
  int oom;          // set when a growth failed; later appends do nothing
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v) {
  char num[24];
  sb_put(b, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v));
}

// s as a JSON string literal: quotes, backslashes and control bytes escaped; UTF-8 kept as is.
static void sb_json(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    char esc[8];
    if (*c == '"' || *c == '\\') sb_put(b, (const char[]){'\\', (char)*c}, 2);
    else if (*c < 0x20) sb_put(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", *c));
    else sb_put(b, (const char *)c, 1);
  }
  sb_put(b, "\"", 1);
}

// Writer order, as the reference library: dtype alignment (rank), largest first, then name.
static int cmp_write_order(const void *a, const void *b) {
  const st_wtensor *x = *(const st_wtensor *const *)a, *y = *(const st_wtensor *const *)b;
  if (x->dtype != y->dtype) return dtypes[y->dtype].rank - dtypes[x->dtype].rank;
  return strcmp(x->name, y->name);
}

static void header_tensor(sbuf *b, const st_wtensor *t, uint64_t begin) {
  sb_json(b, t->name);
  sb_str(b, ":{\"dtype\":\"");
  sb_str(b, dtypes[t->dtype].name);
  sb_str(b, "\",\"shape\":[");
  for (int i = 0; i < t->ndim; i++) {
    if (i) sb_str(b, ",");
    sb_u64(b, (uint64_t)t->shape[i]);
  }
  sb_str(b, "],\"data_offsets\":[");
  sb_u64(b, begin);
  sb_str(b, ",");
  sb_u64(b, begin + t->nbytes);
  sb_str(b, "]}");
}

// The JSON header for tensors in `order`, padded with spaces to a multiple of 8 bytes.
static void header_build(sbuf *b, const st_writer *w, const st_wtensor *const *order) {
  sb_str(b, "{");
  if (w->meta.count) {
    sb_str(b, "\"__metadata__\":{");
    for (int i = 0; i < w->meta.count; i++) {
      if (i) sb_str(b, ",");
      sb_json(b, w->meta.kv[2 * i]);
      sb_str(b, ":");
      sb_json(b, w->meta.kv[2 * i + 1]);
    }
    sb_str(b, "}");
  }
  uint64_t off = 0;
  for (int i = 0; i < w->count; i++) {
    if (i || w->meta.count) sb_str(b, ",");
    header_tensor(b, order[i], off);
    off += order[i]->nbytes;
  }
  sb_str(b, "}");
  while (b->len % 8) sb_str(b, " ");
}

static int write_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int write_body(int fd, const st_writer *w, const st_wtensor *const *order,
                      const sbuf *hdr) {
  uint8_t len[8];
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hdr->len >> (8 * i));
  if (write_all(fd, len, 8) != 0 || write_all(fd, hdr->p, hdr->len) != 0) return -1;
  for (int i = 0; i < w->count; i++)
    if (write_all(fd, order[i]->data, order[i]->nbytes) != 0) return -1;
  return fsync(fd);
}

// Make the rename durable: fsync the folder that holds `path` (best effort).
static void sync_parent(const char *path) {
  char *dir = xstrdup(path);
  if (!dir) return;
  char *slash = strrchr(dir, '/');
  const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

static int write_atomic(const char *path, const st_writer *w, const st_wtensor *const *order,
                        const sbuf *hdr, pith_err *err) {
  size_t n = strlen(path) + 32;
  char *tmp = malloc(n);
  if (!tmp) return pith_fail(err, "%s: out of memory", path);
  snprintf(tmp, n, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    pith_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  int rc = write_body(fd, w, order, hdr);
  int e = errno;
  if (close(fd) != 0 && rc == 0) rc = -1, e = errno;
  if (rc == 0 && rename(tmp, path) != 0) rc = -1, e = errno;
  if (rc != 0) {
    unlink(tmp);
    pith_fail(err, "%s: write failed: %s", path, strerror(e));
  } else sync_parent(path);
  free(tmp);
  return rc;
}

int st_writer_finish(st_writer *w, const char *path, pith_err *err) {
  if (!w || !path) return pith_fail(err, "st_writer_finish: NULL argument");
  const st_wtensor **order = malloc(sizeof *order * ((size_t)w->count + 1));
  if (!order) return pith_fail(err, "%s: out of memory", path);
  for (int i = 0; i < w->count; i++) order[i] = &w->t[i];
  qsort(order, (size_t)w->count, sizeof *order, cmp_write_order);
  sbuf hdr = {0};
  header_build(&hdr, w, order);
  int rc = hdr.oom ? pith_fail(err, "%s: out of memory", path)
                   : write_atomic(path, w, order, &hdr, err);
  free(hdr.p);
  free((void *)order);
  return rc;
}
