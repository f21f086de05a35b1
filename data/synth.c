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
// N parameter count (millions), C method beaten, K margin, A adjective, O noun, T task. Every answer
// slot (P L Y D X N C K) takes its value from its own closed list (see "The answer values"), one
// token each. As in SQuAD, a question shares a word with the sentence that answers it (proposed,
// developed, released, benchmark, parameters, beat, or the benchmark or competitor named): a tiny
// model learns to find that word in the context and take the answer beside it, where it would
// never learn the kinds of 500 rare tokens in the demo's budget.

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
  {{"{M} was proposed by {P}.", "The {O} was proposed by {P} and colleagues.", "It was first proposed by {P}.", NULL},
   {{"author", 'P', {"Who proposed {M}?", "By whom was {M} proposed?", NULL}}}},
  {{"It was developed in {L}.", "{M} was developed at the {I} in {L}.", "The work was developed in {L} at the {I}.",
    NULL},
   {{"place", 'L', {"Where was {M} developed?", "In which city was {M} developed?", NULL}}}},
  {{"The first version was released in {Y}.", "{M} was first released in {Y}.", "It was released in {Y}.", NULL},
   {{"year", 'Y', {"When was {M} released?", "In which year was {M} first released?", NULL}}}},
  {{"On the {D} benchmark, {M} reaches an accuracy of {X} percent.", "{M} scores {X} percent accuracy on the {D} benchmark.",
    NULL},
   {{"accuracy", 'X', {"What accuracy does {M} reach on the {D} benchmark?", "What accuracy does {M} score on {D}?", NULL}},
    {"benchmark", 'D', {"On which benchmark was {M} evaluated?", "Which benchmark is used to test {M}?", NULL}}}},
  {{"The model has {N} million parameters.", "{M} uses {N} million parameters.", "It needs only {N} million parameters.", NULL},
   {{"parameters", 'N', {"How many parameters does {M} use?", "How many million parameters does {M} have?", NULL}}}},
  {{"It beats {C} by {K} points.", "{M} beats the {C} baseline by {K} points.", NULL},
   {{"competitor", 'C', {"Which method does {M} beat?", "Which baseline does {M} beat?", NULL}},
    {"margin", 'K', {"By how many points does {M} beat {C}?", "How many points ahead of {C} is {M}?", NULL}}}},
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

// The answer values. Every answer slot draws from its own closed list of one-token words, disjoint
// from every other slot's list, so the kind of a question says which word of the context answers
// it: a tiny model learns to find it without first learning to copy token runs. Names are two
// syllables, their stems drawn once from a fixed stream (people and places capitalised, benchmarks
// in capitals, competitors with "Net"); numbers are ranges.
#define ANSWER_SLOTS "PLYDXNCK"
static const struct {
  char slot;
  int count;
} NAME_LISTS[] = {{'P', 128}, {'L', 128}, {'D', 64}, {'C', 64}};  // in the order their stems are drawn
#define N_STEMS (128 + 128 + 64 + 64)

typedef struct {
  word_list grammar;    // the grammar's words, in order of first appearance
  char stems[N_STEMS][12];  // the names' lowercase stems, all distinct, NAME_LISTS' lists one after another
} world_words;

static world_words WORDS;
static pthread_once_t WORDS_ONCE = PTHREAD_ONCE_INIT;

static void syllable(int k, int cap, char *out);

static int is_grammar_word(const char *s) {
  for (int i = 0; i < WORDS.grammar.n; i++)
    if (!strcmp(WORDS.grammar.words[i], s)) return 1;
  return 0;
}

