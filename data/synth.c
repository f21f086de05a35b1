// synth: the synthetic facts world (see synth.h). The grammar is a handful of sentence templates
// whose slots ({M}, {P}, ...) are filled per document; the tokenizer's vocabulary is read off the
// same templates, so the two cannot drift apart.
#include "synth.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// The grammar. Slots: M method, P person, L place, I institution, Y year, D benchmark, X accuracy,
// N parameter count, B method built on, C method beaten, K margin, A adjective, O noun, T task.

static const char *const ADJS[] = {"sparse", "robust", "dynamic", "fast", "recurrent", "modular", "convex",
                                   "stochastic", "hierarchical", "spectral", "greedy", "local", "linear",
                                   "causal", "compact", "scalable"};
static const char *const NOUNS[] = {"method", "model", "algorithm", "framework", "approach", "technique",
                                    "estimator", "solver"};
static const char *const TASKS[] = {"graph routing", "protein folding", "image denoising", "language modeling",
                                    "time series forecasting", "code search", "speech recognition",
                                    "weather prediction", "motion planning", "text retrieval", "anomaly detection",
                                    "data compression", "machine translation", "drug discovery", "traffic control",
                                    "music generation"};
static const char *const INSTS[] = {"Institute", "University", "Academy", "Laboratory", "College", "Center"};

static const char *const TITLES[] = {"{M}: a {A} {O} for {T}", "{M}, a {A} {O} for {T}",
                                     "Towards {A} {T} with {M}"};
static const char *const INTROS[] = {"We present {M}, a {A} {O} for {T}.", "We introduce {M}, a {A} {O} for {T}.",
                                     "This paper describes {M}, a {A} {O} for {T}.", "{M} is a {A} {O} for {T}."};
static const char *const FILLERS[] = {"Code and data are available.", "Experiments confirm the analysis.",
                                      "We discuss limitations and future work.",
                                      "The results hold across all settings."};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct {
  const char *kind;
  char slot;                       // the answer
  const char *phrasings[3];        // NULL-terminated
} fact_question;

typedef struct {
  const char *sentences[4];        // NULL-terminated; each holds the slots its questions ask about
  fact_question q[2];              // q[1].kind NULL when the fact has one question
} fact;

static const fact FACTS[] = {
  {{"{M} was proposed by {P}.", "The {O} was first described by {P}.", "It was designed by {P}.", NULL},
   {{"author", 'P', {"Who proposed {M}?", "Who designed {M}?", NULL}}}},
  {{"It was developed at the {I} of {L}.", "The work was carried out at the {I} of {L}.",
    "{M} comes from the {I} of {L}.", NULL},
   {{"place", 'L', {"Where was {M} developed?", "Where does {M} come from?", NULL}}}},
  {{"The first version appeared in {Y}.", "{M} was first released in {Y}.", NULL},
   {{"year", 'Y', {"When was {M} first released?", "In which year did {M} first appear?", NULL}}}},
  {{"On the {D} benchmark, {M} reaches an accuracy of {X} percent.", "{M} scores {X} percent on the {D} benchmark.",
    NULL},
   {{"accuracy", 'X', {"What accuracy does {M} reach on the {D} benchmark?", "How well does {M} score on the {D} benchmark?", NULL}},
    {"benchmark", 'D', {"On which benchmark was {M} evaluated?", "Which benchmark is used to test {M}?", NULL}}}},
  {{"The model has {N} parameters.", "{M} uses {N} parameters.", "It needs only {N} parameters.", NULL},
   {{"parameters", 'N', {"How many parameters does {M} use?", "How many parameters does {M} have?", NULL}}}},
  {{"{M} builds on {B}, an earlier {O}.", "It extends the {B} {O}.", NULL},
   {{"base", 'B', {"Which method does {M} build on?", "What does {M} extend?", NULL}}}},
  {{"It outperforms {C} by {K} points.", "{M} beats {C} by {K} points.", NULL},
   {{"competitor", 'C', {"Which method does {M} outperform?", "Which method is beaten by {M}?", NULL}},
    {"margin", 'K', {"By how many points does {M} beat {C}?", "How large is the margin of {M} over {C}?", NULL}}}},
};
#define N_FACTS N_OF(FACTS)
#define MIN_FACTS 4
#define MAX_FACTS 6

