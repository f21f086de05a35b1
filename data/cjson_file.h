// cjson_file: a cJSON document written as a file the way pith writes every JSON file: pretty,
// with a final newline, atomically (temp file, fsync, rename). Manifests, checkpoint metadata and
// evaluation metrics all go through it.
#ifndef PITH_CJSON_FILE_H
#define PITH_CJSON_FILE_H

#include <cJSON.h>

#include "base.h"

// 0, or -1 with err naming path.
int cjson_write_file(const char *path, const cJSON *root, pith_err *err);

#endif
