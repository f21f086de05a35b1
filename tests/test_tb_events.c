// tb_events: CRC-32C against the iSCSI (RFC 3720) vectors and TFRecord's masked CRC against
// TensorBoard's own (its Python masked_crc32c), records written and read back, damaged and cut
// files, truncation after a resume, file names that sort in the order written, and the
// metrics.jsonl mirror (every number but step, nulls skipped, a bad line refused).
#define _GNU_SOURCE  // mkdtemp, truncate under -std=c11 too
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"
#include "tb_event.pb-c.h"
#include "tb_events.h"

// The events of one file (at most cap), unpacked; returns how many (-1 on a read error).
static int read_events(const char *path, Tensorboard__Event **out, int cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  int n = 0;
  pith_err err = {{0}};
  void *data;
  size_t len;
  int r;
  while ((r = tb_record_read(f, path, &data, &len, &err)) == 1) {
    Tensorboard__Event *ev = tensorboard__event__unpack(NULL, len, data);
    free(data);
    if (!ev || n == cap) {
      if (ev) tensorboard__event__free_unpacked(ev, NULL);
      n = -1;
      break;
    }
    out[n++] = ev;
  }
  fclose(f);
  return r < 0 ? -1 : n;
}

static void free_events(Tensorboard__Event **ev, int n) {
  for (int i = 0; i < n; i++) tensorboard__event__free_unpacked(ev[i], NULL);
}

// The events files of dir, sorted by name (as TensorBoard reads them).
static int list_events(const char *dir, char names[][512], int cap) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (!strncmp(e->d_name, TB_FILE_PREFIX, strlen(TB_FILE_PREFIX)) && n < cap)
      snprintf(names[n++], 512, "%s/%s", dir, e->d_name);
  if (d) closedir(d);
  for (int i = 1; i < n; i++)  // insertion sort: a handful
    for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
      char t[512];
      strcpy(t, names[j]), strcpy(names[j], names[j - 1]), strcpy(names[j - 1], t);
    }
  return n;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) ? -1 : (long)st.st_size;
}

static void test_crc(void) {
  uint8_t zeros[32] = {0}, ones[32], up[32], down[32];
  for (int i = 0; i < 32; i++) ones[i] = 0xff, up[i] = (uint8_t)i, down[i] = (uint8_t)(31 - i);
  CHECK(tb_crc32c("123456789", 9) == 0xe3069283u);
  CHECK(tb_crc32c(zeros, 32) == 0x8a9136aau);
  CHECK(tb_crc32c(ones, 32) == 0x62a8ab43u);
  CHECK(tb_crc32c(up, 32) == 0x46dd794eu);
  CHECK(tb_crc32c(down, 32) == 0x113fdb5cu);
  CHECK(tb_crc32c("", 0) == 0);
  // tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c of the same bytes.
  CHECK(tb_crc32c_masked("123456789", 9) == 0xc78ab0e5u);
  CHECK(tb_crc32c_masked("", 0) == 0xa282ead8u);
  uint8_t len13[8] = {13, 0, 0, 0, 0, 0, 0, 0};  // struct.pack('<Q', 13): a record header's length
  CHECK(tb_crc32c_masked(len13, 8) == 0x34b8373cu);
}

