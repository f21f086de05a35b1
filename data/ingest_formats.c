// ingest formats: the five input formats' parsers (see ingest.h for each one's fields and rules).
// ARXIV, TEXT, QA and MRQA units (one line or block each) are parsed by the workers; a SQuAD file
// is one JSON document, parsed whole on the calling thread and walked a paragraph at a time.
// Every record ends OK, BAD (with a reason), EMPTY or SKIP; nothing here writes or tokenizes.
#include "ingest_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

// ---------------------------------------------------------------------------------------------
// Whitespace

static int is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int ingest_is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_ascii_space(s[i])) return 0;
  return 1;
}

// ARXIV normalisation: runs of ASCII whitespace -> one space, ends trimmed. Returns the length.
static size_t normalize_space(const char *s, size_t n, char *out) {
  size_t w = 0;
  int pending = 0;
  for (size_t i = 0; i < n; i++) {
    if (is_ascii_space(s[i])) {
      pending = w > 0;
      continue;
    }
    if (pending) out[w++] = ' ';
    pending = 0;
    out[w++] = s[i];
  }
  out[w] = 0;
  return w;
}

// ---------------------------------------------------------------------------------------------
// Records and their fields

rec *ingest_rec_push(batch *b, int file, int64_t line, const char *where) {
  if (b->n_recs == b->cap_recs) {
    int cap = b->cap_recs ? 2 * b->cap_recs : 64;
    rec *p = realloc(b->recs, (size_t)cap * sizeof *p);
    if (!p) {
      b->oom = 1;
      return NULL;
    }
    b->recs = p, b->cap_recs = cap;
  }
  rec *r = &b->recs[b->n_recs++];
  *r = (rec){.status = REC_OK, .file = file, .line = line, .where = where};
  return r;
}

void ingest_rec_bad(batch *b, rec *r, const char *fmt, ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  r->status = REC_BAD;
  r->msg = arena_printf(&b->a, "%s", buf);
}

// How a field is named in messages: 'key' at the top of a record, PATH.key below it.
static void field_name(const char *path, const char *key, char *buf, size_t size) {
  if (*path) snprintf(buf, size, "%s.%s", path, key);
  else snprintf(buf, size, "'%s'", key);
}

// The member `key` of o into *v, and its name for messages into name (128 bytes). 1: found; 0:
// absent (or null) and optional; -1: absent and required (*why says so).
static int get_member(batch *b, const json_value *o, const char *path, const char *key, int required,
                      const json_value **v, char *name, const char **why) {
  *v = json_get(o, key);
  field_name(path, key, name, 128);
  if (*v && !((*v)->type == JSON_NULL && !required)) return 1;
  if (!required) return 0;
  *why = arena_printf(&b->a, "%s is missing", name);
  return -1;
}

// A string member `key` of o, or an error in *why: missing (when required), another type, a NUL
// inside, empty (when nonempty). 1: found; 0: absent and optional; -1: error.
static int get_str(batch *b, const json_value *o, const char *path, const char *key, int required, int nonempty,
                   const char **s, size_t *n, const char **why) {
  const json_value *v;
  char name[128];
  *s = NULL, *n = 0;
  int got = get_member(b, o, path, key, required, &v, name, why);
  if (got <= 0) return got;
  if (v->type != JSON_STR) {
    *why = arena_printf(&b->a, "%s is %s, want a string", name, json_type_name(v));
    return -1;
  }
  if (memchr(v->s, 0, v->len)) {
    *why = arena_printf(&b->a, "%s contains a NUL character (\\u0000)", name);
    return -1;
  }
  if (nonempty && v->len == 0) {
    *why = arena_printf(&b->a, "%s is empty", name);
    return -1;
  }
  *s = v->s, *n = v->len;
  return 1;
}

