// loader: fixed-shape batches from a corpus file, for training and evaluation.
//
//   CUT   documents: each document cut or padded to N tokens (500xCompressor pretraining).
//   PACK  documents: documents joined with an eos after each, cut into consecutive N-token windows.
//   QA    qa: the context cut or padded to N tokens for the encoder, and the decoder sequence
//         "Question: " question " Answer: " answer eos in M tokens, whose loss mask covers the
//         answer and its eos only (the rows are task.h's: task_encoder_row, task_qa_decoder_row).
//
// Order is deterministic: a permutation drawn from (seed, epoch) with splitmix64 + Fisher-Yates
// (PACK: the documents are shuffled, packed, and the windows shuffled again). Every rank draws
// the same permutation and takes positions rank, rank + world_size, ...; each epoch drops the
// n mod world_size examples at the end of the order so all ranks yield the same number of batches.
// A cursor (epoch, position) saved after any batch and passed to loader_open continues with
// exactly the batches an uninterrupted run would have produced; a cursor of another world size
// continues after the examples its ranks consumed between them (so ranks × batch held the same
// gives the same global batches). Single-threaded, like HDF5 here.
#ifndef PITH_LOADER_H
#define PITH_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "corpus.h"
#include "task.h"

typedef enum { LOADER_CUT = 0, LOADER_PACK = 1, LOADER_QA = 2 } loader_mode;

#define LOADER_ALL_SPLITS (-1)

typedef struct {
  loader_mode mode;
  int batch_size;                  // B
  int seq_len;                     // N: encoder tokens per row
  int dec_len;                     // M: decoder tokens per row (QA only)
  task_tokens tokens;              // pad fills padding positions; eos: PACK separator, QA end of
                                   // answer, CUT with doc_eos; qp/ap: the QA prompt (copied)
  int doc_eos;                     // CUT: put eos after a document shorter than N
  int split;                       // CORPUS_SPLIT_TRAIN / VAL / TEST, or LOADER_ALL_SPLITS
  int shuffle;                     // 0: corpus order every epoch
  uint64_t seed;
  int rank, world_size;            // this process among world_size (0 means 1)
  int drop_last;                   // skip an epoch's last, partial batch
} loader_config;

// Where a run stands. seed and n_items guard against resuming a different run.
typedef struct {
  int64_t epoch;
  int64_t position;    // examples of this rank's share already yielded in this epoch
  uint64_t seed;
  int world_size;
  int64_t n_items;     // examples (PACK: windows) per epoch over all ranks
} loader_cursor;

#define LOADER_CURSOR_MAX 160   // room for the string form

// "pith-loader-cursor 1 epoch=E position=P seed=S world_size=W n_items=N"
int loader_cursor_format(const loader_cursor *cur, char *buf, size_t size);
int loader_cursor_parse(const char *s, loader_cursor *cur, pith_err *err);

// A batch; its arrays belong to the loader and stay valid until the next loader_next.
typedef struct {
  int B, N, M;             // shapes (M = 0 unless QA)
  int n_rows;              // rows that hold examples; rows n_rows..B-1 are padding (masks 0)
  int64_t epoch;
  int32_t *ids;            // (B, N) CUT/PACK: the tokens; QA: the context
  uint8_t *mask;           // (B, N) 1 = real token (attend; CUT/PACK: also a regeneration target)
  int64_t *index;          // (B) corpus record of the row (PACK: first document in the window); -1 = padding
  int32_t *dec_ids;        // (B, M) QA: "Question: " question " Answer: " answer eos pad...
  uint8_t *dec_mask;       // (B, M) QA: 1 = real token
  uint8_t *dec_loss_mask;  // (B, M) QA: 1 = answer token or its eos (the target at that position)
  int32_t *answer_start;   // (B) QA: position of the first answer token in dec_ids; -1 = padding
} loader_batch;

typedef struct loader loader;

// Open a loader over the corpus at path. resume: NULL to start at epoch 0, or a saved cursor.
loader *loader_open(const char *path, const loader_config *cfg, const loader_cursor *resume, pith_err *err);
void loader_close(loader *l);  // NULL is fine
// 1: *batch filled. 0: the epoch is over (no batch); the next call starts the next epoch. -1: error.
int loader_next(loader *l, loader_batch *batch, pith_err *err);
// The cursor after the last batch returned.
loader_cursor loader_tell(const loader *l);
int64_t loader_examples_per_epoch(const loader *l);  // this rank's share
int64_t loader_batches_per_epoch(const loader *l);   // this rank's, after drop_last
corpus *loader_corpus(loader *l);                     // the open corpus (e.g. to read answer texts)

#endif