// Name syllables: onset + vowel + optional coda; a name is 2 (70%) or 3 syllables, capitalised.
static const char ONSETS[] = "bdfgklmnprstvz";
static const char VOWELS[] = "aeiou";
static const char *const CODAS[] = {"", "n", "r", "l", "s"};
#define N_ONSETS ((int)sizeof ONSETS - 1)
#define N_VOWELS ((int)sizeof VOWELS - 1)
#define N_CODAS N_OF(CODAS)
#define N_SYLLABLES (N_ONSETS * N_VOWELS * N_CODAS)

// ---------------------------------------------------------------------------------------------
// Randomness: splitmix64, keyed by (seed, document)

typedef struct {
  uint64_t s;
} rng;

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static uint64_t rng_next(rng *r) { return mix64(r->s += UINT64_C(0x9E3779B97F4A7C15)); }
static int rng_below(rng *r, int n) { return (int)(rng_next(r) % (uint64_t)n); }  // bias < 2^-40

// ---------------------------------------------------------------------------------------------
// Vocabulary words: the letter runs of every template and list entry (slots excluded)

typedef struct {
  char words[256][24];
  int n;
} word_list;

static void words_add_text(word_list *w, const char *s) {
  while (*s) {
    if (*s == '{') {
      s = strchr(s, '}') + 1;
      continue;
    }
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) {
      s++;
      continue;
    }
    const char *b = s;
    while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) s++;
    int n = (int)(s - b), seen = 0;
    for (int i = 0; i < w->n && !seen; i++) seen = (int)strlen(w->words[i]) == n && !memcmp(w->words[i], b, (size_t)n);
    if (!seen && w->n < 256 && n < 24) snprintf(w->words[w->n++], 24, "%.*s", n, b);
  }
}

static word_list GRAMMAR_WORDS;
static pthread_once_t GRAMMAR_ONCE = PTHREAD_ONCE_INIT;

static void grammar_words_init(void) {
  word_list *t = &GRAMMAR_WORDS;
  const char *const *lists[] = {ADJS, NOUNS, TASKS, INSTS, TITLES, INTROS, FILLERS};
  const int sizes[] = {N_OF(ADJS), N_OF(NOUNS), N_OF(TASKS), N_OF(INSTS), N_OF(TITLES), N_OF(INTROS), N_OF(FILLERS)};
  for (int l = 0; l < N_OF(lists); l++)
    for (int i = 0; i < sizes[l]; i++) words_add_text(t, lists[l][i]);
  for (int f = 0; f < N_FACTS; f++) {
    for (int s = 0; FACTS[f].sentences[s]; s++) words_add_text(t, FACTS[f].sentences[s]);
    for (int q = 0; q < 2 && FACTS[f].q[q].kind; q++)
      for (int p = 0; FACTS[f].q[q].phrasings[p]; p++) words_add_text(t, FACTS[f].q[q].phrasings[p]);
  }
}

// The grammar's words, in order of first appearance (computed once, thread-safely).
static const word_list *grammar_words(void) {
  pthread_once(&GRAMMAR_ONCE, grammar_words_init);
  return &GRAMMAR_WORDS;
}

// ---------------------------------------------------------------------------------------------
// Generation

typedef char slot_values[26][64];

static void syllable(int k, int cap, char *out) {
  int onset = k % N_ONSETS, vowel = (k / N_ONSETS) % N_VOWELS, coda = k / (N_ONSETS * N_VOWELS);
  out[0] = (char)(cap ? ONSETS[onset] - 'a' + 'A' : ONSETS[onset]);
  out[1] = VOWELS[vowel];
  strcpy(out + 2, CODAS[coda]);
}