// An integer offset member: 1 found (>= 0), 0 absent (optional), -1 error.
static int get_offset(batch *b, const json_value *o, const char *path, const char *key, int required, int64_t *out,
                      const char **why) {
  const json_value *v;
  char name[128];
  *out = -1;
  int got = get_member(b, o, path, key, required, &v, name, why);
  if (got <= 0) return got;
  if (v->type != JSON_NUM || !v->is_int) {
    *why = arena_printf(&b->a, "%s is %s, want an integer", name, v->type == JSON_NUM ? "a non-integer number" : json_type_name(v));
    return -1;
  }
  if (v->i < 0) {
    *why = arena_printf(&b->a, "%s is %lld, want >= 0", name, (long long)v->i);
    return -1;
  }
  *out = v->i;
  return 1;
}

// ---------------------------------------------------------------------------------------------
// SQUAD: one JSON file of articles > paragraphs > questions

int ingest_squad_open(ingest_ctx *C, const char *path, pith_err *err) {
  size_t len;
  char *text = pith_read_file(path, &len, err);
  if (!text) return -1;
  C->bytes_read += (int64_t)len;
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_hash_buffer(text, len, d);
  sha256_to_hex(d, C->sq_sha);
  C->sq_buf = text, C->sq_len = len, C->sq_line = 1, C->sq_line_off = 0;
  C->sq_art = NULL, C->sq_par = NULL, C->sq_ia = 0;
  C->open = 1;
  if (len == 0 || ingest_is_blank(text, len)) return 0;  // reported as an empty file
  size_t bom = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
  json_parser P;
  const json_value *root = json_parse(&P, &C->sq_arena, text + bom, len - bom);
  if (!root) {
    int64_t line = 1;
    size_t col0 = 0;
    for (size_t i = 0; i < P.err_off; i++)
      if (text[bom + i] == '\n') line++, col0 = i + 1;
    return pith_fail(err, "%s:%lld:%zu: not valid JSON: %s", path, (long long)line, P.err_off - col0 + 1, P.why);
  }
  const json_value *data = json_get(root, "data");
  if (root->type != JSON_OBJ || !data || data->type != JSON_ARR)
    return pith_fail(err, "%s: not a SQuAD file: want a JSON object with a \"data\" list (got %s)", path,
                     root->type != JSON_OBJ ? json_type_name(root) : data ? json_type_name(data) : "no \"data\"");
  C->sq_art = data->child;
  return 0;
}

// SQUAD: the line of byte offset off (offsets only grow while the file is walked).
static int64_t squad_line(ingest_ctx *C, size_t off) {
  off += C->sq_len >= 3 && !memcmp(C->sq_buf, "\xEF\xBB\xBF", 3) ? 3 : 0;  // offsets are past a BOM
  for (; C->sq_line_off < off && C->sq_line_off < C->sq_len; C->sq_line_off++)
    if (C->sq_buf[C->sq_line_off] == '\n') C->sq_line++;
  return C->sq_line;
}

// SQUAD: one answer object into a. -1 and *why when malformed.
static int squad_answer(batch *b, const json_value *o, const char *path, int need_start, rec_answer *a, const char **why) {
  if (!o || o->type != JSON_OBJ) {
    *why = arena_printf(&b->a, "%s is %s, want an object {text, answer_start}", path, json_type_name(o));
    return -1;
  }
  const char *s;
  size_t n;
  if (get_str(b, o, path, "text", 1, 1, &s, &n, why) < 0) return -1;
  if (get_offset(b, o, path, "answer_start", need_start, &a->given, why) < 0) return -1;
  if (!(a->text = arena_strndup(&b->a, s, n))) return *why = "out of memory", -1;
  a->len = n, a->start = -1;
  return 0;
}