static void test_records(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/records", dir);
  FILE *f = fopen(path, "wb");
  pith_err err = {{0}};
  const char *msgs[] = {"", "a", "hello, records", "0123456789abcdef0123456789abcdef0123456789"};
  for (int i = 0; i < 4; i++) CHECK(tb_record_write(f, path, msgs[i], strlen(msgs[i]), &err) == 0);
  fclose(f);
  long total = 0;
  for (int i = 0; i < 4; i++) total += 16 + (long)strlen(msgs[i]);
  CHECK(file_size(path) == total);
  // The layout: u64 LE length, masked CRC of it, data, masked CRC of the data.
  f = fopen(path, "rb");
  uint8_t head[12 + 4 + 12];
  CHECK(fread(head, 1, sizeof head, f) == sizeof head);
  fclose(f);
  // The empty record's bytes, as TensorBoard's Python masked_crc32c gives them: length 0, the CRC
  // of 8 zero bytes, then that of no bytes.
  static const uint8_t empty[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0x29, 0x03, 0x98, 0x07, 0xd8, 0xea, 0x82, 0xa2};
  CHECK(!memcmp(head, empty, 16));
  CHECK(head[16] == 1 && head[17] == 0);  // the second record's length, 1

  f = fopen(path, "rb");
  void *data;
  size_t len;
  for (int i = 0; i < 4; i++) {
    CHECK(tb_record_read(f, path, &data, &len, &err) == 1);
    CHECK_MSG(len == strlen(msgs[i]) && !memcmp(data, msgs[i], len), "record %d", i);
    free(data);
  }
  CHECK(tb_record_read(f, path, &data, &len, &err) == 0);  // the end
  fclose(f);

  // A flipped data byte: a CRC error that names the file and the record.
  f = fopen(path, "r+b");
  fseek(f, 16 + 17 + 12 + 3, SEEK_SET);  // inside "hello, records", the record at byte 33
  fputc('H', f);
  fclose(f);
  f = fopen(path, "rb");
  int r = 0;
  for (int i = 0; i < 3 && (r = tb_record_read(f, path, &data, &len, &err)) == 1; i++) free(data);
  fclose(f);
  CHECK(r == -1);
  CHECK_CONTAINS(err.msg, path);
  CHECK_CONTAINS(err.msg, "byte 33: its data's CRC does not match");
  // A flipped length byte: refused before anything is read.
  f = fopen(path, "r+b");
  fputc(5, f);
  fclose(f);
  f = fopen(path, "rb");
  CHECK(tb_record_read(f, path, &data, &len, &err) == -1);
  CHECK_CONTAINS(err.msg, "byte 0: its length's CRC does not match");
  fclose(f);

  // A file cut inside its last record (a killed writer): the records before it, then the end.
  f = fopen(path, "wb");
  for (int i = 0; i < 4; i++) tb_record_write(f, path, msgs[i], strlen(msgs[i]), &err);
  fclose(f);
  CHECK(truncate(path, total - 5) == 0);
  f = fopen(path, "rb");
  int got = 0;
  while ((r = tb_record_read(f, path, &data, &len, &err)) == 1) got++, free(data);
  fclose(f);
  CHECK(r == 0 && got == 3);
}

