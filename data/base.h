// base: the small things every pith module uses. A library function reports failure by
// returning -1 (or NULL) and filling a pith_err; only drivers print and exit.
#ifndef PITH_BASE_H
#define PITH_BASE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char msg[1024];   // one line: "what: where: why"; empty when no error
} pith_err;

// Format into err (if not NULL) and return -1, so a failing path reads `return pith_fail(err, ...)`.
int pith_fail(pith_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Write `len` bytes to `path` atomically: a temp file beside it, fsync, rename. A reader sees the
// old file or the new one, never half of one.
int pith_write_file_atomic(const char *path, const void *data, size_t len, pith_err *err);

// Read a whole file into a malloc'd buffer (NUL-terminated; *len excludes the NUL).
char *pith_read_file(const char *path, size_t *len, pith_err *err);

// Seconds on a monotonic clock, for durations and rates.
double pith_now_s(void);

// Whether path is a folder / a regular file (links followed).
int pith_is_dir(const char *path);
int pith_is_file(const char *path);
// mkdir -p: path and its missing parents (0755). 0, or -1 naming the folder that failed.
int pith_mkdirs(const char *path, pith_err *err);
// Make a folder's entries (creations, renames) durable; file systems that cannot fsync a folder
// are not an error.
int pith_fsync_dir(const char *path, pith_err *err);
// rm -r (links are removed, never followed): 0 when path is gone (or was never there), else -1.
int pith_remove_tree(const char *path);

// Paths, as strings (nothing is looked up on disk).
// The last component: what follows the last '/' (the whole path when it has none; "" when it ends
// in '/'). Points into path.
const char *pith_base_name(const char *path);
// The folder that holds path, into out (size bytes, cut to fit): the part before the last '/';
// "." when path has no '/', "/" when the only '/' leads. Returns out.
char *pith_parent_dir(const char *path, char *out, size_t size);
// dir + "/" + name into out (size bytes); 0, or -1 when it does not fit (out then holds a cut path).
int pith_path_join(char *out, size_t size, const char *dir, const char *name);

#endif