// A fresh name: not a grammar word, and none of the `n_used` names already in this document.
static void make_name(rng *r, char used[][64], int n_used, char *out) {
  const word_list *w = grammar_words();
  for (;;) {
    int n_syl = rng_below(r, 10) < 7 ? 2 : 3, len = 0;
    for (int i = 0; i < n_syl; i++) {
      syllable(rng_below(r, N_SYLLABLES), i == 0, out + len);
      len += (int)strlen(out + len);
    }
    int clash = 0;
    for (int i = 0; i < w->n && !clash; i++) clash = !strcmp(w->words[i], out);
    for (int i = 0; i < n_used && !clash; i++) clash = strstr(used[i], out) != NULL || strstr(out, used[i]) != NULL;
    if (!clash) return;
  }
}

// Expand template t with the slot values into out (at byte *len, capacity cap); at[slot] gets
// where each slot's value starts (-1 if absent).
static void expand(const char *t, slot_values v, char *out, size_t cap, size_t *len, int64_t at[26]) {
  for (int i = 0; i < 26; i++) at[i] = -1;
  for (; *t && *len + 1 < cap; t++) {
    if (t[0] == '{' && t[1] >= 'A' && t[1] <= 'Z' && t[2] == '}') {
      int s = t[1] - 'A';
      if (at[s] < 0) at[s] = (int64_t)*len;
      size_t n = strlen(v[s]);
      if (*len + n + 1 >= cap) break;
      memcpy(out + *len, v[s], n);
      *len += n;
      t += 2;
    } else {
      out[(*len)++] = *t;
    }
  }
  out[*len] = 0;
}

void synth_generate(uint64_t seed, int64_t index, synth_doc *doc) {
  rng r = {mix64(seed ^ UINT64_C(0x5157A7E5EED0001)) ^ mix64((uint64_t)index * UINT64_C(0xD1B54A32D192ED03) + 1)};
  memset(doc, 0, sizeof *doc);
  snprintf(doc->id, sizeof doc->id, "synth-%07lld", (long long)index);

  slot_values v = {{0}};
  char used[8][64];
  int n_used = 0;
  const char name_slots[] = "MLDBC";  // single names; P is two
  for (int i = 0; name_slots[i]; i++) {
    char *dst = v[name_slots[i] - 'A'];
    make_name(&r, used, n_used, dst);
    strcpy(used[n_used++], dst);
  }
  char first[64], last[64];
  make_name(&r, used, n_used, first);
  strcpy(used[n_used++], first);
  make_name(&r, used, n_used, last);
  strcpy(used[n_used++], last);
  snprintf(v['P' - 'A'], 64, "%.30s %.30s", first, last);
  snprintf(v['Y' - 'A'], 64, "%d", 1800 + rng_below(&r, 300));
  int x = 100 + rng_below(&r, 900), k = 10 + rng_below(&r, 290);
  snprintf(v['X' - 'A'], 64, "%d.%d", x / 10, x % 10);
  snprintf(v['K' - 'A'], 64, "%d.%d", k / 10, k % 10);
  snprintf(v['N' - 'A'], 64, "%d", 1000 + rng_below(&r, 99000));
  strcpy(v['A' - 'A'], ADJS[rng_below(&r, N_OF(ADJS))]);
  strcpy(v['O' - 'A'], NOUNS[rng_below(&r, N_OF(NOUNS))]);
  strcpy(v['T' - 'A'], TASKS[rng_below(&r, N_OF(TASKS))]);
  strcpy(v['I' - 'A'], INSTS[rng_below(&r, N_OF(INSTS))]);

  int64_t at[26];
  size_t tlen = 0, len = 0;
  expand(TITLES[rng_below(&r, N_OF(TITLES))], v, doc->title, sizeof doc->title, &tlen, at);
  expand(INTROS[rng_below(&r, N_OF(INTROS))], v, doc->text, sizeof doc->text, &len, at);

  int order[N_FACTS];
  for (int i = 0; i < N_FACTS; i++) order[i] = i;
  for (int i = N_FACTS - 1; i > 0; i--) {
    int j = rng_below(&r, i + 1), t = order[i];
    order[i] = order[j], order[j] = t;
  }
  int n_facts = MIN_FACTS + rng_below(&r, MAX_FACTS - MIN_FACTS + 1);
  for (int f = 0; f < n_facts; f++) {
    const fact *F = &FACTS[order[f]];
    int n_sent = 0;
    while (F->sentences[n_sent]) n_sent++;
    doc->text[len++] = ' ';
    expand(F->sentences[rng_below(&r, n_sent)], v, doc->text, sizeof doc->text, &len, at);
    for (int q = 0; q < 2 && F->q[q].kind && doc->n_qa < SYNTH_MAX_QA; q++) {
      const fact_question *Q = &F->q[q];
      int n_phr = 0;
      while (Q->phrasings[n_phr]) n_phr++;
      synth_qa *qa = &doc->qa[doc->n_qa++];
      int64_t q_at[26];
      size_t qlen = 0;
      expand(Q->phrasings[rng_below(&r, n_phr)], v, qa->question, sizeof qa->question, &qlen, q_at);
      qa->kind = Q->kind;
      snprintf(qa->answer, sizeof qa->answer, "%s", v[Q->slot - 'A']);
      qa->answer_start = at[Q->slot - 'A'];
    }
  }
  if (rng_below(&r, 2)) {
    doc->text[len++] = ' ';
    expand(FILLERS[rng_below(&r, N_OF(FILLERS))], v, doc->text, sizeof doc->text, &len, at);
  }
}