static void test_writer_and_truncate(const char *dir) {
  pith_err err = {{0}};
  tb_writer *w = tb_writer_open(dir, &err);
  CHECK_MSG(w != NULL, "%s", err.msg);
  if (!w) return;
  char first[512];
  snprintf(first, sizeof first, "%s", tb_writer_path(w));
  CHECK_CONTAINS(first, "/" TB_FILE_PREFIX);
  for (int s = 1; s <= 5; s++) {
    CHECK(tb_writer_scalar(w, s, "loss", 1.0f / (float)s, &err) == 0);
    CHECK(tb_writer_scalar(w, s, "lr", 1e-3f * (float)s, &err) == 0);
  }
  CHECK(tb_writer_close(w, &err) == 0);
  Tensorboard__Event *ev[64];
  int n = read_events(first, ev, 64);
  CHECK(n == 11);
  if (n == 11) {
    CHECK(ev[0]->what_case == TENSORBOARD__EVENT__WHAT_FILE_VERSION && !strcmp(ev[0]->file_version, "brain.Event:2"));
    CHECK(ev[0]->step == 0 && ev[0]->wall_time > 1.6e9);
    Tensorboard__Event *e = ev[3];  // step 2, loss
    CHECK(e->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY && e->step == 2 && e->summary->n_value == 1);
    CHECK(!strcmp(e->summary->value[0]->tag, "loss"));
    CHECK(e->summary->value[0]->value_case == TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);
    CHECK(e->summary->value[0]->simple_value == 0.5f);
    CHECK(!strcmp(ev[10]->summary->value[0]->tag, "lr") && ev[10]->step == 5 &&
          ev[10]->summary->value[0]->simple_value == 1e-3f * 5.0f);
  }
  if (n > 0) free_events(ev, n);

  // A second writer in the same second: a name that sorts after the first.
  w = tb_writer_open(dir, &err);
  CHECK(w != NULL);
  if (w) {
    CHECK_MSG(strcmp(tb_writer_path(w), first) > 0, "%s sorts before %s", tb_writer_path(w), first);
    CHECK(tb_writer_scalar(w, 4, "loss", 9.0f, &err) == 0);
    CHECK(tb_writer_close(w, &err) == 0);
  }
  // Truncation to step 3 (a resume): steps 4 and 5 leave both files; the file_version stays.
  // A record cut at the first file's end goes too.
  FILE *f = fopen(first, "ab");
  fwrite("\x20\0\0\0\0\0\0\0", 1, 8, f);
  fclose(f);
  CHECK_MSG(tb_truncate_dir(dir, 3, &err) == 0, "%s", err.msg);
  n = read_events(first, ev, 64);
  CHECK(n == 7);
  int bad = 0;
  for (int i = 0; i < n; i++) bad += ev[i]->step > 3;
  CHECK(bad == 0);
  if (n > 0) free_events(ev, n);
  CHECK(file_size(first) > 0);
  char names[8][512];
  CHECK(list_events(dir, names, 8) == 2);
  CHECK(read_events(names[1], ev, 64) == 1);  // only its file_version
  free_events(ev, 1);
  // Nothing past the step: the files are left as they are.
  long before = file_size(first);
  CHECK(tb_truncate_dir(dir, 100, &err) == 0 && file_size(first) == before);
  // A file that is not an events file under the name: refused with its name.
  char junk[600];
  snprintf(junk, sizeof junk, "%s/" TB_FILE_PREFIX "0000000001.junk", dir);
  f = fopen(junk, "wb");
  fputs("this is not a record stream", f);
  fclose(f);
  CHECK(tb_truncate_dir(dir, 3, &err) == -1);
  CHECK_CONTAINS(err.msg, junk);
  CHECK(tb_remove_dir(dir, &err) == 0);
  CHECK(list_events(dir, names, 8) == 0);
}

// The scalars of every events file of dir, in name order: tags, steps and values (at most cap).
typedef struct {
  char tag[32];
  int64_t step;
  float value;
} scalar;

static int read_scalars(const char *dir, scalar *out, int cap) {
  char names[8][512];
  int nf = list_events(dir, names, 8), n = 0;
  for (int i = 0; i < nf; i++) {
    Tensorboard__Event *ev[64];
    int ne = read_events(names[i], ev, 64);
    if (ne < 0) return -1;
    for (int j = 0; j < ne; j++)
      if (ev[j]->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY && n < cap) {
        snprintf(out[n].tag, sizeof out[n].tag, "%s", ev[j]->summary->value[0]->tag);
        out[n].step = ev[j]->step, out[n].value = ev[j]->summary->value[0]->simple_value;
        n++;
      }
    free_events(ev, ne);
  }
  return n;
}

