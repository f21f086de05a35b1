// base: atomic file writes and whole-file reads, and their errors.
#include "base.h"
#include "check.h"

int main(void) {
  pith_err err = {{0}};
  char dir[] = "/tmp/pith_test_base_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/f.bin", dir);

  CHECK(pith_write_file_atomic(path, "hello", 5, &err) == 0);
  size_t len = 0;
  char *got = pith_read_file(path, &len, &err);
  CHECK(got && len == 5 && memcmp(got, "hello", 5) == 0 && got[5] == 0);
  free(got);

  // Overwrite: the new content replaces the old one whole.
  CHECK(pith_write_file_atomic(path, "bye", 3, &err) == 0);
  got = pith_read_file(path, &len, &err);
  CHECK(got && len == 3 && !strcmp(got, "bye"));
  free(got);

  // Errors name the file.
  char missing[300];
  snprintf(missing, sizeof missing, "%s/nope/f.bin", dir);
  CHECK(pith_write_file_atomic(missing, "x", 1, &err) == -1);
  CHECK_CONTAINS(err.msg, "nope/f.bin");
  CHECK(pith_read_file(missing, &len, &err) == NULL);
  CHECK_CONTAINS(err.msg, "cannot open");

  // Folders: mkdir -p, fsync, is-a-folder / is-a-file, rm -r.
  char deep[320], file[360];
  snprintf(deep, sizeof deep, "%s/a/b/c", dir);
  CHECK(pith_mkdirs(deep, &err) == 0);
  CHECK(pith_mkdirs(deep, &err) == 0);  // already there: fine
  CHECK(pith_fsync_dir(deep, &err) == 0);
  snprintf(file, sizeof file, "%s/leaf.txt", deep);
  CHECK(pith_write_file_atomic(file, "x", 1, &err) == 0);
  CHECK(pith_is_dir(deep) && !pith_is_file(deep));
  CHECK(pith_is_file(file) && !pith_is_dir(file));
  CHECK(!pith_is_dir(missing) && !pith_is_file(missing));
  snprintf(file, sizeof file, "%s/f.bin/sub", dir);  // a file in the way
  CHECK(pith_mkdirs(file, &err) == -1);
  CHECK_CONTAINS(err.msg, "f.bin/sub");
  snprintf(deep, sizeof deep, "%s/a", dir);
  CHECK(pith_remove_tree(deep) == 0);
  CHECK(access(deep, F_OK) != 0);
  CHECK(pith_remove_tree(deep) == 0);  // gone already: fine

  unlink(path);
  rmdir(dir);
  return check_done("test_base");
}