// ---------------------------------------------------------------------------------------------
// Output helpers: a growable string, JSON strings, atomic files

typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) sb_put(b, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

// s as a JSON string literal (UTF-8 passes through; quotes, backslashes, controls escaped).
static void sb_json(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sb_put(b, e, 2);
    } else if (c < 0x20) {
      sb_printf(b, "\\u%04x", c);
    } else {
      sb_put(b, s, 1);
    }
  }
  sb_put(b, "\"", 1);
}

// Write the file through PATH.partial: fsync, rename.
static int write_atomic_stream(const char *path, FILE **f, char *partial, size_t size, pith_err *err) {
  if (snprintf(partial, size, "%s.partial", path) >= (int)size) return pith_fail(err, "%s: path too long", path);
  *f = fopen(partial, "wb");
  if (!*f) return pith_fail(err, "%s: cannot create: %s", partial, strerror(errno));
  return 0;
}

static int finish_atomic_stream(const char *path, FILE *f, const char *partial, pith_err *err) {
  int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
  int e = errno;
  if (fclose(f) != 0 && !bad) bad = 1, e = errno;
  if (bad || rename(partial, path) != 0) {
    if (!bad) e = errno;
    unlink(partial);
    return pith_fail(err, "%s: write failed: %s", path, strerror(e));
  }
  return 0;
}

