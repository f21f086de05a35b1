// llama2c: a llama2.c v0 checkpoint and its tokenizer.bin into a Hugging Face LLaMA folder.
// See llama2c.h for the formats. The file reads top to bottom: the checkpoint header and layout,
// the tokenizer (vocabulary, merges, JSON), the folder (files, atomic publish), the entry points.
#define _GNU_SOURCE  // nftw, qsort_r
#include "llama2c.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "sha256.h"
#include "strbuf.h"
#include "utf8.h"

#define HEADER_BYTES 28              // 7 int32
#define VERSIONED_MAGIC 0x616b3432u  // "ak42": llama2.c's versioned exports (v1, v2), not v0
#define CONVERTER_VERSION "1"        // bump when the output of the converter changes

// Bounds on the header that keep every size below 2^53 bytes, so no computation can overflow.
enum { MAX_DIM = 1 << 16, MAX_HIDDEN = 1 << 20, MAX_LAYERS = 1 << 12, MAX_VOCAB = 1 << 24, MAX_SEQ = 1 << 24 };

static const char *const FIELD[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};

// ---------------------------------------------------------------------------------------------
// The checkpoint: header and layout
// ---------------------------------------------------------------------------------------------

// Offsets (in floats, from the end of the header) of each weight array, as llama2.c lays them out.
typedef struct {
  uint64_t emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls, end;
} layout;

static layout layout_of(const llama2c_config *c, bool shared) {
  uint64_t d = (uint64_t)c->dim, kv = (uint64_t)c->kv_dim, h = (uint64_t)c->hidden_dim;
  uint64_t L = (uint64_t)c->n_layers, V = (uint64_t)c->vocab_size;
  layout o;
  o.emb = 0;
  o.rms_att = o.emb + V * d;
  o.wq = o.rms_att + L * d;
  o.wk = o.wq + L * d * d;
  o.wv = o.wk + L * kv * d;
  o.wo = o.wv + L * kv * d;
  o.rms_ffn = o.wo + L * d * d;
  o.w1 = o.rms_ffn + L * d;
  o.w2 = o.w1 + L * h * d;
  o.w3 = o.w2 + L * d * h;
  o.rms_final = o.w3 + L * h * d;
  o.freq = o.rms_final + d;
  o.wcls = o.freq + (uint64_t)c->seq_len * (uint64_t)c->head_dim;  // real and imag, head_dim/2 each
  o.end = o.wcls + (shared ? 0 : V * d);
  return o;
}

static int header_parse(const char *path, const int32_t h[7], llama2c_config *c, pith_err *err) {
  static const int32_t max[7] = {MAX_DIM, MAX_HIDDEN, MAX_LAYERS, MAX_DIM, MAX_DIM, MAX_VOCAB, MAX_SEQ};
  if ((uint32_t)h[0] == VERSIONED_MAGIC)
    return pith_fail(err, "%s: a llama2.c versioned export (magic \"ak42\", version %d); only the legacy v0 "
                          "format is supported (llama2.c export.py --version 0)", path, h[1]);
  for (int i = 0; i < 7; i++) {
    int64_t v = i == 5 ? llabs((long long)h[i]) : h[i];
    if (v < 1 || v > max[i])
      return pith_fail(err, "%s: not a llama2.c v0 checkpoint: header %s is %d (want %s1..%d)", path, FIELD[i], h[i],
                       i == 5 ? "+-" : "", max[i]);
  }
  *c = (llama2c_config){.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                        .vocab_size = h[5] < 0 ? -h[5] : h[5], .seq_len = h[6], .shared_classifier = h[5] > 0};
  if (c->dim % c->n_heads)
    return pith_fail(err, "%s: bad llama2.c header: dim %d is not a multiple of n_heads %d", path, c->dim, c->n_heads);
  if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
    return pith_fail(err, "%s: bad llama2.c header: n_heads %d is not a multiple of n_kv_heads %d", path, c->n_heads,
                     c->n_kv_heads);
  c->head_dim = c->dim / c->n_heads;
  c->kv_dim = c->n_kv_heads * c->head_dim;
  if (c->head_dim % 2)
    return pith_fail(err, "%s: bad llama2.c header: head_dim %d (dim / n_heads) is odd; RoPE rotates pairs", path,
                     c->head_dim);
  layout o = layout_of(c, c->shared_classifier);
  c->file_size = HEADER_BYTES + 4 * o.end;
  c->n_params = o.freq + (c->shared_classifier ? 0 : (uint64_t)c->vocab_size * (uint64_t)c->dim);
  return 0;
}

