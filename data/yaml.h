// yaml: the reader behind run_config's files: the YAML subset run configs use, read the way
// YAML 1.1 (libyaml, PyYAML) reads it. Dependency-free; its one user is run_config.c, which turns
// the tree into "dotted.key: text" entries.
//
// One document of block mappings; values that are plain, 'single-quoted' or "double-quoted" scalars (every YAML
// escape), literal (|) and folded (>) block scalars, flow [lists] and {mappings}, and block lists;
// comments; `---` / `...` markers and a %YAML directive. Not supported, refused with a clear error:
// anchors and aliases, tags, explicit `? key` entries, other directives, and the line breaks
// U+0085/U+2028/U+2029 written raw (their escapes \N \L \P are fine). The file is read into a
// small tree of nodes (every node knows its line and column), which flatten() then turns into
// "dotted.key: text" entries.
#ifndef PITH_YAML_H
#define PITH_YAML_H

#include <stddef.h>

#include "base.h"

// YAML's limit on an implicit (simple) key, in characters as written (quotes and escapes included).
#define YAML_MAX_KEY_CHARS 1024

typedef enum { YN_SCALAR, YN_LIST, YN_MAP } yn_kind;

typedef struct ynode ynode;
struct ynode {
  yn_kind kind;
  int plain;          // a scalar written plain (null when "", ~, null, Null, NULL)
  char *text;         // scalar text (may hold a NUL from an escape: see len)
  size_t len;
  size_t line, col;   // 1-based, of the node's first character
  ynode **kids;       // list: items; map: key, value, key, value, ...
  int n, cap;
};

void yn_free(ynode *n);

typedef struct {
  const char *path;
  const char *s;      // the text: UTF-8, '\n' line breaks, NUL-terminated
  size_t len;
  size_t i;           // cursor
  size_t line, col;   // of the cursor, 0-based; col counts characters, not bytes
  int flow;           // depth of [ ] / { } around the cursor
  int sk;             // block context: at a line start or after '-' (where tabs may not indent)
  size_t tok_line;    // line where the last scalar or flow collection ended (SIZE_MAX: the cursor
                      // is already at the start of a later line)
  int depth;
  pith_err *err;
  int failed;
} yparser;

// Bytes a YAML file may hold: UTF-8 of the printable characters, tab and line breaks (YAML 1.1's
// c-printable). CR and CRLF line breaks become '\n' in place. 0 or -1 with err set.
int yaml_check_text(const char *path, char *text, size_t *len, pith_err *err);
// 1 when the text at the cursor starts with a UTF-8 byte-order mark.
int yaml_at_bom(const yparser *p);
// The next document of p into *root (a tree to free with yn_free): 1, 0 at the end of the text,
// -1 with p->err set ("path:line:col: invalid YAML: ..."). first: the text's first document.
int yaml_next_document(yparser *p, int first, ynode **root);

#endif