// SQUAD: one question of a paragraph whose context was copied to ctx (ctx_len bytes).
static void squad_question(ingest_ctx *C, batch *b, const json_value *qa, const char *where, const char *ctx,
                           size_t ctx_len) {
  rec *r = ingest_rec_push(b, C->cur, squad_line(C, qa->off), where);
  if (!r) return;
  r->text = ctx, r->len = ctx_len;
  const char *s, *why = NULL;
  size_t n;
  if (qa->type != JSON_OBJ) return ingest_rec_bad(b, r, "want an object {id, question, answers}, got %s", json_type_name(qa));
  if (get_str(b, qa, "", "id", 1, 1, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "%s", why);
  r->id = arena_strndup(&b->a, s, n);
  if (get_str(b, qa, "", "question", 1, 1, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "(id %s) %s", r->id, why);
  r->question = arena_strndup(&b->a, s, n), r->qlen = n;
  const json_value *answers = json_get(qa, "answers");
  if (!answers || answers->type != JSON_ARR)
    return ingest_rec_bad(b, r, "(id %s) 'answers' is %s, want a list", r->id, json_type_name(answers));
  r->ans = arena_alloc(&b->a, (answers->n ? answers->n : 1) * sizeof *r->ans);
  if (!r->ans || !r->id || !r->question) return (void)(b->oom = 1);
  int k = 0;
  for (const json_value *a = answers->child; a; a = a->next, k++) {
    char path[48];
    snprintf(path, sizeof path, "answers[%d]", k);
    r->ans[k] = (rec_answer){0};
    if (squad_answer(b, a, path, 1, &r->ans[k], &why) < 0) return ingest_rec_bad(b, r, "(id %s) %s", r->id, why);
  }
  r->n_ans = k;
}

int ingest_squad_next(ingest_ctx *C, batch *b, pith_err *err) {
  while (!C->sq_par) {
    const json_value *art = C->sq_art;
    if (!art) return 0;
    C->sq_art = art->next;
    int ia = C->sq_ia++;
    const json_value *pars = json_get(art, "paragraphs");
    if (art->type != JSON_OBJ || !pars || pars->type != JSON_ARR) {
      rec *r = ingest_rec_push(b, C->cur, squad_line(C, art->off), arena_printf(&b->a, "data[%d]", ia));
      if (!r) return pith_fail(err, "out of memory");
      C->units++;
      if (art->type != JSON_OBJ) ingest_rec_bad(b, r, "an article is %s, want an object with 'paragraphs'", json_type_name(art));
      else ingest_rec_bad(b, r, "'paragraphs' is %s, want a list", json_type_name(pars));
      return 1;
    }
    C->sq_par = pars->child, C->sq_ip = 0;
  }
  const json_value *par = C->sq_par;
  C->sq_par = par->next;
  int ia = C->sq_ia - 1, ip = C->sq_ip++;
  C->units++;
  const char *ctx, *why = NULL;
  size_t ctx_len;
  const json_value *qas = json_get(par, "qas");
  if (par->type != JSON_OBJ || get_str(b, par, "", "context", 1, 1, &ctx, &ctx_len, &why) < 0 || !qas ||
      qas->type != JSON_ARR) {
    rec *r = ingest_rec_push(b, C->cur, squad_line(C, par->off), arena_printf(&b->a, "data[%d].paragraphs[%d]", ia, ip));
    if (!r) return pith_fail(err, "out of memory");
    if (par->type != JSON_OBJ) ingest_rec_bad(b, r, "a paragraph is %s, want an object {context, qas}", json_type_name(par));
    else if (why) ingest_rec_bad(b, r, "%s", why);
    else ingest_rec_bad(b, r, "'qas' is %s, want a list", json_type_name(qas));
    return 1;
  }
  const char *copy = arena_strndup(&b->a, ctx, ctx_len);
  if (!copy) return pith_fail(err, "out of memory");
  b->in_bytes += ctx_len;
  int k = 0;
  for (const json_value *qa = qas->child; qa; qa = qa->next, k++) {
    squad_question(C, b, qa, arena_printf(&b->a, "data[%d].paragraphs[%d].qas[%d]", ia, ip, k), copy, ctx_len);
    if (b->oom) return pith_fail(err, "out of memory");
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Line formats (workers): ARXIV, TEXT, QA, MRQA

static int parse_json_unit(batch *b, rec *r, const raw_unit *u, const json_value **o) {
  json_parser P;
  *o = json_parse(&P, &b->a, u->s, u->len);
  if (!*o) {
    if (b->a.oom) return b->oom = 1, -1;
    ingest_rec_bad(b, r, "bad JSON at column %zu: %s", P.err_off + 1, P.why);
    return -1;
  }
  if ((*o)->type != JSON_OBJ) {
    ingest_rec_bad(b, r, "the line is %s, want a JSON object", json_type_name(*o));
    return -1;
  }
  return 0;
}

static const char *default_id(ingest_ctx *C, batch *b, const raw_unit *u) {
  return arena_printf(&b->a, "%s:%lld", pith_base_name(C->inputs[u->file]), (long long)u->line);
}

// The record of a JSON line unit, its object in *o and its id (the "id" field, else file:line,
// which the ingest report names when report_default): NULL when the line was refused (the record
// says why) or memory ran out.
static rec *json_record(ingest_ctx *C, batch *b, const raw_unit *u, const json_value **o, int report_default) {
  rec *r = ingest_rec_push(b, u->file, u->line, NULL);
  const char *s, *why;
  size_t n;
  if (!r || parse_json_unit(b, r, u, o) < 0) return NULL;
  int has_id = get_str(b, *o, "", "id", 0, 1, &s, &n, &why);
  if (has_id < 0) return ingest_rec_bad(b, r, "%s", why), NULL;
  r->id = has_id ? arena_strndup(&b->a, s, n) : default_id(C, b, u);
  r->id_defaulted = report_default && !has_id;
  return r;
}

static void parse_arxiv(ingest_ctx *C, batch *b, const raw_unit *u) {
  const json_value *o;
  const char *s, *why;
  size_t n;
  rec *r = json_record(C, b, u, &o, 1);
  if (!r) return;
  if (get_str(b, o, "", "abstract", 1, 0, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "(id %s) %s", r->id, why);
  char *text = arena_alloc(&b->a, n + 1);
  if (!text || !r->id) return (void)(b->oom = 1);
  r->text = text, r->len = normalize_space(s, n, text);
  if (r->len == 0) r->status = REC_EMPTY, r->msg = arena_printf(&b->a, "(id %s) empty abstract", r->id);
}

static void parse_text(ingest_ctx *C, batch *b, const raw_unit *u) {
  rec *r = ingest_rec_push(b, u->file, u->line, NULL);
  if (!r) return;
  int64_t bad = utf8_invalid_at(u->s, u->len);
  // Places count bytes from 1, as the JSON formats' columns do.
  const char *unit = C->cfg->text_mode == INGEST_TEXT_BLOCKS ? "block" : "line";
  if (bad >= 0)
    return ingest_rec_bad(b, r, "invalid UTF-8 at byte %lld of the %s (byte 0x%02X)", (long long)bad + 1, unit,
                          (unsigned char)u->s[bad]);
  const char *nul = memchr(u->s, 0, u->len);
  if (nul) return ingest_rec_bad(b, r, "a NUL byte at byte %zu of the %s", (size_t)(nul - u->s) + 1, unit);
  r->id = default_id(C, b, u);
  r->text = u->s, r->len = u->len;
  if (ingest_is_blank(u->s, u->len))
    r->status = REC_EMPTY, r->msg = u->len ? "whitespace-only document" : "empty line";
}

// QA: {id?, context, question, answer | answers, answer_start?}
static void parse_qa(ingest_ctx *C, batch *b, const raw_unit *u) {
  const json_value *o;
  const char *s, *why;
  size_t n;
  rec *r = json_record(C, b, u, &o, 0);
  if (!r) return;
  if (get_str(b, o, "", "context", 1, 1, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "%s", why);
  r->text = s, r->len = n;
  if (get_str(b, o, "", "question", 1, 1, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "%s", why);
  r->question = s, r->qlen = n;
  const json_value *one = json_get(o, "answer"), *many = json_get(o, "answers");
  if (one && many) return ingest_rec_bad(b, r, "both 'answer' and 'answers' are given; keep one");
  if (!one && !many) return ingest_rec_bad(b, r, "'answer' (a string) or 'answers' (a list) is missing");
  if (one) {
    r->ans = arena_alloc(&b->a, sizeof *r->ans);
    if (!r->ans) return (void)(b->oom = 1);
    r->ans[0] = (rec_answer){0};
    if (get_str(b, o, "", "answer", 1, 1, &r->ans[0].text, &r->ans[0].len, &why) < 0 ||
        get_offset(b, o, "", "answer_start", 0, &r->ans[0].given, &why) < 0)
      return ingest_rec_bad(b, r, "%s", why);
    r->n_ans = 1;
    return;
  }
  if (many->type != JSON_ARR) return ingest_rec_bad(b, r, "'answers' is %s, want a list", json_type_name(many));
  if (json_get(o, "answer_start")) return ingest_rec_bad(b, r, "'answer_start' goes inside each answer object when 'answers' is a list");
  r->ans = arena_alloc(&b->a, (many->n ? many->n : 1) * sizeof *r->ans);
  if (!r->ans) return (void)(b->oom = 1);
  int k = 0;
  for (const json_value *a = many->child; a; a = a->next, k++) {
    char path[48];
    snprintf(path, sizeof path, "answers[%d]", k);
    r->ans[k] = (rec_answer){.given = -1, .start = -1};
    if (a->type == JSON_STR) {
      if (a->len == 0) return ingest_rec_bad(b, r, "%s is empty", path);
      if (memchr(a->s, 0, a->len)) return ingest_rec_bad(b, r, "%s contains a NUL character (\\u0000)", path);
      r->ans[k].text = a->s, r->ans[k].len = a->len;
    } else if (squad_answer(b, a, path, 0, &r->ans[k], &why) < 0) {
      return ingest_rec_bad(b, r, "%s", why);
    }
  }
  r->n_ans = k;
}

// MRQA: a header line, then {context, qas: [{qid, question, answers, detected_answers}]}.
static void parse_mrqa_qa(batch *b, rec *r, const json_value *qa) {
  const char *s, *why;
  size_t n;
  if (qa->type != JSON_OBJ) return ingest_rec_bad(b, r, "want an object {qid, question, ...}, got %s", json_type_name(qa));
  if (get_str(b, qa, "", "qid", 1, 1, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "%s", why);
  r->id = s;
  if (get_str(b, qa, "", "question", 1, 1, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "(qid %s) %s", r->id, why);
  r->question = s, r->qlen = n;
  const json_value *det = json_get(qa, "detected_answers"), *ans = json_get(qa, "answers");
  if (det && det->type != JSON_ARR) return ingest_rec_bad(b, r, "(qid %s) 'detected_answers' is %s, want a list", r->id, json_type_name(det));
  if (ans && ans->type != JSON_ARR) return ingest_rec_bad(b, r, "(qid %s) 'answers' is %s, want a list", r->id, json_type_name(ans));
  if (!det && !ans) return ingest_rec_bad(b, r, "(qid %s) neither 'detected_answers' nor 'answers' is given", r->id);
  size_t cap = (det ? det->n : 0) + (ans ? ans->n : 0);
  r->ans = arena_alloc(&b->a, (cap ? cap : 1) * sizeof *r->ans);
  if (!r->ans) return (void)(b->oom = 1);
  int k = 0, i = 0;
  for (const json_value *d = det ? det->child : NULL; d; d = d->next, i++) {
    char path[48];
    snprintf(path, sizeof path, "detected_answers[%d]", i);
    if (d->type != JSON_OBJ) return ingest_rec_bad(b, r, "(qid %s) %s is %s, want an object", r->id, path, json_type_name(d));
    if (get_str(b, d, path, "text", 1, 1, &s, &n, &why) < 0) return ingest_rec_bad(b, r, "(qid %s) %s", r->id, why);
    const json_value *spans = json_get(d, "char_spans"), *first = spans && spans->type == JSON_ARR ? spans->child : NULL;
    if (!first || first->type != JSON_ARR || first->n != 2 || first->child->type != JSON_NUM || !first->child->is_int ||
        first->child->next->type != JSON_NUM || !first->child->next->is_int || first->child->i < 0 ||
        first->child->next->i < first->child->i)
      return ingest_rec_bad(b, r, "(qid %s) %s.'char_spans' must be a non-empty list of [start, end] integer pairs", r->id, path);
    int dup = 0;
    for (int j = 0; j < k; j++) dup |= r->ans[j].len == n && !memcmp(r->ans[j].text, s, n);
    if (!dup) r->ans[k++] = (rec_answer){.text = s, .len = n, .given = first->child->i, .start = -1};
  }
  i = 0;
  for (const json_value *a = ans ? ans->child : NULL; a; a = a->next, i++) {
    if (a->type != JSON_STR) return ingest_rec_bad(b, r, "(qid %s) answers[%d] is %s, want a string", r->id, i, json_type_name(a));
    if (a->len == 0 || memchr(a->s, 0, a->len)) return ingest_rec_bad(b, r, "(qid %s) answers[%d] is empty or has a NUL", r->id, i);
    int dup = 0;
    for (int j = 0; j < k; j++) dup |= r->ans[j].len == a->len && !memcmp(r->ans[j].text, a->s, a->len);
    if (!dup) r->ans[k++] = (rec_answer){.text = a->s, .len = a->len, .given = -1, .start = -1};
  }
  r->n_ans = k;
}

static void parse_mrqa(ingest_ctx *C, batch *b, const raw_unit *u) {
  rec *r = ingest_rec_push(b, u->file, u->line, NULL);
  const json_value *o;
  const char *ctx, *why;
  size_t ctx_len;
  if (!r || parse_json_unit(b, r, u, &o) < 0) return;
  const json_value *qas = json_get(o, "qas");
  if (json_get(o, "header") && !json_get(o, "context")) {
    r->status = REC_SKIP;
    return;
  }
  if (get_str(b, o, "", "context", 1, 1, &ctx, &ctx_len, &why) < 0) return ingest_rec_bad(b, r, "%s", why);
  if (!qas || qas->type != JSON_ARR) return ingest_rec_bad(b, r, "'qas' is %s, want a list", json_type_name(qas));
  if (qas->n == 0) {
    r->status = REC_SKIP;   // a context without questions holds no example
    return;
  }
  int k = 0;
  for (const json_value *qa = qas->child; qa; qa = qa->next, k++) {
    if (k > 0 && !(r = ingest_rec_push(b, u->file, u->line, NULL))) return;
    r->where = arena_printf(&b->a, "qas[%d]", k);
    r->text = ctx, r->len = ctx_len;
    parse_mrqa_qa(b, r, qa);
  }
}

void ingest_parse_unit(ingest_ctx *C, batch *b, const raw_unit *u) {
  switch (C->cfg->format) {
    case INGEST_ARXIV: parse_arxiv(C, b, u); break;
    case INGEST_TEXT: parse_text(C, b, u); break;
    case INGEST_QA: parse_qa(C, b, u); break;
    case INGEST_MRQA: parse_mrqa(C, b, u); break;
    default: break;  // SQUAD: parsed whole by ingest_squad_open / ingest_squad_next
  }
}