// The config of the checkpoint open as fd (size bytes), its size checked against the header.
static int config_from_fd(const char *path, int fd, uint64_t size, llama2c_config *c, pith_err *err) {
  int32_t h[7];
  if (size < HEADER_BYTES)
    return pith_fail(err, "%s: file is %llu bytes, too short for a llama2.c header (%d bytes)", path,
                     (unsigned long long)size, HEADER_BYTES);
  if (pread(fd, h, HEADER_BYTES, 0) != HEADER_BYTES)
    return pith_fail(err, "%s: cannot read the header: %s", path, strerror(errno));
  if (header_parse(path, h, c, err)) return -1;
  if (size == c->file_size) return 0;
  uint64_t other = HEADER_BYTES + 4 * layout_of(c, !c->shared_classifier).end;
  char hint[160] = "";
  if (size == other)
    snprintf(hint, sizeof hint, " (the size fits a checkpoint with %s classifier: is the sign of vocab_size right?)",
             c->shared_classifier ? "an unshared" : "a shared");
  return pith_fail(err, "%s: file is %llu bytes, but its header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
                        "n_kv_heads %d, vocab_size %d, seq_len %d, %s classifier) implies %llu: %s%s",
                   path, (unsigned long long)size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                   c->vocab_size, c->seq_len, c->shared_classifier ? "shared" : "unshared",
                   (unsigned long long)c->file_size,
                   size < c->file_size ? "truncated or not a llama2.c v0 checkpoint"
                                       : "trailing bytes: not a llama2.c v0 checkpoint", hint);
}

static int open_checkpoint(const char *path, int *fd, uint64_t *size, pith_err *err) {
  struct stat st;
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return pith_fail(err, "%s: cannot open: %s", path, strerror(errno));
  if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(*fd);
    *fd = -1;
    return pith_fail(err, "%s: not a regular file", path);
  }
  *size = (uint64_t)st.st_size;
  return 0;
}

int llama2c_read_config(const char *checkpoint, llama2c_config *cfg, pith_err *err) {
  int fd;
  uint64_t size;
  if (!checkpoint || !cfg) return pith_fail(err, "llama2c_read_config: NULL argument");
  if (open_checkpoint(checkpoint, &fd, &size, err)) return -1;
  int rc = config_from_fd(checkpoint, fd, size, cfg, err);
  close(fd);
  return rc;
}

// HF row (h*hd + half*hd/2 + i) <- llama2.c row (h*hd + 2*i + half). src, dst: (n_heads*hd, cols).
static void permute_rope(const float *src, float *dst, int n_heads, int hd, int cols) {
  for (int h = 0; h < n_heads; h++)
    for (int half = 0; half < 2; half++)
      for (int i = 0; i < hd / 2; i++)
        memcpy(dst + ((size_t)h * hd + (size_t)half * (hd / 2) + i) * cols,
               src + ((size_t)h * hd + 2 * (size_t)i + half) * cols, sizeof(float) * (size_t)cols);
}

// ---------------------------------------------------------------------------------------------
// The tokenizer: pieces in Hugging Face form, merges from the scores
// ---------------------------------------------------------------------------------------------

typedef struct {
  int32_t n;        // tokens
  char **piece;     // (n) NUL-terminated UTF-8, ' ' written as U+2581, ids 0..2 named <unk> <s> </s>
  uint32_t *len;    // (n) bytes of piece
  float *score;     // (n) llama2.c's scores (SentencePiece's)
  int32_t *sorted;  // (n) ids ordered by piece bytes, for lookups
} sp_vocab;

