// word_align: keep/drop labels over the words of a text, the unit LLMLingua-2's labels live on.
//
// Words: maximal runs of bytes that are neither whitespace nor ASCII punctuation, and each ASCII
// punctuation character on its own ("Lily's dog, Max." → Lily ' s dog , Max .), so that a
// compressed text that drops a comma still matches the word before it. Bytes >= 0x80 (UTF-8)
// are word bytes.
//
// Alignment (LLMLingua-2's data pipeline, its rule written anew): the compressed text's words are
// matched in order onto the original's. Each compressed word looks for an equal (ASCII
// case-insensitive), still unmatched original word at distance 0, 1, 2, ... < window from a
// cursor, forward first, then backward; a forward match more than window/2 ahead moves the cursor
// by window/2 only (one stray match does not drag the rest), any other match moves it there. A
// matched original word is kept; a compressed word with no match is counted as unmatched.
#ifndef PITH_WORD_ALIGN_H
#define PITH_WORD_ALIGN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  size_t start, end;  // bytes [start, end) of the text
} word_span;

// The words of text[0..len) into *out (malloc'd, caller frees; NULL when there are none).
// Returns the count, or -1 when out of memory.
int64_t word_split(const char *text, size_t len, word_span **out);

// Align the compressed words onto the original ones: keep[i] = 1 when original word i is matched.
// orig / comp: the texts and their words (word_split). window >= 1. Returns the number of
// compressed words left unmatched.
int64_t word_align(const char *orig, const word_span *ow, int64_t n_orig, const char *comp, const word_span *cw,
                   int64_t n_comp, int64_t window, uint8_t *keep);

#endif