static void test_metrics_mirror(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  FILE *m = fopen(path, "w");
  pith_err err = {{0}};
  tb_metrics *tb = tb_metrics_open(dir, path, -1, &err);
  CHECK_MSG(tb != NULL, "%s", err.msg);
  if (!tb) return;
  fprintf(m, "{\"step\": 1, \"loss\": 2.5, \"grad_norm\": 0.125, \"lr\": 1e-05, \"tokens_per_s\": 1234.5}\n");
  fprintf(m, "{\"step\": 2, \"loss\": 2.25, \"grad_norm\": 0.25, \"lr\": 2e-05, \"tokens_per_s\": 999.0, \"mfu\": 0.01234}\n");
  CHECK(tb_metrics_sync(tb, m, &err) == 0);
  fprintf(m, "{\"step\": 2, \"val_loss\": null}\n{\"step\": 2, \"val_loss\": 3.0, \"note\": \"x\"}\n{\"step\": 3, \"lo");
  CHECK(tb_metrics_sync(tb, m, &err) == 0);  // the cut line waits
  fprintf(m, "ss\": 1.75}\n");
  CHECK(tb_metrics_close(tb, m, &err) == 0);
  fclose(m);
  scalar s[32];
  int n = read_scalars(dir, s, 32);
  CHECK_MSG(n == 11, "%d scalars", n);
  if (n == 11) {
    CHECK(!strcmp(s[0].tag, "loss") && s[0].step == 1 && s[0].value == 2.5f);
    CHECK(!strcmp(s[2].tag, "lr") && s[2].value == 1e-5f);
    CHECK(!strcmp(s[8].tag, "mfu") && s[8].step == 2 && s[8].value == 0.01234f);
    CHECK(!strcmp(s[9].tag, "val_loss") && s[9].value == 3.0f);  // null and the string skipped
    CHECK(!strcmp(s[10].tag, "loss") && s[10].step == 3 && s[10].value == 1.75f);
  }
  int steps = 0;
  for (int i = 0; i < n; i++) steps += !strcmp(s[i].tag, "step");
  CHECK(steps == 0);

  // Resume at step 2 (metrics.jsonl cut back as the trainer does): step 3 leaves the old file, the
  // new file holds only what the resumed run writes.
  m = fopen(path, "w");
  fprintf(m, "{\"step\": 1, \"loss\": 2.5}\n{\"step\": 2, \"loss\": 2.25}\n");
  fclose(m);
  m = fopen(path, "a");
  tb = tb_metrics_open(dir, path, 2, &err);
  CHECK_MSG(tb != NULL, "%s", err.msg);
  if (!tb) return;
  fprintf(m, "{\"step\": 3, \"loss\": 1.5}\n");
  CHECK(tb_metrics_close(tb, m, &err) == 0);
  fclose(m);
  n = read_scalars(dir, s, 32);
  CHECK_MSG(n == 11, "%d scalars after the resume", n);
  if (n == 11) CHECK(s[10].step == 3 && s[10].value == 1.5f && !strcmp(s[10].tag, "loss"));
  int step3 = 0;
  for (int i = 0; i < n; i++) step3 += s[i].step == 3;
  CHECK(step3 == 1);

  // A resume where there was no events file yet (tensorboard was off): metrics.jsonl so far, too.
  CHECK(tb_remove_dir(dir, &err) == 0);
  m = fopen(path, "a");
  tb = tb_metrics_open(dir, path, 3, &err);
  CHECK(tb != NULL);
  CHECK(tb_metrics_close(tb, m, &err) == 0);
  fclose(m);
  n = read_scalars(dir, s, 32);
  CHECK_MSG(n == 3, "%d scalars backfilled", n);

  // A line that is not a metrics record: refused, naming the file.
  m = fopen(path, "w");
  tb = tb_metrics_open(dir, path, -1, &err);
  CHECK(tb != NULL);
  fprintf(m, "{\"loss\": 1}\n");
  CHECK(tb_metrics_sync(tb, m, &err) == -1);
  CHECK_CONTAINS(err.msg, path);
  CHECK_CONTAINS(err.msg, "the line at byte 0 is not a JSON object with a step");
  tb_metrics_close(tb, m, NULL);
  fclose(m);
  // A metrics file that is not there.
  char missing[600];
  snprintf(missing, sizeof missing, "%s/none/metrics.jsonl", dir);
  CHECK(tb_metrics_open(dir, missing, -1, &err) == NULL);
  CHECK_CONTAINS(err.msg, missing);
}

int main(void) {
  test_crc();
  char dir[] = "/tmp/pith_tb_XXXXXX";
  CHECK_SKIP_IF(mkdtemp(dir) == NULL, "cannot make a temporary folder under /tmp");
  test_records(dir);
  char sub[64];
  snprintf(sub, sizeof sub, "%s/w", dir);
  mkdir(sub, 0755);
  test_writer_and_truncate(sub);
  snprintf(sub, sizeof sub, "%s/m", dir);
  mkdir(sub, 0755);
  test_metrics_mirror(sub);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return check_done("tb_events");
}
