// arena: bump allocation in blocks, freed all at once. For many small objects that die together
// (a batch of parsed records, a JSON document): no per-object free, no per-object header.
#ifndef PITH_ARENA_H
#define PITH_ARENA_H

#include <stddef.h>

typedef struct arena_block arena_block;

typedef struct {
  arena_block *head;
  int oom;                     // an allocation failed (cleared by arena_free)
} arena;                       // zero-initialized: empty

// n bytes, 16-byte aligned, or NULL (and a->oom set) when out of memory.
void *arena_alloc(arena *a, size_t n);
// Free every block; the arena is empty (and usable) again.
void arena_free(arena *a);
// A NUL-terminated copy of s (n bytes), or NULL.
char *arena_strndup(arena *a, const char *s, size_t n);
// A formatted message (at most 599 bytes; longer is cut); "out of memory" when allocation fails,
// so the result is always a string.
const char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
