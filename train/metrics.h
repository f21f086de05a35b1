// metrics: the scores pith's evaluation reports, computed the way the scripts people cite compute
// them, so a number from `pith eval` can sit next to a published one.
//
//   SQuAD v1.1 EM/F1   the official evaluate-v1.1.py: normalize_answer (lower, drop ASCII
//                      string.punctuation, drop the words a|an|the, collapse whitespace), F1 over
//                      the multiset of normalised tokens (0 when none are shared), max over golds,
//                      dataset score = 100 * mean.
//   raw EM/F1          the un-normalised variant of 500xCompressor's evaluate_2.py: EM is
//                      pred.strip() == gold.strip(); F1 is the same multiset F1 over raw tokens.
//                      That script tokenises with nltk.word_tokenize; pith splits on whitespace
//                      (Python's str.split()) instead, so raw F1 differs from it where punctuation
//                      is glued to words ("cat." is one token here, two in NLTK).
//   ROUGE-1/2/L        Google's `rouge-score` package, RougeScorer(['rouge1','rouge2','rougeL'],
//                      use_stemmer=False): lower-case, every run of characters outside [a-z0-9]
//                      is a separator; F-measure of n-gram overlap, ROUGE-L from the LCS (not
//                      Lsum). Stemming (use_stemmer=True) is not supported.
//   BLEU-4             sacrebleu 2.x corpus_bleu defaults: tokenize '13a', smooth 'exp',
//                      lowercase off, max order 4, brevity penalty, one reference per segment;
//                      sentence BLEU = sacrebleu.sentence_bleu (same, effective order on).
//   exact match        byte equality of the two strings (regeneration).
//
// Text is UTF-8. Python's Unicode-aware parts are matched code point by code point: whitespace
// (str.split/strip) is str.isspace()'s set; str.lower() and re's \b (\w = '_' or str.isalnum())
// come from tables generated from Python 3.11's unicodedata (Unicode 14.0.0), with U+0130 lowering
// to "i" + U+0307 as Python does. The one approximation is Final_Sigma (Σ -> ς at a word's end):
// "cased" and "case-ignorable" are approximated (Latin/Greek/Cyrillic letters; apostrophes, '.',
// ':', combining marks), which covers Greek text. Typographic quotes (’ “ ”) are NOT in
// string.punctuation, so SQuAD normalisation keeps them, exactly like the official script. Bytes
// that are not valid UTF-8 are kept as they are and count as word characters (Python would have
// refused to decode them). A newer Python's Unicode version may differ for new characters.
//
// Functions returning a score return NAN only when memory runs out.
#ifndef PITH_METRICS_H
#define PITH_METRICS_H

#include <stddef.h>
#include <stdint.h>

// ---- SQuAD v1.1 (per example, in [0, 1]; the max over the n >= 1 gold answers; 0 if n == 0) ----
double metrics_squad_em(const char *pred, const char *const *golds, int n);
double metrics_squad_f1(const char *pred, const char *const *golds, int n);

// normalize_answer(s) as a malloc'd string (NULL when memory runs out). For tests and debugging.
char *metrics_squad_normalize(const char *s);

// ---- 500xCompressor's un-normalised variant (per example, in [0, 1]; max over the golds) ----
double metrics_raw_em(const char *pred, const char *const *golds, int n);
double metrics_raw_f1(const char *pred, const char *const *golds, int n);

// Dataset EM/F1 the way evaluate-v1.1.py sums them: add each example's score, then 100 * mean.
typedef struct {
  double em_sum, f1_sum;   // sums of per-example scores in [0, 1]
  int64_t n;               // examples added
} squad_acc;
void squad_acc_init(squad_acc *a);
// Adds one example (SQuAD-normalised scores); returns -1 when memory runs out.
int squad_acc_add(squad_acc *a, const char *pred, const char *const *golds, int n_golds);
double squad_acc_em(const squad_acc *a);   // 100 * mean EM (0 when empty)
double squad_acc_f1(const squad_acc *a);   // 100 * mean F1 (0 when empty)

// ---- ROUGE (rouge-score, use_stemmer=False): F-measures in [0, 1]; any output may be NULL ----
// Returns 0, or -1 when memory runs out (outputs then NAN).
int metrics_rouge(const char *pred, const char *ref, double *r1, double *r2, double *rl);

// ---- BLEU (sacrebleu 2.x defaults) ----
#define METRICS_BLEU_ORDER 4
typedef struct {
  int64_t sys_len, ref_len;                 // summed hypothesis / reference token counts
  int64_t correct[METRICS_BLEU_ORDER];      // clipped n-gram matches, n = 1..4
  int64_t total[METRICS_BLEU_ORDER];        // hypothesis n-grams, n = 1..4
} bleu_acc;
void bleu_acc_init(bleu_acc *a);
// Adds one segment (hypothesis, its single reference). Returns -1 when memory runs out.
int bleu_acc_add(bleu_acc *a, const char *pred, const char *ref);
// corpus_bleu(...).score, in [0, 100].
double bleu_acc_score(const bleu_acc *a);
// sentence_bleu(pred, [ref]).score, in [0, 100] (effective order on).
double metrics_sentence_bleu(const char *pred, const char *ref);

// sacrebleu's 13a tokenisation (after rstrip), tokens joined by single spaces; malloc'd or NULL.
char *metrics_bleu_tokenize_13a(const char *s);

// ---- regeneration ----
// 1 when the strings are byte-for-byte equal, else 0.
int metrics_exact_match(const char *pred, const char *ref);

#endif
