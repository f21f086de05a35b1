// tokenizer: text <-> token ids for the models pith trains and compresses for, giving the same ids
// as the tokenizers users already trust, so corpora and checkpoints made by pith interoperate.
//
// Formats read:
//   - Hugging Face tokenizer.json with a BPE model, byte-level (GPT-2, LLaMA-3, Qwen2) or
//     SentencePiece-style (LLaMA-2, Mistral: Metaspace or Prepend/Replace normalizer, byte
//     fallback); added/special tokens are matched in the raw text first, as HF tokenizers does.
//   - tokenizer.json with a WordPiece model (BERT: BertNormalizer, BertPreTokenizer, WordPiece
//     decoder; bert-base-multilingual-cased, bert-base-uncased) or a Unigram model (XLM-R:
//     sentencepiece's Precompiled charsmap, Replace, Metaspace; byte_fallback).
//   - a GPT-2 style folder: vocab.json + merges.txt.
//   - a llama2.c tokenizer.bin (encoded and decoded as llama2.c's run.c does).
//   - a tiktoken file (cl100k_base.tiktoken, or tiktoken's cache name for it: 40 hex digits):
//     base64 token + rank a line, cl100k's pre-tokenizer regex, ranks as merge priorities.
// bos/eos/pad come from tokenizer_config.json and generation_config.json beside tokenizer.json.
//
// A loaded tokenizer is immutable: any number of threads may encode and decode with it at once
// (all scratch memory is per call). Ids are int32 (a vocabulary never nears 2^31).
#ifndef PITH_TOKENIZER_H
#define PITH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

typedef struct tokenizer tokenizer;

// path: a tokenizer.json, a llama2.c tokenizer.bin, or a folder holding tokenizer.json (or
// vocab.json + merges.txt, or tokenizer.bin). NULL and a one-line message naming the file on
// failure, e.g. "x/tokenizer.json: model type 'WordLevel' is not supported (BPE, WordPiece or Unigram)".
tokenizer *tokenizer_load(const char *path, pith_err *err);
void tokenizer_free(tokenizer *tok);

// text: len bytes of UTF-8 (need not be NUL-terminated). *ids: malloc'd (n_ids), caller frees;
// add_bos: add the special tokens a single text gets (HF's add_special_tokens=True): those the
// tokenizer.json post-processor puts around it (TemplateProcessing's "single", BertProcessing,
// RobertaProcessing: [CLS] text [SEP] for BERT, <s> text </s> for XLM-R, <|begin_of_text|> text
// for LLaMA-3), or, without such a post-processor, the bos id when the tokenizer has one. Special
// tokens written in the text are matched as special tokens (BERT's normalizer reads an invalid
// UTF-8 byte as U+FFFD, which clean_text removes). Returns 0, or -1 and err.
int tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int add_bos,
                     int32_t **ids, size_t *n_ids, pith_err *err);

// ids: (n). A malloc'd NUL-terminated UTF-8 string (invalid byte runs become U+FFFD, as HF
// does), or NULL and err for an id outside the vocabulary. skip_special: leave special tokens
// out. The leading space the encoder adds (SentencePiece-style, llama2.c) is removed; WordPiece
// pieces are joined at "##" and spaces before punctuation removed (HF's cleanup).
char *tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                       pith_err *err);
// The same, with the text's length in *len: ids may decode to a NUL (byte-level BPE's byte 0, a
// <0x00> byte piece), which a NUL-terminated string alone cannot carry.
char *tokenizer_decode_n(const tokenizer *tok, const int32_t *ids, size_t n, int skip_special, size_t *len,
                         pith_err *err);

// The tokenizer.json normalizer applied to text (len bytes): malloc'd, NUL-terminated, its length
// in *out_len (may be NULL); NULL and err on failure. The text itself when there is no normalizer.
char *tokenizer_normalize(const tokenizer *tok, const char *text, size_t len, size_t *out_len, pith_err *err);

int32_t tokenizer_vocab_size(const tokenizer *tok);        // largest id + 1, added tokens included
int32_t tokenizer_bos_id(const tokenizer *tok);            // -1 when none ([CLS] for BERT)
int32_t tokenizer_pad_id(const tokenizer *tok);            // -1 when none
int32_t tokenizer_unk_id(const tokenizer *tok);            // -1 when none
int tokenizer_eos_ids(const tokenizer *tok, const int32_t **ids);  // count; *ids: all eos ids
int tokenizer_adds_bos(const tokenizer *tok);  // 1 when the model expects bos (or the post-processor's tokens)
int32_t tokenizer_token_id(const tokenizer *tok, const char *piece);  // -1 when absent
const char *tokenizer_token_piece(const tokenizer *tok, int32_t id);  // NULL when no such id
int tokenizer_is_special(const tokenizer *tok, int32_t id);
// The special ids add_bos puts before (*pre, n_pre) and after (*post, n_post) a text: [CLS] and
// [SEP] for BERT, <s> and </s> for XLM-R, the bos alone for LLaMA; for callers that cut a long
// text into chunks and wrap each (LLMLingua-2's 510 + 2). Returns n_pre + n_post.
int tokenizer_special_around(const tokenizer *tok, const int32_t **pre, int *n_pre, const int32_t **post, int *n_post);

// The main file it was loaded from (tokenizer.json, vocab.json or tokenizer.bin), and all the
// files that shaped it (configs and merges.txt included), for fingerprints. *paths: (count).
const char *tokenizer_source_path(const tokenizer *tok);
int tokenizer_source_files(const tokenizer *tok, const char *const **paths);

#endif