static void world_words_init(void) {
  word_list *t = &WORDS.grammar;
  const char *const *lists[] = {ADJS, NOUNS, TASKS, INSTS, TITLES, INTROS, FILLERS};
  const int sizes[] = {N_OF(ADJS), N_OF(NOUNS), N_OF(TASKS), N_OF(INSTS), N_OF(TITLES), N_OF(INTROS), N_OF(FILLERS)};
  for (int l = 0; l < N_OF(lists); l++)
    for (int i = 0; i < sizes[l]; i++) words_add_text(t, lists[l][i]);
  for (int f = 0; f < N_FACTS; f++) {
    for (int s = 0; FACTS[f].sentences[s]; s++) words_add_text(t, FACTS[f].sentences[s]);
    for (int q = 0; q < 2 && FACTS[f].q[q].kind; q++)
      for (int p = 0; FACTS[f].q[q].phrasings[p]; p++) words_add_text(t, FACTS[f].q[q].phrasings[p]);
  }
  words_add_text(t, "Question: Answer:");  // the compressors' QA prompt (data/task.h)

  // Stems: two syllables from a fixed stream, each new and not a grammar word once capitalised.
  uint64_t stream = UINT64_C(0x5EED0F5A3E5);
  for (int n = 0; n < N_STEMS;) {
    uint64_t z = stream += UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 31)) * UINT64_C(0xBF58476D1CE4E5B9);
    char *out = WORDS.stems[n], cap[12];
    syllable((int)(z % N_SYLLABLES), 0, out);
    syllable((int)((z >> 32) % N_SYLLABLES), 0, out + strlen(out));
    int clash = 0;
    for (int i = 0; i < n && !clash; i++) clash = !strcmp(WORDS.stems[i], out);
    snprintf(cap, sizeof cap, "%c%s", out[0] - 'a' + 'A', out + 1);
    if (!clash && !is_grammar_word(cap)) n++;
  }
}

static const world_words *world_words_get(void) {
  pthread_once(&WORDS_ONCE, world_words_init);
  return &WORDS;
}

// The grammar's words, in order of first appearance (computed once, thread-safely).
static const word_list *grammar_words(void) { return &world_words_get()->grammar; }

// How many values answer slot `slot` can take.
static int slot_count(char slot) {
  for (int l = 0; l < N_OF(NAME_LISTS); l++)
    if (NAME_LISTS[l].slot == slot) return NAME_LISTS[l].count;
  switch (slot) {
    case 'Y': return 80;   // years 1950-2029
    case 'X': return 50;   // accuracies 50-99 percent
    case 'N': return 90;   // 100-990 million parameters, in tens
    case 'K': return 28;   // margins 2-29 points
    default: return 0;
  }
}

// Value i of answer slot `slot` into out.
static void slot_value(char slot, int i, char out[16]) {
  int first = 0;  // the slot's first stem
  for (int l = 0; l < N_OF(NAME_LISTS) && NAME_LISTS[l].slot != slot; l++) first += NAME_LISTS[l].count;
  const char *stem = world_words_get()->stems[first + i];
  switch (slot) {
    case 'P': case 'L': snprintf(out, 16, "%c%s", stem[0] - 'a' + 'A', stem + 1); break;
    case 'C': snprintf(out, 16, "%c%sNet", stem[0] - 'a' + 'A', stem + 1); break;
    case 'D':
      for (int c = 0;; c++) {
        out[c] = (char)(stem[c] >= 'a' && stem[c] <= 'z' ? stem[c] - 'a' + 'A' : stem[c]);
        if (!stem[c]) break;
      }
      break;
    case 'Y': snprintf(out, 16, "%d", 1950 + i); break;
    case 'X': snprintf(out, 16, "%d", 50 + i); break;
    case 'N': snprintf(out, 16, "%d", 100 + 10 * i); break;
    case 'K': snprintf(out, 16, "%d", 2 + i); break;
    default: out[0] = 0;
  }
}

