// utf8: the one UTF-8 codec of pith. Strict decoding (RFC 3629: no overlong forms, no surrogates,
// nothing past U+10FFFF, no truncated sequences), encoding, validation, counting and stepping over
// code points. Callers choose what an invalid byte means to them (an error, U+FFFD, a byte of its
// own); these functions only say where and how long it is.
#ifndef PITH_UTF8_H
#define PITH_UTF8_H

#include <stddef.h>
#include <stdint.h>

// The well-formed sequence at s (n > 0 bytes available): its length 1..4 and its code point in
// *cp, or 0 when the bytes there are not one (*cp untouched).
int utf8_decode(const char *s, size_t n, uint32_t *cp);

// Length (1..3) of the maximal ill-formed subpart at s, which a lossy decoder replaces by one
// U+FFFD (as Unicode's recommended practice, WHATWG and Rust's from_utf8_lossy do). Only
// meaningful where utf8_decode returned 0.
int utf8_invalid_len(const char *s, size_t n);

// Length (1..4) of the character at s, an invalid byte counting as a character of its own.
size_t utf8_char_len(const char *s, size_t n);

// Write cp (<= U+10FFFF) as UTF-8 to out (room for 4 bytes); returns the bytes written.
size_t utf8_encode(uint32_t cp, char *out);

// -1 when s (n bytes) is well-formed UTF-8, else the byte offset of the first invalid sequence.
int64_t utf8_invalid_at(const char *s, size_t n);
static inline int utf8_valid(const char *s, size_t n) { return utf8_invalid_at(s, n) < 0; }

// Code points in s, counting bytes that start a character (exact for valid UTF-8).
size_t utf8_count(const char *s, size_t n);

// Start of the character that ends right before s[i] (i > 0): back over at most 3 continuation
// bytes, never before s[0].
size_t utf8_prev(const char *s, size_t i);

// Byte offset of code point k (0-based) of valid UTF-8 s (n bytes): n when k is the count, n + 1
// when k is past the end.
size_t utf8_offset(const char *s, size_t n, size_t k);

#endif
