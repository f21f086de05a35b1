// fuzz.h: what the harnesses share. Readers that take a path get the input through a file of this
// process's own (in $PITH_FUZZ_TMP, else /tmp); tokenizers to encode with come from environment
// variables that scripts/fuzz sets.
#ifndef PITH_FUZZ_H
#define PITH_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"
#include "tokenizer.h"

// The input as the file NAME in this process's folder; returns its path (static storage).
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
  static char dir[512], path[1024];
  if (!dir[0]) {
    const char *tmp = getenv("PITH_FUZZ_TMP");
    snprintf(dir, sizeof dir, "%s/pith_fuzz_%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    if (pith_mkdirs(dir, NULL)) abort();
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
  return path;
}

// The tokenizer named by environment variable var, loaded once; the process stops with a message
// when it is unset or does not load (scripts/fuzz sets it).
static inline tokenizer *fuzz_tokenizer(const char *var) {
  const char *path = getenv(var);
  pith_err err = {{0}};
  tokenizer *t = path ? tokenizer_load(path, &err) : NULL;
  if (!t) {
    fprintf(stderr, "fuzz: %s: %s\n", var, path ? err.msg : "not set (scripts/fuzz sets it)");
    exit(2);
  }
  return t;
}

#endif
