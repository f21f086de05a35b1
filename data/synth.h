// synth: a seeded synthetic world of invented facts, for the embedded demo (a tiny model trained
// from scratch learns its language in minutes, then learns to compress and answer questions).
//
// Document i is a short arXiv-style abstract about an invented method: who proposed it, where, in
// which year, its accuracy on an invented benchmark, its size, which method it beats and by how
// many points. Each document states 4 to 6 of these facts (drawn at random, in random order, each
// sentence in one of a few phrasings) and comes with 4 to 8 extractive QA pairs about them.
//
// Each kind of answer has its own closed list of values, disjoint from the others': 128 people,
// 128 places, 64 benchmarks (in capitals), 64 competitors (ending in "Net"), the years 1950-2029,
// accuracies 50-99, sizes of 100-990 million parameters, margins of 2-29 points. Values are drawn
// uniformly and independently for every document, so without the context a model can do no better
// than guess among 28 to 128 values. As in SQuAD, a question shares a word with the sentence that
// answers it (proposed, developed, released, benchmark, parameters, beat, or the benchmark or the
// competitor it names). Every answer is one token, the same token in the context as in the answer:
// a model as small as the demo's learns to answer from a context without first having to learn to
// copy token runs (world 1, with multi-token names and digit-by-digit numbers, taught a
// 1M-parameter model no answering in 4,600 steps). Method names, which are never answers, are still built from random
// syllables (2-3 from 350, so about 43 million), so regenerating a text is not a lookup either.
//
// The language is small on purpose: about 160 words, the answer values, the name syllables and
// the digits. The world comes with its own tokenizer (synth_write_tokenizer): a byte-level BPE
// tokenizer.json (GPT-2 pre-tokenizer adding a prefix space, ignore_merges) in which every word of
// the grammar and every answer value is one token, a method name one token per syllable; being
// byte-level it encodes any text. Hugging Face tokenizers and pith's tokenizer load it and give the
// same ids.
//
// Everything is ASCII and deterministic: document i depends only on (seed, i), through splitmix64,
// so any range of documents can be generated in any order, on any machine.
#ifndef PITH_SYNTH_H
#define PITH_SYNTH_H

#include <stdint.h>

#include "base.h"

#define SYNTH_VERSION 2
#define SYNTH_MAX_QA 10
#define SYNTH_TEXT_CAP 2048
#define SYNTH_FIELD_CAP 192
#define SYNTH_WINDOW_SENTENCES 3

typedef struct {
  const char *kind;               // what is asked: "author", "place", "year", "accuracy", ...
  char question[SYNTH_FIELD_CAP];
  char answer[64];
  int64_t answer_start;           // where the answer starts in the document text (bytes = code points)
  int64_t sentence_start;         // the sentence stating the answer: where it starts in the text,
  int64_t sentence_len;           // and its length
  int64_t window_start;           // 1 to SYNTH_WINDOW_SENTENCES whole sentences of the text, that one
  int64_t window_len;             // among them (start and length)
} synth_qa;

typedef struct {
  char id[32];                    // "synth-0000042": the QA pairs of a document share its id (and split)
  char title[SYNTH_FIELD_CAP];
  char text[SYNTH_TEXT_CAP];      // the abstract
  int n_qa;
  synth_qa qa[SYNTH_MAX_QA];      // (n_qa)
} synth_doc;

// Document `index` of the world `seed`, with its QA pairs, into *doc.
void synth_generate(uint64_t seed, int64_t index, synth_doc *doc);

// Documents 0 .. n_docs-1 as JSONL, written atomically (PATH.partial, fsync, rename):
//   docs_path:  {"id", "title", "abstract", "categories": "synth"} a line (`pith data ingest
//               --format arxiv` reads it);
//   qa_path:    {"id", "qid", "kind", "context", "question", "answers": [{"text", "answer_start"}]}
//               a line (`--format qa` reads it);
//   sentence_path, window_path: the same questions, with a short context instead of the document:
//               the sentence stating the answer, or a window of 1 to 3 whole sentences around it.
//               They make a curriculum for a model learning to answer from a context: the demo's
//               tiny LM learns to pick the answer out of one sentence within about a thousand
//               steps, out of a whole document not in five thousand; from one sentence it moves
//               on to windows, and from windows to documents. Same ids, so same splits.
// Any path may be NULL.
int synth_write_jsonl(uint64_t seed, int64_t n_docs, const char *docs_path, const char *qa_path,
                      const char *sentence_path, const char *window_path, pith_err *err);

// The world's tokenizer: DIR/tokenizer.json and DIR/tokenizer_config.json (bos <|bos|>, eos
// <|eos|>, pad <|pad|>; bos added by the post-processor, as LLaMA's). DIR is created if needed.
// *vocab_size (may be NULL) gets its size.
int synth_write_tokenizer(const char *dir, int *vocab_size, pith_err *err);
// DIR/tokenizer.json and tokenizer_config.json: a cased BERT WordPiece tokenizer for the world's
// token classifiers (pith distill method=classifier, LLMLingua-2's scorer): BERT's normalizer and
// pre-tokenizer, [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4; every grammar word and answer value one
// piece, a method name a capitalised syllable then ##syllables; every printable ASCII character
// (letters and digits also as ##x), so no ASCII text meets [UNK]. *vocab_size: its size.
int synth_write_bert_tokenizer(const char *dir, int *vocab_size, pith_err *err);

#endif