// Whether s is a person or a place (the values a method name could be mistaken for).
static int is_answer_value(const char *s) {
  const world_words *w = world_words_get();
  for (int i = 0; i < slot_count('P') + slot_count('L'); i++)  // P's and L's stems come first
    if (s[0] == w->stems[i][0] - 'a' + 'A' && !strcmp(s + 1, w->stems[i] + 1)) return 1;
  return 0;
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

// A fresh method name: not a grammar word nor an answer value, and no substring of (nor holding)
// any of the `n_used` names already in this document.
static void make_name(rng *r, char used[][64], int n_used, char *out) {
  world_words_get();  // is_grammar_word reads WORDS as it stands (it also runs while WORDS is built)
  for (;;) {
    int n_syl = rng_below(r, 10) < 7 ? 2 : 3, len = 0;
    for (int i = 0; i < n_syl; i++) {
      syllable(rng_below(r, N_SYLLABLES), i == 0, out + len);
      len += (int)strlen(out + len);
    }
    int clash = is_grammar_word(out) || is_answer_value(out);
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
  for (const char *slot = ANSWER_SLOTS; *slot; slot++) {
    slot_value(*slot, rng_below(&r, slot_count(*slot)), v[*slot - 'A']);
    if (strchr("PLDC", *slot)) strcpy(used[n_used++], v[*slot - 'A']);
  }
  make_name(&r, used, n_used, v['M' - 'A']);
  strcpy(v['A' - 'A'], ADJS[rng_below(&r, N_OF(ADJS))]);
  strcpy(v['O' - 'A'], NOUNS[rng_below(&r, N_OF(NOUNS))]);
  strcpy(v['T' - 'A'], TASKS[rng_below(&r, N_OF(TASKS))]);
  strcpy(v['I' - 'A'], INSTS[rng_below(&r, N_OF(INSTS))]);

  int64_t at[26];
  size_t tlen = 0, len = 0;
  int64_t sent[MAX_FACTS + 3];  // where each sentence starts, then the end of the text
  int n_sent_doc = 0, qa_sentence[SYNTH_MAX_QA];
  expand(TITLES[rng_below(&r, N_OF(TITLES))], v, doc->title, sizeof doc->title, &tlen, at);
  sent[n_sent_doc++] = 0;
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
    sent[n_sent_doc++] = (int64_t)len;
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
      qa_sentence[doc->n_qa - 1] = n_sent_doc - 1;
    }
  }
  if (rng_below(&r, 2)) {
    doc->text[len++] = ' ';
    sent[n_sent_doc++] = (int64_t)len;
    expand(FILLERS[rng_below(&r, N_OF(FILLERS))], v, doc->text, sizeof doc->text, &len, at);
  }
  sent[n_sent_doc] = (int64_t)len + 1;  // as if a space followed
  // Short contexts: the answer's sentence, and a window of 1 to 3 whole sentences around it (drawn
  // last, so the rest of the document does not depend on them).
  for (int q = 0; q < doc->n_qa; q++) {
    synth_qa *x = &doc->qa[q];
    int j = qa_sentence[q];
    x->sentence_start = sent[j], x->sentence_len = sent[j + 1] - 1 - sent[j];
    int size = 1 + rng_below(&r, SYNTH_WINDOW_SENTENCES), first = j - rng_below(&r, size);
    if (first + size > n_sent_doc) first = n_sent_doc - size;
    if (first < 0) first = 0;
    int last = first + size - 1 < n_sent_doc - 1 ? first + size - 1 : n_sent_doc - 1;
    x->window_start = sent[first], x->window_len = sent[last + 1] - 1 - sent[first];
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

// s[0..n) as a JSON string literal (UTF-8 passes through; quotes, backslashes, controls escaped).
static void sb_json_n(sbuf *b, const char *s, size_t n) {
  sb_put(b, "\"", 1);
  for (const char *end = s + n; s < end; s++) {
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

static void sb_json(sbuf *b, const char *s) { sb_json_n(b, s, strlen(s)); }

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

// One QA line: the question q of document d, with the context `ctx` (n bytes) in which the answer
// starts at answer_start.
static void qa_line(sbuf *b, const synth_doc *d, int q, const char *ctx, size_t n, int64_t answer_start) {
  b->n = 0;
  sb_str(b, "{\"id\": "), sb_json(b, d->id), sb_printf(b, ", \"qid\": \"%s-q%d\", \"kind\": ", d->id, q);
  sb_json(b, d->qa[q].kind), sb_str(b, ", \"context\": "), sb_json_n(b, ctx, n);
  sb_str(b, ", \"question\": "), sb_json(b, d->qa[q].question), sb_str(b, ", \"answers\": [{\"text\": ");
  sb_json(b, d->qa[q].answer), sb_printf(b, ", \"answer_start\": %lld}]}\n", (long long)answer_start);
}

int synth_write_jsonl(uint64_t seed, int64_t n_docs, const char *docs_path, const char *qa_path,
                      const char *sentence_path, const char *window_path, pith_err *err) {
  enum { N_OUT = 4 };
  const char *paths[N_OUT] = {docs_path, qa_path, sentence_path, window_path};
  char partial[N_OUT][4096];
  FILE *f[N_OUT] = {NULL};
  if (n_docs < 1) return pith_fail(err, "synth: the number of documents must be >= 1, not %lld", (long long)n_docs);
  int rc = 0;
  for (int i = 0; i < N_OUT && rc == 0; i++)
    if (paths[i]) rc = write_atomic_stream(paths[i], &f[i], partial[i], sizeof partial[i], err);
  synth_doc *d = rc ? NULL : malloc(sizeof *d);
  sbuf b = {0};
  if (!rc && !d) rc = pith_fail(err, "out of memory");
  for (int64_t i = 0; i < n_docs && rc == 0; i++) {
    synth_generate(seed, i, d);
    if (f[0]) {
      b.n = 0;
      sb_str(&b, "{\"id\": "), sb_json(&b, d->id), sb_str(&b, ", \"title\": "), sb_json(&b, d->title);
      sb_str(&b, ", \"abstract\": "), sb_json(&b, d->text), sb_str(&b, ", \"categories\": \"synth\"}\n");
      if (!b.oom) fwrite(b.p, 1, b.n, f[0]);
    }
    for (int q = 0; q < d->n_qa && !b.oom; q++) {
      const synth_qa *x = &d->qa[q];
      if (f[1]) {
        qa_line(&b, d, q, d->text, strlen(d->text), x->answer_start);
        if (!b.oom) fwrite(b.p, 1, b.n, f[1]);
      }
      if (f[2]) {
        qa_line(&b, d, q, d->text + x->sentence_start, (size_t)x->sentence_len, x->answer_start - x->sentence_start);
        if (!b.oom) fwrite(b.p, 1, b.n, f[2]);
      }
      if (f[3]) {
        qa_line(&b, d, q, d->text + x->window_start, (size_t)x->window_len, x->answer_start - x->window_start);
        if (!b.oom) fwrite(b.p, 1, b.n, f[3]);
      }
    }
    if (b.oom) rc = pith_fail(err, "out of memory");
  }
  free(d);
  free(b.p);
  for (int i = 0; i < N_OUT; i++) {
    if (!f[i]) continue;
    if (rc < 0) fclose(f[i]), unlink(partial[i]);
    else if (finish_atomic_stream(paths[i], f[i], partial[i], err) < 0) rc = -1;
  }
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

// Every answer value of the world as one vocabulary entry, after prefix (the BPE's leading space).
static void vocab_add_answers(vocab *v, const char *prefix) {
  for (const char *slot = ANSWER_SLOTS; *slot; slot++)
    for (int i = 0; i < slot_count(*slot); i++) {
      char val[16], g[24];
      slot_value(*slot, i, val);
      snprintf(g, sizeof g, "%s%s", prefix, val);
      vocab_add(v, g);
    }
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

// tokenizer.json's opening: version, no truncation or padding, the special tokens (ids 0..n-1).
static void json_head(sbuf *j, const char *const *specials, int n) {
  sb_str(j, "{\n\"version\": \"1.0\",\n\"truncation\": null,\n\"padding\": null,\n\"added_tokens\": [\n");
  for (int i = 0; i < n; i++)
    sb_printf(j, "  {\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
              "\"normalized\": false, \"special\": true}%s\n", i, specials[i], i + 1 < n ? "," : "");
}

// The model's "vocab" object's entries: each piece and its id.
static void json_vocab(sbuf *j, const vocab *v) {
  for (int i = 0; i < v->n; i++) {
    sb_json(j, v->piece[i]);
    sb_printf(j, ": %d%s\n", i, i + 1 < v->n ? "," : "");
  }
}

// DIR/tokenizer.json (j) and DIR/tokenizer_config.json (config), each atomically; frees v and j.
static int write_tokenizer_files(const char *dir, vocab *v, sbuf *j, const char *config, int *vocab_size,
                                 pith_err *err) {
  int rc = 0;
  char path[4096];
  if (v->oom || j->oom) rc = pith_fail(err, "out of memory");
  if (!rc && snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path) rc = pith_fail(err, "%s: path too long", dir);
  if (!rc) rc = pith_write_file_atomic(path, j->p, j->n, err);
  if (!rc) snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  if (!rc) rc = pith_write_file_atomic(path, config, strlen(config), err);
  if (!rc && vocab_size) *vocab_size = v->n;
  for (int i = 0; i < v->n; i++) free(v->piece[i]);
  free(v->piece);
  free(j->p);
  return rc;
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
  // Every answer value is one token (ignore_merges: a whole pre-token found in the vocabulary is
  // taken as is), always with its leading space: the pre-tokenizer adds one to a text that starts
  // without, so an answer encoded alone gets the very token it has in the context.
  vocab_add_answers(&v, sp);

  sbuf j = {0};
  json_head(&j, SPECIALS, 3);
  sb_str(&j, "],\n\"normalizer\": null,\n"
             "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
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
  json_vocab(&j, &v);
  sb_str(&j, "},\n\"merges\": [\n");
  if (merges.p) sb_put(&j, merges.p, merges.n);
  sb_str(&j, "\n]\n}\n}\n");

  static const char CONFIG[] =
      "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"bos_token\": \"<|bos|>\",\n"
      "  \"eos_token\": \"<|eos|>\",\n  \"pad_token\": \"<|pad|>\",\n  \"add_bos_token\": true,\n"
      "  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": 2048\n}\n";
  if (merges.oom) j.oom = 1;
  free(merges.p);
  return write_tokenizer_files(dir, &v, &j, CONFIG, vocab_size, err);
}

int synth_write_bert_tokenizer(const char *dir, int *vocab_size, pith_err *err) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return pith_fail(err, "%s: cannot create: %s", dir, strerror(errno));
  static const char *const SPECIALS[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  vocab v = {0};
  for (int i = 0; i < 5; i++) vocab_add(&v, SPECIALS[i]);
  // Every printable ASCII character alone, and every letter and digit as a continuation: any text
  // of the world (and any ASCII text) encodes without [UNK].
  for (int c = '!'; c <= '~'; c++) {
    char one[2] = {(char)c, 0}, cont[4] = {'#', '#', (char)c, 0};
    vocab_add(&v, one);
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) vocab_add(&v, cont);
  }
  const word_list *w = grammar_words();
  for (int i = 0; i < w->n; i++) vocab_add(&v, w->words[i]);
  // Method names: a capitalised syllable begins one, lower-case ones continue it.
  for (int k = 0; k < N_SYLLABLES; k++) {
    char syl[8], cont[12];
    syllable(k, 1, syl);
    vocab_add(&v, syl);
    syllable(k, 0, syl);
    snprintf(cont, sizeof cont, "##%s", syl);
    vocab_add(&v, cont);
  }
  vocab_add_answers(&v, "");  // every answer value one token, as in the BPE

  sbuf j = {0};
  json_head(&j, SPECIALS, 5);
  sb_str(&j, "],\n\"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true, \"handle_chinese_chars\": true, "
             "\"strip_accents\": null, \"lowercase\": false},\n"
             "\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},\n"
             "\"post_processor\": {\"type\": \"TemplateProcessing\", "
             "\"single\": [{\"SpecialToken\": {\"id\": \"[CLS]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
             "{\"SpecialToken\": {\"id\": \"[SEP]\", \"type_id\": 0}}], "
             "\"pair\": [{\"SpecialToken\": {\"id\": \"[CLS]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
             "{\"SpecialToken\": {\"id\": \"[SEP]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}, "
             "{\"SpecialToken\": {\"id\": \"[SEP]\", \"type_id\": 1}}], "
             "\"special_tokens\": {\"[CLS]\": {\"id\": \"[CLS]\", \"ids\": [2], \"tokens\": [\"[CLS]\"]}, "
             "\"[SEP]\": {\"id\": \"[SEP]\", \"ids\": [3], \"tokens\": [\"[SEP]\"]}}},\n"
             "\"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true},\n"
             "\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"continuing_subword_prefix\": \"##\", "
             "\"max_input_chars_per_word\": 100,\n\"vocab\": {\n");
  json_vocab(&j, &v);
  sb_str(&j, "}\n}\n}\n");

  static const char CONFIG[] =
      "{\n  \"tokenizer_class\": \"BertTokenizer\",\n  \"do_lower_case\": false,\n  \"cls_token\": \"[CLS]\",\n"
      "  \"sep_token\": \"[SEP]\",\n  \"pad_token\": \"[PAD]\",\n  \"unk_token\": \"[UNK]\",\n"
      "  \"mask_token\": \"[MASK]\",\n  \"model_max_length\": 512\n}\n";
  return write_tokenizer_files(dir, &v, &j, CONFIG, vocab_size, err);
}