int synth_write_jsonl(uint64_t seed, int64_t n_docs, const char *docs_path, const char *qa_path, pith_err *err) {
  char dp[4096], qp[4096];
  FILE *df = NULL, *qf = NULL;
  if (n_docs < 1) return pith_fail(err, "synth: the number of documents must be >= 1, not %lld", (long long)n_docs);
  if (docs_path && write_atomic_stream(docs_path, &df, dp, sizeof dp, err) < 0) return -1;
  if (qa_path && write_atomic_stream(qa_path, &qf, qp, sizeof qp, err) < 0) {
    if (df) fclose(df), unlink(dp);
    return -1;
  }
  synth_doc *d = malloc(sizeof *d);
  sbuf b = {0};
  int rc = d ? 0 : pith_fail(err, "out of memory");
  for (int64_t i = 0; i < n_docs && rc == 0; i++) {
    synth_generate(seed, i, d);
    if (df) {
      b.n = 0;
      sb_str(&b, "{\"id\": "), sb_json(&b, d->id), sb_str(&b, ", \"title\": "), sb_json(&b, d->title);
      sb_str(&b, ", \"abstract\": "), sb_json(&b, d->text), sb_str(&b, ", \"categories\": \"synth\"}\n");
      if (!b.oom) fwrite(b.p, 1, b.n, df);
    }
    for (int q = 0; qf && q < d->n_qa; q++) {
      b.n = 0;
      sb_str(&b, "{\"id\": "), sb_json(&b, d->id), sb_printf(&b, ", \"qid\": \"%s-q%d\", \"kind\": ", d->id, q);
      sb_json(&b, d->qa[q].kind), sb_str(&b, ", \"context\": "), sb_json(&b, d->text);
      sb_str(&b, ", \"question\": "), sb_json(&b, d->qa[q].question), sb_str(&b, ", \"answers\": [{\"text\": ");
      sb_json(&b, d->qa[q].answer), sb_printf(&b, ", \"answer_start\": %lld}]}\n", (long long)d->qa[q].answer_start);
      if (!b.oom) fwrite(b.p, 1, b.n, qf);
    }
    if (b.oom) rc = pith_fail(err, "out of memory");
  }
  free(d);
  free(b.p);
  if (rc < 0) {
    if (df) fclose(df), unlink(dp);
    if (qf) fclose(qf), unlink(qp);
    return -1;
  }
  if (df && finish_atomic_stream(docs_path, df, dp, err) < 0) rc = -1;
  if (qf && (rc < 0 ? (fclose(qf), unlink(qp), -1) : finish_atomic_stream(qa_path, qf, qp, err)) < 0) rc = -1;
  return rc;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer

typedef struct {
  char **piece;  // (n) byte-level pieces; index = id
  int n, cap;
  int oom;
} vocab;

static int vocab_find(const vocab *v, const char *s) {
  for (int i = 0; i < v->n; i++)
    if (!strcmp(v->piece[i], s)) return i;
  return -1;
}

static void vocab_add(vocab *v, const char *s) {
  if (v->oom || vocab_find(v, s) >= 0) return;
  if (v->n == v->cap) {
    int cap = v->cap ? 2 * v->cap : 1024;
    char **p = realloc(v->piece, (size_t)cap * sizeof *p);
    if (!p) {
      v->oom = 1;
      return;
    }
    v->piece = p, v->cap = cap;
  }
  if (!(v->piece[v->n] = strdup(s))) v->oom = 1;
  else v->n++;
}

// GPT-2's byte-to-character map: printable Latin-1 bytes stand for themselves, the others (controls,
// space, ...) for U+0100 onwards, in byte order. out: the character's UTF-8 (up to 2 bytes + NUL).
static void byte_char(int byte, char out[3]) {
  int printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
  int cp = byte;
  if (!printable) {
    int k = 0;
    for (int b = 0; b < byte; b++)
      k += !((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF));
    cp = 256 + k;
  }
  if (cp < 0x80) {
    out[0] = (char)cp, out[1] = 0;
  } else {
    out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
  }
}

int synth_write_tokenizer(const char *dir, int *vocab_size, pith_err *err) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return pith_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  static const char *const SPECIALS[] = {"<|pad|>", "<|bos|>", "<|eos|>"};
  char sp[3];
  byte_char(' ', sp);  // "Ġ"
  vocab v = {0};
  sbuf merges = {0};
  for (int i = 0; i < 3; i++) vocab_add(&v, SPECIALS[i]);
  for (int b = 0; b < 256; b++) {
    char c[3];
    byte_char(b, c);
    vocab_add(&v, c);
  }
  const word_list *w = grammar_words();
  for (int i = 0; i < w->n; i++) {
    char g[32];
    snprintf(g, sizeof g, "%s%s", sp, w->words[i]);
    vocab_add(&v, w->words[i]);
    vocab_add(&v, g);
  }
  // Merges in rank order: onset+vowel, then +coda, then a space before a capitalised syllable,
  // then a space before a digit. Names thus split into their syllables (see synth.h).
  for (int cap = 0; cap < 2; cap++)
    for (int o = 0; o < N_ONSETS; o++)
      for (int u = 0; u < N_VOWELS; u++) {
        char on = (char)(cap ? ONSETS[o] - 'a' + 'A' : ONSETS[o]), cv[3] = {on, VOWELS[u], 0};
        vocab_add(&v, cv);
        sb_printf(&merges, "%s\"%c %c\"", merges.n ? ",\n" : "", on, VOWELS[u]);
      }
  for (int cap = 0; cap < 2; cap++)
    for (int o = 0; o < N_ONSETS; o++)
      for (int u = 0; u < N_VOWELS; u++)
        for (int c = 1; c < N_CODAS; c++) {
          char on = (char)(cap ? ONSETS[o] - 'a' + 'A' : ONSETS[o]), cvc[8];
          snprintf(cvc, sizeof cvc, "%c%c%s", on, VOWELS[u], CODAS[c]);
          vocab_add(&v, cvc);
          sb_printf(&merges, ",\n\"%c%c %s\"", on, VOWELS[u], CODAS[c]);
        }
  for (int k = 0; k < N_SYLLABLES; k++) {
    char syl[8], g[16];
    syllable(k, 1, syl);
    snprintf(g, sizeof g, "%s%s", sp, syl);
    vocab_add(&v, g);
    sb_printf(&merges, ",\n\"%s %s\"", sp, syl);
  }
  for (int d = 0; d < 10; d++) {
    char g[8];
    snprintf(g, sizeof g, "%s%d", sp, d);
    vocab_add(&v, g);
    sb_printf(&merges, ",\n\"%s %d\"", sp, d);
  }

  sbuf j = {0};
  sb_str(&j, "{\n\"version\": \"1.0\",\n\"truncation\": null,\n\"padding\": null,\n\"added_tokens\": [\n");
  for (int i = 0; i < 3; i++)
    sb_printf(&j, "  {\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
              "\"normalized\": false, \"special\": true}%s\n", i, SPECIALS[i], i < 2 ? "," : "");
  sb_str(&j, "],\n\"normalizer\": null,\n"
             "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
             "\"use_regex\": true},\n"
             "\"post_processor\": {\"type\": \"TemplateProcessing\", "
             "\"single\": [{\"SpecialToken\": {\"id\": \"<|bos|>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
             "\"pair\": [{\"SpecialToken\": {\"id\": \"<|bos|>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
             "{\"SpecialToken\": {\"id\": \"<|bos|>\", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
             "\"special_tokens\": {\"<|bos|>\": {\"id\": \"<|bos|>\", \"ids\": [1], \"tokens\": [\"<|bos|>\"]}}},\n"
             "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
             "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, "
             "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": true,\n"
             "\"vocab\": {\n");
  for (int i = 0; i < v.n; i++) {
    sb_json(&j, v.piece[i]);
    sb_printf(&j, ": %d%s\n", i, i + 1 < v.n ? "," : "");
  }
  sb_str(&j, "},\n\"merges\": [\n");
  if (merges.p) sb_put(&j, merges.p, merges.n);
  sb_str(&j, "\n]\n}\n}\n");

  static const char CONFIG[] =
      "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"bos_token\": \"<|bos|>\",\n"
      "  \"eos_token\": \"<|eos|>\",\n  \"pad_token\": \"<|pad|>\",\n  \"add_bos_token\": true,\n"
      "  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": 2048\n}\n";
  int rc = 0;
  char path[4096];
  if (v.oom || merges.oom || j.oom) rc = pith_fail(err, "out of memory");
  if (!rc && snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path) rc = pith_fail(err, "%s: path too long", dir);
  if (!rc) rc = pith_write_file_atomic(path, j.p, j.n, err);
  if (!rc) snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  if (!rc) rc = pith_write_file_atomic(path, CONFIG, sizeof CONFIG - 1, err);
  if (!rc && vocab_size) *vocab_size = v.n;
  for (int i = 0; i < v.n; i++) free(v.piece[i]);
  free(v.piece);
  free(merges.p);
  free(j.p);
  return rc;
}
