// distill_classifier: `pith distill` with `method: classifier`, LLMLingua-2's keep/drop token
// classifier, minus the training loop (the trainer runs it: trainer.c's encoder path).
//
// Labels live on the words of a text (data/word_align.h) and come from one of two sources:
//   label_file  JSONL pairs {"original": ..., "compressed": ...}: the compressed text's words aligned
//               in order onto the original's (word_align); a pair with more than label_max_unmatched
//               of its compressed words left unmatched is an error naming FILE:LINE, or skipped and
//               counted with label_skip_unaligned.
//   the target  texts of train_file (a corpus) compressed by the LLMLingua algorithm with the target
//               LM as its own scorer (models/hard_compress.h, method llmlingua, at label_rate and
//               label_iterative_size, as `pith compress --method llmlingua` does): a word is kept
//               when any of the target's kept tokens overlaps its bytes.
// A word's label goes to each of its classifier tokens; [CLS]/[SEP]/pads get none (-1). Texts
// longer than cutoff_len tokens are cut into rows at word boundaries. The last val_size share of
// the texts is held out: validation loss, precision/recall/F1 of "keep" and the class balance.
#ifndef PITH_DISTILL_CLASSIFIER_H
#define PITH_DISTILL_CLASSIFIER_H

#include <stdint.h>
#include <stdio.h>

#include "encoder.h"
#include "tokenizer.h"
#include "train_args.h"
#include "word_align.h"

// One labeled text: its words and their keep/drop labels.
typedef struct {
  char *text;
  word_span *words;  // (n_words)
  uint8_t *keep;     // (n_words) 1 = kept
  int64_t n_words;
} cls_text;

typedef struct {
  cls_text *texts;
  int64_t n, cap;
  int64_t skipped;   // pairs that did not align (label_skip_unaligned) or texts that gave no words
} cls_texts;

void cls_texts_free(cls_texts *t);

// label_file → texts. One line: "FILE:LINE: ..." for a bad line or a pair that does not align.
int cls_labels_from_file(const char *path, int64_t window, double max_unmatched, int skip_unaligned, cls_texts *out,
                         pith_err *err);

// The target's own judgement (see above) on the first n_texts non-blank texts of the corpus
// train_file (all splits, corpus order). target_dir: a causal LM folder with its tokenizer.
int cls_labels_from_target(const char *target_dir, const char *train_file, int64_t n_texts, double rate,
                           int iterative_size, int threads, cls_texts *out, pith_err *err);

// Word labels from a target's token-level decision: ids (n) are text's tokens under tok (no bos)
// and kept[j] says whether token j was kept; a word is kept when a kept token overlaps it.
// keep: (n_words). -1 when the ids do not decode back to the text (err says so).
int cls_words_from_tokens(const tokenizer *tok, const char *text, const word_span *words, int64_t n_words,
                          const int32_t *ids, const uint8_t *kept, int64_t n, uint8_t *keep, pith_err *err);

// The classifier tokens of text's words: *ids (n_ids, no special tokens) and *word_of (n_ids) the
// word each token belongs to. Each whitespace-separated chunk is encoded alone (as LLMLingua-2's
// training tokenizes word by word), and a chunk's tokens go to its words by the tokens its
// prefixes share with it (a token that crosses a word boundary goes to the later word).
int cls_word_tokens(const tokenizer *tok, const char *text, const word_span *words, int64_t n_words, int32_t **ids,
                    int64_t **word_of, int64_t *n_ids, pith_err *err);

// Token-level "keep" metrics of a classifier on labeled tokens.
typedef struct {
  double loss;                    // mean cross-entropy over labeled tokens
  int64_t tp, fp, fn, tn;         // keep is the positive class
  double precision, recall, f1;   // of keep (0 where undefined)
  double keep_share;              // labeled tokens that are keep (the class balance)
  double accuracy;
} cls_metrics;
void cls_metrics_finish(cls_metrics *m);

// The training data: rows of classifier tokens with their labels, train rows then held-out ones,
// and the position of the training order (a seeded shuffle per epoch), for bit-exact resume.
typedef struct distill_cls distill_cls;

// Labels from a->label_file or the target, tokenized by tok into rows of at most a->cutoff_len.
distill_cls *distill_cls_open(const train_args *a, const tokenizer *tok, pith_err *err);
void distill_cls_free(distill_cls *c);
int64_t distill_cls_train_rows(const distill_cls *c);
// The next training batch of B rows (the next epoch when this one is done): ids, mask (B, T) and
// labels (B, T) i64 with -100 where there is none. In the current scope. *n_tokens: real tokens.
int distill_cls_next(distill_cls *c, int B, pt_device dev, pt_tensor **ids, pt_tensor **mask, pt_tensor **labels,
                     int64_t *n_tokens, pith_err *err);
// The training order's position as text ("cls:EPOCH:ROW"), and back.
void distill_cls_tell(const distill_cls *c, char *buf, size_t len);
int distill_cls_seek(distill_cls *c, const char *cursor, pith_err *err);

// Mean cross-entropy over the labeled tokens; dropout from g (NULL: none). In the current scope.
pt_tensor *distill_cls_loss(const encoder_model *m, pt_gen *g, const pt_tensor *ids, const pt_tensor *mask,
                            const pt_tensor *labels, pith_err *err);
// The held-out rows, B at a time, gradients off.
int distill_cls_evaluate(const encoder_model *m, const distill_cls *c, int B, cls_metrics *out, pith_err *err);

// The classifier to train: model_name_or_path (an encoder folder; a head of 2 labels drawn when it
// has none) or random weights of model_config (a config.json), 2 labels (drop, keep), f32.
// Refuses a folder that is not an encoder and a tokenizer larger than the model's vocabulary.
encoder_model *distill_cls_model(const train_args *a, const tokenizer *tok, pith_err *err);

// Everything that can be checked before the run folder exists (distill_preflight for classifier).
int distill_cls_preflight(const train_args *a, pith_err *err);

// RUN/labels.jsonl: one line per labeled text, {"original": ..., "keep": "0110..."} over its words,
// "split": "train" or "val"; what the classifier was trained and measured on.
int distill_cls_write_labels(const distill_cls *c, const char *path, pith_err *err);

#endif
