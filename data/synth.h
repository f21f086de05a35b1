// synth: a seeded synthetic world of invented facts, for the embedded demo (a tiny model trained
// from scratch learns its language in minutes, then learns to compress and answer questions).
//
// Document i is a short arXiv-style abstract about an invented method: who proposed it, where, in
// which year, its accuracy on an invented benchmark, its parameter count, which method it builds
// on and which it beats, by how many points. Each document states 4 to 6 of these facts (drawn at
// random, in random order, each sentence in one of a few phrasings) and comes with 4 to 9
// extractive QA pairs about them. Answers are invented names (2-3 syllables from 350, so about
// 43 million names) or numbers drawn uniformly (years 1800-2099, accuracies 10.0-99.9, parameter
// counts 1000-99999, margins 1.0-29.9), independently for every document, so a model without the
// context cannot do better than guessing from those ranges.
//
// The language is small on purpose: about 160 words plus the name syllables and digits. The world
// comes with its own tokenizer (synth_write_tokenizer): a byte-level BPE tokenizer.json (GPT-2
// pre-tokenizer, ignore_merges) in which every word of the grammar is one token, a name is one token
// per syllable, and a number one token per digit; being byte-level it encodes any text. Hugging
// Face tokenizers and pith's tokenizer load it and give the same ids.
//
// Everything is ASCII and deterministic: document i depends only on (seed, i), through splitmix64,
// so any range of documents can be generated in any order, on any machine.
#ifndef PITH_SYNTH_H
#define PITH_SYNTH_H

#include <stdint.h>

#include "base.h"

#define SYNTH_VERSION 1
#define SYNTH_MAX_QA 10
#define SYNTH_TEXT_CAP 2048
#define SYNTH_FIELD_CAP 192

typedef struct {
  const char *kind;               // what is asked: "author", "place", "year", "accuracy", ...
  char question[SYNTH_FIELD_CAP];
  char answer[64];
  int64_t answer_start;           // where the answer starts in the document text (bytes = code points)
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
//   docs_path: {"id", "title", "abstract", "categories": "synth"} a line (`pith data ingest
//              --format arxiv` reads it);
//   qa_path:   {"id", "qid", "kind", "context", "question", "answers": [{"text", "answer_start"}]}
//              a line (`--format qa` reads it). Either path may be NULL.
int synth_write_jsonl(uint64_t seed, int64_t n_docs, const char *docs_path, const char *qa_path, pith_err *err);

// The world's tokenizer: DIR/tokenizer.json and DIR/tokenizer_config.json (bos <|bos|>, eos
// <|eos|>, pad <|pad|>; bos added by the post-processor, as LLaMA's). DIR is created if needed.
// *vocab_size (may be NULL) gets its size.
int synth_write_tokenizer(const char *dir, int *vocab_size, pith_err *err);

#endif