typedef struct {
  int32_t l, r;     // the two pieces merged
  float score;      // score of the merged piece
  uint32_t lc, rc;  // characters in l and r
  uint32_t seq;     // order of generation (the sort is stable on it)
} sp_merge;

static const char SPACE_MARK[] = "\xe2\x96\x81";  // U+2581, SentencePiece's space

static void vocab_free(sp_vocab *v) {
  for (int32_t i = 0; v->piece && i < v->n; i++) free(v->piece[i]);
  free(v->piece), free(v->len), free(v->score), free(v->sorted);
  *v = (sp_vocab){0};
}

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

static int cmp_piece_ids(const void *x, const void *y, void *vocab) {
  const sp_vocab *v = vocab;
  int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
  int c = cmp_bytes(v->piece[a], v->len[a], v->piece[b], v->len[b]);
  return c ? c : (a > b) - (a < b);
}

static int32_t vocab_find(const sp_vocab *v, const char *s, size_t n) {
  int32_t lo = 0, hi = v->n - 1;
  while (lo <= hi) {
    int32_t mid = lo + (hi - lo) / 2, id = v->sorted[mid];
    int c = cmp_bytes(v->piece[id], v->len[id], s, n);
    if (!c) return id;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

// Parse tokenizer.bin (data, len bytes) into v; it must hold exactly `want` tokens.
static int vocab_read(const char *path, const char *data, size_t len, int32_t want, sp_vocab *v, pith_err *err) {
  int32_t max_len, tl, n = 0;
  if (len < 4) return pith_fail(err, "%s: %zu bytes, too short for a llama2.c tokenizer.bin", path, len);
  memcpy(&max_len, data, 4);
  if (max_len < 1 || max_len > (1 << 16))
    return pith_fail(err, "%s: not a llama2.c tokenizer.bin (max_token_length is %d)", path, max_len);
  for (size_t p = 4; p < len; n++) {
    if (len - p < 8) return pith_fail(err, "%s: truncated in the record of token %d (offset %zu)", path, n, p);
    memcpy(&tl, data + p + 4, 4);
    if (tl < 0 || tl > max_len)
      return pith_fail(err, "%s: not a llama2.c tokenizer.bin: token %d has length %d (max_token_length %d)", path, n,
                       tl, max_len);
    if ((size_t)tl > len - p - 8) return pith_fail(err, "%s: truncated in the bytes of token %d", path, n);
    p += 8 + (size_t)tl;
  }
  if (n != want)
    return pith_fail(err, "%s: has %d tokens, but the checkpoint's vocab_size is %d", path, n, want);
  if (n < 3) return pith_fail(err, "%s: has %d tokens; <unk>, <s> and </s> (ids 0, 1, 2) are needed", path, n);
  v->n = n;
  v->piece = calloc((size_t)n, sizeof *v->piece);
  v->len = malloc((size_t)n * sizeof *v->len);
  v->score = malloc((size_t)n * sizeof *v->score);
  v->sorted = malloc((size_t)n * sizeof *v->sorted);
  if (!v->piece || !v->len || !v->score || !v->sorted) return pith_fail(err, "%s: out of memory", path);
  static const char *const special[3] = {"<unk>", "<s>", "</s>"};
  size_t p = 4;
  for (int32_t i = 0; i < n; i++) {
    const char *b = data + p + 8;
    memcpy(&v->score[i], data + p, 4);
    memcpy(&tl, data + p + 4, 4);
    p += 8 + (size_t)tl;
    if (isnan(v->score[i])) return pith_fail(err, "%s: token %d has a NaN score", path, i);
    if (i < 3) {
      v->piece[i] = strdup(special[i]);
      if (!v->piece[i]) return pith_fail(err, "%s: out of memory", path);
      v->len[i] = (uint32_t)strlen(special[i]);
      continue;
    }
    if (tl == 0) return pith_fail(err, "%s: token %d is empty", path, i);
    if (!utf8_valid(b, (size_t)tl))
      return pith_fail(err, "%s: token %d is not valid UTF-8 (a Hugging Face vocabulary needs text)", path, i);
    size_t spaces = 0;
    for (int32_t j = 0; j < tl; j++) spaces += b[j] == ' ';
    char *s = v->piece[i] = malloc((size_t)tl + 2 * spaces + 1);
    if (!s) return pith_fail(err, "%s: out of memory", path);
    for (int32_t j = 0; j < tl; j++) {
      if (b[j] == ' ') memcpy(s, SPACE_MARK, 3), s += 3;
      else *s++ = b[j];
    }
    *s = 0;
    v->len[i] = (uint32_t)(s - v->piece[i]);
  }
  for (int32_t i = 0; i < n; i++) v->sorted[i] = i;
  qsort_r(v->sorted, (size_t)n, sizeof *v->sorted, cmp_piece_ids, v);
  for (int32_t i = 1; i < n; i++) {
    int32_t a = v->sorted[i - 1], b = v->sorted[i];
    if (!cmp_bytes(v->piece[a], v->len[a], v->piece[b], v->len[b]))
      return pith_fail(err, "%s: tokens %d and %d are both '%s' (a Hugging Face vocabulary needs unique pieces)", path,
                       a, b, v->piece[b]);
  }
  return 0;
}

static int cmp_merge_local(const void *x, const void *y) {  // by (left id, right id)
  const sp_merge *a = x, *b = y;
  if (a->l != b->l) return a->l < b->l ? -1 : 1;
  return (a->r > b->r) - (a->r < b->r);
}

static int cmp_merge_rank(const void *x, const void *y) {  // score, then lengths, descending; stable
  const sp_merge *a = x, *b = y;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  if (a->lc != b->lc) return a->lc > b->lc ? -1 : 1;
  if (a->rc != b->rc) return a->rc > b->rc ? -1 : 1;
  return (a->seq > b->seq) - (a->seq < b->seq);
}

// transformers' SentencePiece BPE converter: for each piece (in id order), every split at a
// character boundary into two pieces of the vocabulary is a merge (a piece's splits ordered by
// their ids); then all merges ordered by the merged piece's score, then the left and the right
// part's lengths in characters, all descending (a stable sort). *out: malloc'd (*n_out).
static int merges_build(const sp_vocab *v, sp_merge **out, size_t *n_out) {
  size_t n = 0, cap = (size_t)v->n * 2 + 16;
  sp_merge *m = malloc(cap * sizeof *m);
  if (!m) return -1;
  for (int32_t id = 0; id < v->n; id++) {
    const char *s = v->piece[id];
    size_t first = n;
    for (uint32_t k = 1; k < v->len[id]; k++) {
      if (((unsigned char)s[k] & 0xC0) == 0x80) continue;  // inside a character
      int32_t l = vocab_find(v, s, k), r = vocab_find(v, s + k, v->len[id] - k);
      if (l < 0 || r < 0) continue;
      if (n == cap) {
        sp_merge *g = realloc(m, (cap *= 2) * sizeof *m);
        if (!g) { free(m); return -1; }
        m = g;
      }
      m[n++] = (sp_merge){l, r, v->score[id], (uint32_t)utf8_count(s, k), (uint32_t)utf8_count(s + k, v->len[id] - k), 0};
    }
    qsort(m + first, n - first, sizeof *m, cmp_merge_local);
  }
  for (size_t i = 0; i < n; i++) m[i].seq = (uint32_t)i;
  qsort(m, n, sizeof *m, cmp_merge_rank);
  *out = m;
  *n_out = n;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// JSON text
// ---------------------------------------------------------------------------------------------

static void added_token_json(strbuf *b, int32_t id, const char *content) {
  strbuf_printf(b, "{\"id\": %d, \"content\": ", id);
  strbuf_add_json(b, content, strlen(content));
  strbuf_adds(b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}");
}

static void tokenizer_json(strbuf *b, const sp_vocab *v, const sp_merge *m, size_t n_merges) {
  strbuf_adds(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n");
  for (int32_t i = 0; i < 3; i++) {
    strbuf_adds(b, "    ");
    added_token_json(b, i, v->piece[i]);
    strbuf_adds(b, i < 2 ? ",\n" : "\n");
  }
  strbuf_adds(b, "  ],\n");
  strbuf_adds(b, "  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}, "
             "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]},\n");
  strbuf_adds(b, "  \"pre_tokenizer\": null,\n");
  strbuf_adds(b, "  \"post_processor\": {\"type\": \"TemplateProcessing\", "
             "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
             "\"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
             "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
             "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},\n");
  strbuf_adds(b, "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xe2\x96\x81\"}, "
             "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, "
             "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},\n");
  strbuf_adds(b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": \"<unk>\",\n"
             "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": true,\n"
             "    \"byte_fallback\": true,\n    \"ignore_merges\": false,\n    \"vocab\": {\n");
  for (int32_t i = 0; i < v->n; i++) {
    strbuf_adds(b, "      ");
    strbuf_add_json(b, v->piece[i], v->len[i]);
    strbuf_printf(b, ": %d%s\n", i, i + 1 < v->n ? "," : "");
  }
  strbuf_adds(b, "    },\n    \"merges\": [\n");
  // "left right": no piece holds a ' ' (it became U+2581), so the form every tokenizers version
  // reads is unambiguous.
  strbuf pair = {0};
  for (size_t i = 0; i < n_merges; i++) {
    pair.n = 0;
    strbuf_add(&pair, v->piece[m[i].l], v->len[m[i].l]);
    strbuf_add(&pair, " ", 1);
    strbuf_add(&pair, v->piece[m[i].r], v->len[m[i].r]);
    if (pair.oom) b->oom = 1;
    strbuf_adds(b, "      ");
    if (!pair.oom) strbuf_add_json(b, pair.p, pair.n);
    strbuf_adds(b, i + 1 < n_merges ? ",\n" : "\n");
  }
  strbuf_free(&pair);
  strbuf_adds(b, "    ]\n  }\n}\n");
}

static void tokenizer_config_json(strbuf *b, const sp_vocab *v, const llama2c_config *c) {
  strbuf_adds(b, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"added_tokens_decoder\": {\n");
  for (int32_t i = 0; i < 3; i++) {
    strbuf_printf(b, "    \"%d\": {\"content\": ", i);
    strbuf_add_json(b, v->piece[i], strlen(v->piece[i]));
    strbuf_adds(b, ", \"lstrip\": false, \"normalized\": false, \"rstrip\": false, \"single_word\": false, \"special\": true}");
    strbuf_adds(b, i < 2 ? ",\n" : "\n");
  }
  strbuf_adds(b, "  },\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n  \"pad_token\": null,\n"
             "  \"clean_up_tokenization_spaces\": false,\n");
  strbuf_printf(b, "  \"model_max_length\": %d,\n", c->seq_len);
  // Not "LlamaTokenizer": transformers 5 rebuilds that class from vocab and merges with a Metaspace
  // pre-tokenizer, which adds no "▁" before a text that starts with a space; llama2.c always adds
  // one, as this tokenizer.json's Prepend normalizer does. The generic class uses the file as is.
  strbuf_adds(b, "  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n");
}

static void config_json(strbuf *b, const llama2c_config *c) {
  strbuf_printf(b, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n");
  strbuf_printf(b, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n", c->dim,
            c->hidden_dim, c->n_layers);
  strbuf_printf(b, "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n", c->n_heads,
            c->n_kv_heads, c->head_dim);
  strbuf_printf(b, "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n", c->vocab_size, c->seq_len);
  strbuf_printf(b, "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n  \"rope_scaling\": null,\n");
  strbuf_printf(b, "  \"tie_word_embeddings\": %s,\n", c->shared_classifier ? "true" : "false");
  strbuf_printf(b, "  \"hidden_act\": \"silu\",\n  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n"
               "  \"mlp_bias\": false,\n  \"initializer_range\": 0.02,\n  \"pretraining_tp\": 1,\n  \"use_cache\": true,\n");
  strbuf_printf(b, "  \"torch_dtype\": \"float32\",\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
}

// ---------------------------------------------------------------------------------------------
// The folder
// ---------------------------------------------------------------------------------------------

static void sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

static void sync_parent_of(const char *path) {
  char dir[4096];
  sync_dir(pith_parent_dir(path, dir, sizeof dir));
}

static bool path_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static int write_json(const char *dir, const char *name, const strbuf *b, pith_err *err) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (!strbuf_ok(b)) return pith_fail(err, "%s: out of memory", path);
  return pith_write_file_atomic(path, b->p, b->n, err);
}

typedef struct {
  const char *checkpoint, *tokenizer_bin;
  const llama2c_config *c;
  const float *w;             // the weights: the mapped checkpoint past its header
  const char *tok_data;       // (tok_len) tokenizer.bin's bytes
  size_t tok_len;
  const sp_vocab *vocab;
  const sp_merge *merges;     // (n_merges)
  size_t n_merges;
  char source_sha[SHA256_HEX_SIZE], tokenizer_sha[SHA256_HEX_SIZE];
  llama2c_progress_fn progress;
  void *ctx;
} job;

static void say(const job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const job *j, const char *fmt, ...) {
  if (!j->progress) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  j->progress(j->ctx, line);
}

// model.safetensors in dir: Hugging Face LLaMA names; wq and wk permuted for HF's RoPE.
static int write_weights(const job *j, const char *dir, pith_err *err) {
  const llama2c_config *c = j->c;
  layout o = layout_of(c, c->shared_classifier);
  int64_t d = c->dim, kv = c->kv_dim, h = c->hidden_dim, V = c->vocab_size;
  size_t qk_floats = (size_t)c->n_layers * (size_t)(d + kv) * (size_t)d;
  float *qk = malloc(qk_floats * sizeof *qk);
  st_writer *w = st_writer_new();
  char path[4400], name[128];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  int rc = !qk || !w ? pith_fail(err, "%s: out of memory (%zu MB for the permuted wq and wk)", path,
                                 qk_floats * sizeof *qk >> 20) : 0;
#define ADD(nm, data, ...) \
  (rc = rc ? rc : st_writer_add_ref(w, nm, ST_F32, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}, data, err))
  ADD("model.embed_tokens.weight", j->w + o.emb, V, d);
  for (int32_t l = 0; !rc && l < c->n_layers; l++) {
    float *q = qk + (size_t)l * (size_t)(d + kv) * (size_t)d, *k = q + d * d;
    permute_rope(j->w + o.wq + (uint64_t)l * d * d, q, c->n_heads, c->head_dim, c->dim);
    permute_rope(j->w + o.wk + (uint64_t)l * kv * d, k, c->n_kv_heads, c->head_dim, c->dim);
#define LAYER(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
    ADD(LAYER("input_layernorm.weight"), j->w + o.rms_att + (uint64_t)l * d, d);
    ADD(LAYER("self_attn.q_proj.weight"), q, d, d);
    ADD(LAYER("self_attn.k_proj.weight"), k, kv, d);
    ADD(LAYER("self_attn.v_proj.weight"), j->w + o.wv + (uint64_t)l * kv * d, kv, d);
    ADD(LAYER("self_attn.o_proj.weight"), j->w + o.wo + (uint64_t)l * d * d, d, d);
    ADD(LAYER("post_attention_layernorm.weight"), j->w + o.rms_ffn + (uint64_t)l * d, d);
    ADD(LAYER("mlp.gate_proj.weight"), j->w + o.w1 + (uint64_t)l * h * d, h, d);
    ADD(LAYER("mlp.down_proj.weight"), j->w + o.w2 + (uint64_t)l * d * h, d, h);
    ADD(LAYER("mlp.up_proj.weight"), j->w + o.w3 + (uint64_t)l * h * d, h, d);
#undef LAYER
  }
  ADD("model.norm.weight", j->w + o.rms_final, d);
  if (!c->shared_classifier) ADD("lm_head.weight", j->w + o.wcls, V, d);
#undef ADD
  const char *meta[][2] = {
      {"format", "pt"},  // transformers requires it
      {"pith_converter", "pith convert " CONVERTER_VERSION " (llama2.c v0 -> Hugging Face LLaMA, RoPE rows permuted)"},
      {"pith_source_file", pith_base_name(j->checkpoint)},
      {"pith_source_sha256", j->source_sha},
      {"pith_tokenizer_file", pith_base_name(j->tokenizer_bin)},
      {"pith_tokenizer_sha256", j->tokenizer_sha},
  };
  for (size_t i = 0; !rc && i < sizeof meta / sizeof meta[0]; i++) rc = st_writer_set_metadata(w, meta[i][0], meta[i][1], err);
  if (!rc) rc = st_writer_finish(w, path, err);
  if (!rc)
    say(j, "wrote model.safetensors: %d tensors, %.1f MB (f32)",
        2 + 9 * c->n_layers + !c->shared_classifier, (double)c->n_params * 4 / 1e6);
  st_writer_free(w);
  free(qk);
  return rc;
}

static int write_folder(const job *j, const char *dir, pith_err *err) {
  char path[4400];
  strbuf b = {0};
  int rc = 0;
  config_json(&b, j->c);
  rc = write_json(dir, "config.json", &b, err);
  b.n = 0;
  strbuf_adds(&b, "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
  if (!rc) rc = write_json(dir, "generation_config.json", &b, err);
  b.n = 0;
  if (!rc) tokenizer_json(&b, j->vocab, j->merges, j->n_merges);
  if (!rc) rc = write_json(dir, "tokenizer.json", &b, err);
  b.n = 0;
  if (!rc) tokenizer_config_json(&b, j->vocab, j->c);
  if (!rc) rc = write_json(dir, "tokenizer_config.json", &b, err);
  strbuf_free(&b);
  snprintf(path, sizeof path, "%s/tokenizer.bin", dir);
  if (!rc) rc = pith_write_file_atomic(path, j->tok_data, j->tok_len, err);
  if (!rc) say(j, "wrote config.json, generation_config.json, tokenizer.json, tokenizer_config.json, tokenizer.bin");
  if (!rc) rc = write_weights(j, dir, err);
  if (!rc) sync_dir(dir);
  return rc;
}

// Rename the finished `partial` to `out`; with force an existing `out` is moved aside first and
// removed after, so `out` is always either the old folder or the new one.
static int publish(const job *j, const char *partial, const char *out, int force, pith_err *err) {
  if (!path_exists(out)) {
    if (rename(partial, out) != 0) return pith_fail(err, "%s: cannot rename to %s: %s", partial, out, strerror(errno));
    sync_parent_of(out);
    return 0;
  }
  if (!force) return pith_fail(err, "%s: already exists; refusing to overwrite it without force", out);
  char old[4200];
  snprintf(old, sizeof old, "%s.old.%d", out, (int)getpid());
  if (rename(out, old) != 0) return pith_fail(err, "%s: cannot move the existing folder aside: %s", out, strerror(errno));
  if (rename(partial, out) != 0) {
    int e = errno;
    rename(old, out);
    return pith_fail(err, "%s: cannot rename to %s: %s", partial, out, strerror(e));
  }
  sync_parent_of(out);
  if (pith_remove_tree(old) != 0) say(j, "warning: could not remove the replaced folder %s", old);
  else say(j, "replaced the existing %s", out);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

int llama2c_convert_ex(const char *checkpoint, const char *tokenizer_bin, const char *out_dir, int force,
                       llama2c_progress_fn progress, void *ctx, pith_err *err) {
  if (!checkpoint || !tokenizer_bin || !out_dir || !*out_dir) return pith_fail(err, "llama2c_convert: NULL argument");
  char out[4096], partial[4200];
  size_t n = strlen(out_dir);
  while (n > 1 && out_dir[n - 1] == '/') n--;  // "dir/" -> "dir", so the partial is "dir.partial"
  if (n >= sizeof out) return pith_fail(err, "%s: path too long", out_dir);
  memcpy(out, out_dir, n);
  out[n] = 0;
  snprintf(partial, sizeof partial, "%s.partial", out);
  if (!force && path_exists(out))
    return pith_fail(err, "%s: already exists; refusing to overwrite it without force", out);

  job j = {.checkpoint = checkpoint, .tokenizer_bin = tokenizer_bin, .progress = progress, .ctx = ctx};
  llama2c_config c;
  sp_vocab vocab = {0};
  sp_merge *merges = NULL;
  void *map = MAP_FAILED;
  char *tok = NULL;
  int fd = -1, rc;
  uint64_t size = 0;
  rc = open_checkpoint(checkpoint, &fd, &size, err);
  if (!rc) rc = config_from_fd(checkpoint, fd, size, &c, err);
  if (!rc) {
    map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) rc = pith_fail(err, "%s: cannot map: %s", checkpoint, strerror(errno));
  }
  if (!rc) {
    j.c = &c;
    j.w = (const float *)((const char *)map + HEADER_BYTES);
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_hash_buffer(map, (size_t)size, digest);
    sha256_to_hex(digest, j.source_sha);
    say(&j, "checkpoint %s: dim %d, hidden_dim %d, %d layers, %d heads (%d kv), vocab %d, seq_len %d, %s classifier, "
            "%.2fM parameters", checkpoint, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size,
        c.seq_len, c.shared_classifier ? "shared" : "unshared", (double)c.n_params / 1e6);
    tok = pith_read_file(tokenizer_bin, &j.tok_len, err);
    rc = tok ? 0 : -1;
  }
  if (!rc) rc = vocab_read(tokenizer_bin, tok, j.tok_len, c.vocab_size, &vocab, err);
  if (!rc && merges_build(&vocab, &merges, &j.n_merges)) rc = pith_fail(err, "%s: out of memory", tokenizer_bin);
  if (!rc) {
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_hash_buffer(tok, j.tok_len, digest);
    sha256_to_hex(digest, j.tokenizer_sha);
    j.tok_data = tok, j.vocab = &vocab, j.merges = merges;
    say(&j, "tokenizer %s: %d tokens, %zu merges", tokenizer_bin, vocab.n, j.n_merges);
  }
  if (!rc && path_exists(partial)) {
    if (!force)
      rc = pith_fail(err, "%s: exists (left by an interrupted conversion?); remove it, or convert with force", partial);
    else if (pith_remove_tree(partial) != 0)
      rc = pith_fail(err, "%s: cannot remove the stale folder", partial);
  }
  if (!rc && mkdir(partial, 0755) != 0) rc = pith_fail(err, "%s: cannot create: %s", partial, strerror(errno));
  else if (!rc) {
    rc = write_folder(&j, partial, err);
    if (!rc) rc = publish(&j, partial, out, force, err);
    if (rc) pith_remove_tree(partial);
  }
  if (!rc) say(&j, "done: %s", out);
  if (map != MAP_FAILED) munmap(map, (size_t)size);
  if (fd >= 0) close(fd);
  free(tok);
  free(merges);
  vocab_free(&vocab);
  return rc;
}

int llama2c_convert(const char *checkpoint, const char *tokenizer_bin, const char *out_dir, int force, pith_err *err) {
  return llama2c_convert_ex(checkpoint, tokenizer_bin, out_dir, force, NULL, NULL, err);
}
