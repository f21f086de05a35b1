// train_state: resume is bit-exact (10 straight steps == 5, save, free, load into fresh tensors,
// 5 more); tensors of every dtype come back byte for byte; keep_last and train_state_latest;
// a save killed with SIGKILL at each point leaves the previous checkpoint loadable; bad
// checkpoints give one-line errors that name the file and the problem.
//
// The crash test runs this same executable as a child (`test_train_state --child-save RUN STEP`)
// that saves a 48 MiB checkpoint, and kills it: first at known points, using the save's test hook
// PITH_TRAIN_STATE_PAUSE_MS=600 (it sleeps after each file it writes, so the parent, polling
// every 2 ms, sees the file appear in the temp folder and kills during the pause), then at a
// spread of plain delays without the hook (whatever the child was doing then).
#define _GNU_SOURCE
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "check.h"
#include "safetensors.h"
#include "train_state.h"

static char root[64];

// ---- small helpers ------------------------------------------------------------------------------

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void sleep_us(int64_t us) {
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
  nanosleep(&ts, NULL);
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void) { return now_us() / 1000; }

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void rm_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    char child[4096];
    while (d && (e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      snprintf(child, sizeof child, "%s/%s", path, e->d_name);
      rm_tree(child);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

// Entries of a folder (not . or ..) whose name contains `part` (NULL: all).
static int count_entries(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!part || strstr(e->d_name, part))) n++;
  if (d) closedir(d);
  return n;
}

// A tensor's bytes, malloc'd.
static void *bytes_of(const pt_tensor *t, size_t *n) {
  *n = (size_t)pt_numel(t) * pt_dtype_size(pt_dtype_of(t));
  void *b = malloc(*n ? *n : 1);
  if (*n && pt_to_data(t, b, *n) != 0) memset(b, 0xAB, *n);
  return b;
}

static int same_bytes(const pt_tensor *a, const pt_tensor *b) {
  size_t na, nb;
  void *x = bytes_of(a, &na), *y = bytes_of(b, &nb);
  int same = na == nb && pt_dtype_of(a) == pt_dtype_of(b) && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name) {
  char a[512], b[512];
  snprintf(a, sizeof a, "%s/%s", from_dir, name);
  snprintf(b, sizeof b, "%s/%s", to_dir, name);
  size_t len;
  pith_err err;
  char *data = pith_read_file(a, &len, &err);
  CHECK_MSG(data != NULL, "%s", err.msg);
  if (data) CHECK(pith_write_file_atomic(b, data, len, &err) == 0);
  free(data);
}

static void copy_ckpt(const char *from, const char *to) {
  const char *files[] = {"params.safetensors", "optimizer.safetensors", "state.json", "config.yaml", "DONE"};
  mkdir(to, 0755);
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", from, files[i]);
    if (exists(p)) copy_file(from, to, files[i]);
  }
}

// ---- a tiny training problem: (dropout(x) W + b) * s against a noisy linear target ---------------

#define TOY_N 3
static const char *const toy_names[TOY_N] = {"lora.0.q_proj.A", "lora.0.q_proj.bias", "compress"};

typedef struct {
  pt_tensor *p[TOY_N];  // W (4, 3), b (3), s () f32
  pt_adamw *opt;
  pt_gen *gen;          // batches, noise and dropout
} toy;

static toy toy_new(uint64_t init_seed, uint64_t gen_seed) {
  toy t;
  pt_scope s = pt_scope_begin();
  pt_gen *g = pt_gen_new(init_seed, PT_CPU);
  t.p[0] = pt_keep(pt_randn(PT_SHAPE(4, 3), PT_F32, PT_CPU, g));
  t.p[1] = pt_keep(pt_mul_scalar(pt_randn(PT_SHAPE(3), PT_F32, PT_CPU, g), 0.1));
  t.p[2] = pt_keep(pt_full(PT_SCALAR_SHAPE, 0.5 + (double)(init_seed % 7) / 10, PT_F32, PT_CPU));
  pt_gen_free(g);
  pt_scope_end(s);
  for (int i = 0; i < TOY_N; i++) pt_set_requires_grad(t.p[i], 1);
  t.opt = pt_adamw_new(t.p, TOY_N,
                       (pt_adamw_config){.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
  t.gen = pt_gen_new(gen_seed, PT_CPU);
  CHECK_MSG(pt_ok(), "%s", pt_error());
  return t;
}

static void toy_free(toy *t) {
  pt_adamw_free(t->opt);
  pt_gen_free(t->gen);
  for (int i = 0; i < TOY_N; i++) pt_free(t->p[i]);
}

static double toy_step(toy *t) {
  static const float wt[12] = {0.5f, -1, 2, 0.25f, 1, -0.5f, -2, 0.75f, 1.5f, 0, -0.25f, 1};
  pt_scope s = pt_scope_begin();
  pt_tensor *wtrue = pt_from_data(wt, PT_F32, PT_SHAPE(4, 3), PT_CPU);
  pt_tensor *x = pt_randn(PT_SHAPE(8, 4), PT_F32, PT_CPU, t->gen);
  pt_tensor *y = pt_add(pt_matmul(x, wtrue), pt_mul_scalar(pt_randn(PT_SHAPE(8, 3), PT_F32, PT_CPU, t->gen), 0.1));
  pt_tensor *h = pt_dropout(x, 0.25, t->gen);
  pt_tensor *pred = pt_mul(pt_add(pt_matmul(h, t->p[0]), t->p[1]), t->p[2]);
  pt_tensor *loss = pt_mean(pt_pow_scalar(pt_sub(pred, y), 2));
  double v = pt_item(loss);
  pt_backward(loss);
  pt_adamw_step(t->opt);
  pt_adamw_zero_grad(t->opt);
  CHECK_MSG(pt_ok(), "%s", pt_error());
  pt_scope_end(s);
  return v;
}

static int toy_save(toy *t, const char *run, int64_t step, int keep_last, pith_err *err) {
  size_t n = pt_gen_get_state(t->gen, NULL, 0);
  void *rng = malloc(n);
  pt_gen_get_state(t->gen, rng, n);
  char cursor[128];
  snprintf(cursor, sizeof cursor, "pith-loader-cursor 1 epoch=0 position=%lld seed=7 world_size=1 n_items=100",
           (long long)step * 8);
  train_state s = {.n = TOY_N, .params = t->p, .names = toy_names, .opt = t->opt, .step = step,
                   .loader_cursor = cursor, .rng = rng, .rng_len = n,
                   .config_yaml = "learning_rate: 0.05\nmax_steps: 10\n", .metrics_json = "{\"loss\": 1.25}",
                   .pith_version = "0.1-test"};
  int rc = train_state_save(run, &s, keep_last, err);
  free(rng);
  return rc;
}

static void test_resume_bit_exact(void) {
  enum { STEPS = 10, HALF = 5 };
  char run[128], ckpt[256];
  snprintf(run, sizeof run, "%s/resume", root);
  pith_err err = {{0}};

  double straight[STEPS], resumed[STEPS], no_rng[STEPS];
  toy a = toy_new(42, 7);
  for (int i = 0; i < STEPS; i++) straight[i] = toy_step(&a);

  toy b = toy_new(42, 7);
  for (int i = 0; i < HALF; i++) resumed[i] = toy_step(&b);
  CHECK_MSG(toy_save(&b, run, HALF, 3, &err) == 0, "%s", err.msg);
  toy_free(&b);

  CHECK_MSG(train_state_latest(run, ckpt, sizeof ckpt, &err) == 0, "%s", err.msg);
  CHECK_CONTAINS(ckpt, "/checkpoints/step-00000005");

  // Fresh tensors with other values, a fresh optimizer, a generator with another seed.
  toy c = toy_new(1234, 999);
  CHECK(!same_bytes(c.p[0], a.p[0]));
  int64_t step = -1;
  char *cursor = NULL;
  void *rng = NULL;
  size_t rng_len = 0;
  CHECK_MSG(train_state_load(ckpt, c.p, toy_names, TOY_N, c.opt, &step, &cursor, &rng, &rng_len, &err) == 0, "%s",
            err.msg);
  CHECK(step == HALF);
  CHECK(pt_adamw_steps(c.opt) == HALF);
  CHECK_CONTAINS(cursor, "position=40 ");
  CHECK(rng && rng_len == pt_gen_get_state(c.gen, NULL, 0));
  if (rng) CHECK(pt_gen_set_state(c.gen, rng, rng_len) == 0);
  for (int i = HALF; i < STEPS; i++) resumed[i] = toy_step(&c);

  CHECK_MSG(memcmp(straight, resumed, sizeof straight) == 0, "losses: straight %.17g, resumed %.17g (last)",
            straight[STEPS - 1], resumed[STEPS - 1]);
  CHECK(pt_adamw_steps(c.opt) == pt_adamw_steps(a.opt));
  for (int i = 0; i < TOY_N; i++) {
    CHECK_MSG(same_bytes(a.p[i], c.p[i]), "param %s differs after resume", toy_names[i]);
    CHECK_MSG(same_bytes(pt_adamw_exp_avg(a.opt, i), pt_adamw_exp_avg(c.opt, i)), "exp_avg %s", toy_names[i]);
    CHECK_MSG(same_bytes(pt_adamw_exp_avg_sq(a.opt, i), pt_adamw_exp_avg_sq(c.opt, i)), "exp_avg_sq %s",
              toy_names[i]);
  }

  // The comparison can fail: the same resume without restoring the generator diverges.
  toy d = toy_new(1234, 999);
  CHECK(train_state_load(ckpt, d.p, toy_names, TOY_N, d.opt, NULL, NULL, NULL, NULL, &err) == 0);
  for (int i = HALF; i < STEPS; i++) no_rng[i] = toy_step(&d);
  CHECK(memcmp(straight + HALF, no_rng + HALF, sizeof(double) * (STEPS - HALF)) != 0);
  CHECK(!same_bytes(a.p[0], d.p[0]));

  // The folder's files say what they are.
  char path[512];
  snprintf(path, sizeof path, "%s/state.json", ckpt);
  char *text = pith_read_file(path, NULL, &err);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  CHECK_MSG(j != NULL, "%s", err.msg);
  if (j) {
    cJSON *f = cJSON_GetObjectItem(j, "format"), *v = cJSON_GetObjectItem(j, "format_version");
    CHECK(cJSON_IsString(f) && !strcmp(f->valuestring, TRAIN_STATE_FORMAT));
    CHECK(cJSON_IsNumber(v) && v->valueint == TRAIN_STATE_VERSION);
    CHECK(cJSON_GetObjectItem(j, "step")->valueint == HALF);
    cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tensors"), 2);
    CHECK(t && !strcmp(cJSON_GetObjectItem(t, "name")->valuestring, "compress"));
    CHECK(t && !strcmp(cJSON_GetObjectItem(t, "dtype")->valuestring, "F32"));
    CHECK(t && cJSON_GetArraySize(cJSON_GetObjectItem(t, "shape")) == 0);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "pith_version")->valuestring, "0.1-test"));
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metrics"), "loss")->valuedouble == 1.25);
    cJSON *cr = cJSON_GetObjectItem(j, "created");
    CHECK(cJSON_IsString(cr) && strlen(cr->valuestring) == 20);
  }
  cJSON_Delete(j);
  free(text);
  snprintf(path, sizeof path, "%s/optimizer.safetensors", ckpt);
  st_file *of = st_open(path, &err);
  CHECK_MSG(of != NULL, "%s", err.msg);
  if (of) {
    CHECK(st_count(of) == 2 * TOY_N);
    CHECK(st_find(of, "exp_avg.lora.0.q_proj.A") && st_find(of, "exp_avg_sq.compress"));
    CHECK(st_metadata(of, "steps") && !strcmp(st_metadata(of, "steps"), "5"));
  }
  st_close(of);
  snprintf(path, sizeof path, "%s/config.yaml", ckpt);
  text = pith_read_file(path, NULL, &err);
  CHECK(text && !strcmp(text, "learning_rate: 0.05\nmax_steps: 10\n"));
  free(text);
  snprintf(path, sizeof path, "%s/checkpoints", run);
  CHECK(count_entries(path, NULL) == 1);  // no temp folder left behind

  free(cursor);
  free(rng);
  toy_free(&a);
  toy_free(&c);
  toy_free(&d);
}

// ---- every dtype and shape comes back byte for byte ---------------------------------------------

static void test_dtypes(void) {
  enum { N = 7 };
  static const char *const names[N] = {"f32.t", "bf16", "f16", "i64", "i32", "mask", "empty"};
  char run[128], ckpt[256];
  snprintf(run, sizeof run, "%s/dtypes", root);
  pith_err err = {{0}};
  static const int64_t big_i64[9] = {-5, 0, 1, INT64_MAX, INT64_MIN, 1000000000005LL, 42, -42, 7};
  pt_scope s = pt_scope_begin();
  pt_gen *g = pt_gen_new(3, PT_CPU);
  pt_tensor *src[N] = {
      pt_transpose(pt_randn(PT_SHAPE(3, 5), PT_F32, PT_CPU, g), 0, 1),  // not contiguous
      pt_to_dtype(pt_randn(PT_SHAPE(2, 3, 4), PT_F32, PT_CPU, g), PT_BF16),
      pt_to_dtype(pt_randn(PT_SHAPE(7), PT_F32, PT_CPU, g), PT_F16),
      pt_from_data(big_i64, PT_I64, PT_SHAPE(3, 3), PT_CPU),
      pt_arange(-7, 5, PT_I32, PT_CPU),
      pt_eq_scalar(pt_arange(0, 6, PT_I64, PT_CPU), 3),
      pt_zeros(PT_SHAPE(0, 4), PT_F32, PT_CPU),
  };
  pt_gen_free(g);
  CHECK_MSG(pt_ok(), "%s", pt_error());
  train_state st = {.n = N, .params = src, .names = names, .step = 123456789};
  CHECK_MSG(train_state_save(run, &st, 0, &err) == 0, "%s", err.msg);
  CHECK(train_state_latest(run, ckpt, sizeof ckpt, &err) == 0);
  CHECK_CONTAINS(ckpt, "step-123456789");

  pt_tensor *dst[N];
  for (int i = 0; i < N; i++) dst[i] = pt_zeros(pt_shape_of(src[i]), pt_dtype_of(src[i]), PT_CPU);
  int64_t step = 0;
  char *cursor = (char *)"x";
  void *rng = (void *)"x";
  size_t rng_len = 9;
  CHECK_MSG(train_state_load(ckpt, dst, names, N, NULL, &step, &cursor, &rng, &rng_len, &err) == 0, "%s", err.msg);
  CHECK(step == 123456789 && cursor == NULL && rng == NULL && rng_len == 0);
  for (int i = 0; i < N; i++) CHECK_MSG(same_bytes(src[i], dst[i]), "tensor %s", names[i]);

  // Saved without an optimizer: asking for one is an error.
  pt_tensor *p = pt_keep(pt_zeros(PT_SHAPE(5, 3), PT_F32, PT_CPU));
  pt_set_requires_grad(p, 1);
  pt_adamw *opt = pt_adamw_new(&p, 1, (pt_adamw_config){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999});
  dst[0] = p;
  CHECK(train_state_load(ckpt, dst, names, N, opt, NULL, NULL, NULL, NULL, &err) != 0);
  CHECK_CONTAINS(err.msg, "optimizer.safetensors: the checkpoint has no optimizer state");
  pt_adamw_free(opt);
  pt_free(p);
  pt_scope_end(s);
}

// ---- keep_last, latest, leftovers ----------------------------------------------------------------

static void test_keep_and_latest(void) {
  char run[128], ckdir[256], ckpt[256], path[512];
  snprintf(run, sizeof run, "%s/keep", root);
  snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
  pith_err err = {{0}};
  CHECK(train_state_latest(run, ckpt, sizeof ckpt, &err) == 1);  // no checkpoints folder yet

  toy t = toy_new(5, 6);
  for (int s = 1; s <= 5; s++) {
    toy_step(&t);
    CHECK_MSG(toy_save(&t, run, s, 2, &err) == 0, "%s", err.msg);
  }
  CHECK(count_entries(ckdir, NULL) == 2);
  snprintf(path, sizeof path, "%s/step-00000004/DONE", ckdir);
  CHECK(exists(path));
  CHECK(train_state_latest(run, ckpt, sizeof ckpt, &err) == 0);
  CHECK_CONTAINS(ckpt, "step-00000005");
  char small[8];
  CHECK(train_state_latest(run, small, sizeof small, &err) == -1);

  // A newer folder without DONE, a newer leftover temp folder (complete, DONE included) of a
  // process that is gone, and a stray file: all ignored.
  snprintf(path, sizeof path, "%s/step-00000009", ckdir);
  copy_ckpt(ckpt, path);
  snprintf(path, sizeof path, "%s/step-00000009/DONE", ckdir);
  unlink(path);
  snprintf(path, sizeof path, "%s/step-00000010.tmp-99999999", ckdir);  // beyond any pid_max
  copy_ckpt(ckpt, path);
  snprintf(path, sizeof path, "%s/notes.txt", ckdir);
  pith_write_file_atomic(path, "hi", 2, &err);
  CHECK(train_state_latest(run, ckpt, sizeof ckpt, &err) == 0);
  CHECK_CONTAINS(ckpt, "step-00000005");
  int64_t step = 0;
  toy u = toy_new(11, 12);
  CHECK_MSG(train_state_load(ckpt, u.p, toy_names, TOY_N, u.opt, &step, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
  CHECK(step == 5);
  for (int i = 0; i < TOY_N; i++) CHECK(same_bytes(t.p[i], u.p[i]));
  // Loading the folder without DONE by its path is refused.
  snprintf(path, sizeof path, "%s/step-00000009", ckdir);
  CHECK(train_state_load(path, u.p, toy_names, TOY_N, u.opt, &step, NULL, NULL, NULL, &err) == -1);
  CHECK_CONTAINS(err.msg, "step-00000009: no DONE marker");

  // The next save prunes the oldest complete one, removes the dead process's temp folder, and
  // leaves what is not its own (the folder without DONE, the stray file).
  toy_step(&t);
  CHECK_MSG(toy_save(&t, run, 6, 2, &err) == 0, "%s", err.msg);
  snprintf(path, sizeof path, "%s/step-00000004", ckdir);
  CHECK(!exists(path));
  snprintf(path, sizeof path, "%s/step-00000010.tmp-99999999", ckdir);
  CHECK(!exists(path));
  snprintf(path, sizeof path, "%s/step-00000009", ckdir);
  CHECK(exists(path));
  CHECK(count_entries(ckdir, NULL) == 4);  // step-5, step-6, step-9 (no DONE), notes.txt
  CHECK(train_state_latest(run, ckpt, sizeof ckpt, &err) == 0);
  CHECK_CONTAINS(ckpt, "step-00000006");

  // Saving a step again replaces that checkpoint.
  toy_step(&t);
  CHECK_MSG(toy_save(&t, run, 6, 0, &err) == 0, "%s", err.msg);
  CHECK(count_entries(ckdir, NULL) == 4);
  CHECK(count_entries(ckdir, ".tmp-") + count_entries(ckdir, ".del-") == 0);
  CHECK(train_state_load(ckpt, u.p, toy_names, TOY_N, u.opt, &step, NULL, NULL, NULL, &err) == 0);
  for (int i = 0; i < TOY_N; i++) CHECK(same_bytes(t.p[i], u.p[i]));
  CHECK(pt_adamw_steps(u.opt) == 7);

  // keep_last 0 keeps everything.
  for (int s = 7; s <= 9; s++) CHECK(toy_save(&t, run, s * 10, 0, &err) == 0);
  CHECK(count_entries(ckdir, "step-000000") == 6);  // 5, 6, 9 (no DONE), 70, 80, 90
  toy_free(&t);
  toy_free(&u);
}

// ---- crash safety -------------------------------------------------------------------------------

#define BIG_N 4
static const char *const big_names[BIG_N] = {"big.0", "big.1", "big.2", "big.3"};

typedef struct {
  pt_tensor *p[BIG_N];  // (1024, 1024) f32 each: 16 MiB, 48 MiB with AdamW state
  pt_adamw *opt;
} big;

// Parameter i holds v + i, its exp_avg 2v, its exp_avg_sq 3v; AdamW's step count is v.
static big big_new(double v) {
  big b;
  for (int i = 0; i < BIG_N; i++) {
    b.p[i] = pt_keep(pt_full(PT_SHAPE(1024, 1024), v + i, PT_F32, PT_CPU));
    pt_set_requires_grad(b.p[i], 1);
  }
  b.opt = pt_adamw_new(b.p, BIG_N, (pt_adamw_config){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999});
  pt_scope s = pt_scope_begin();
  for (int i = 0; i < BIG_N; i++) {
    pt_copy_(pt_adamw_exp_avg(b.opt, i), pt_full(PT_SHAPE(1024, 1024), 2 * v, PT_F32, PT_CPU));
    pt_copy_(pt_adamw_exp_avg_sq(b.opt, i), pt_full(PT_SHAPE(1024, 1024), 3 * v, PT_F32, PT_CPU));
  }
  pt_scope_end(s);
  if (v >= 0) pt_adamw_set_steps(b.opt, (int64_t)v);
  return b;
}

static void big_free(big *b) {
  pt_adamw_free(b->opt);
  for (int i = 0; i < BIG_N; i++) pt_free(b->p[i]);
}

static int big_save(const char *run, int64_t step, int keep_last, pith_err *err) {
  big b = big_new((double)step);
  char cursor[64];
  snprintf(cursor, sizeof cursor, "cursor-%lld", (long long)step);
  uint8_t rng[16];
  memset(rng, (int)step, sizeof rng);
  train_state s = {.n = BIG_N, .params = b.p, .names = big_names, .opt = b.opt, .step = step,
                   .loader_cursor = cursor, .rng = rng, .rng_len = sizeof rng, .config_yaml = "big: true\n"};
  int rc = train_state_save(run, &s, keep_last, err);
  big_free(&b);
  return rc;
}

static double max_abs_diff(const pt_tensor *t, double want) {
  pt_scope s = pt_scope_begin();
  double d = pt_item(pt_amax_dim(pt_view(pt_abs(pt_add_scalar(t, -want)), PT_SHAPE(-1)), 0, 0));
  pt_scope_end(s);
  return d;
}

// Load the newest checkpoint of run and check that it is whole: every value is what big_save
// wrote for its step. Returns the step, -1 when it does not load or is wrong.
static int64_t big_check_latest(const char *run) {
  char ckpt[256];
  pith_err err = {{0}};
  if (train_state_latest(run, ckpt, sizeof ckpt, &err) != 0) {
    CHECK_MSG(0, "no checkpoint in %s: %s", run, err.msg);
    return -1;
  }
  big b = big_new(-1);
  int64_t step = -1;
  char *cursor = NULL;
  void *rng = NULL;
  size_t rng_len = 0;
  int rc = train_state_load(ckpt, b.p, big_names, BIG_N, b.opt, &step, &cursor, &rng, &rng_len, &err);
  CHECK_MSG(rc == 0, "%s", err.msg);
  int ok = rc == 0 && pt_adamw_steps(b.opt) == step && rng_len == 16 && ((uint8_t *)rng)[15] == (uint8_t)step;
  char want[64];
  snprintf(want, sizeof want, "cursor-%lld", (long long)step);
  ok = ok && cursor && !strcmp(cursor, want);
  for (int i = 0; i < BIG_N && ok; i++)
    ok = max_abs_diff(b.p[i], (double)step + i) == 0 && max_abs_diff(pt_adamw_exp_avg(b.opt, i), 2.0 * step) == 0 &&
         max_abs_diff(pt_adamw_exp_avg_sq(b.opt, i), 3.0 * step) == 0;
  CHECK_MSG(ok, "%s does not hold what step %lld saved", ckpt, (long long)step);
  free(cursor);
  free(rng);
  big_free(&b);
  return ok ? step : -1;
}

static pid_t spawn_saver(const char *run, int64_t step, int pause_ms) {
  char st[32], ms[32];
  snprintf(st, sizeof st, "%lld", (long long)step);
  snprintf(ms, sizeof ms, "%d", pause_ms);
  if (pause_ms > 0) setenv("PITH_TRAIN_STATE_PAUSE_MS", ms, 1);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", "test_train_state", "--child-save", run, st, (char *)NULL);
    _exit(127);
  }
  unsetenv("PITH_TRAIN_STATE_PAUSE_MS");
  CHECK(pid > 0);
  return pid;
}

static void test_crash(void) {
  char run[128], ckdir[256], path[512];
  snprintf(run, sizeof run, "%s/crash", root);
  snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
  pith_err err = {{0}};
  CHECK_MSG(big_save(run, 1, 1, &err) == 0, "%s", err.msg);
  CHECK(big_check_latest(run) == 1);

  // Killed at known points: right after each file of the new checkpoint appears in its temp
  // folder (DONE included: complete but not yet renamed).
  const char *stages[] = {"params.safetensors", "optimizer.safetensors", "config.yaml", "state.json", "DONE"};
  for (size_t k = 0; k < sizeof stages / sizeof *stages; k++) {
    pid_t pid = spawn_saver(run, 2, 600);
    snprintf(path, sizeof path, "%s/step-00000002.tmp-%d/%s", ckdir, (int)pid, stages[k]);
    int64_t t0 = now_ms();
    while (!exists(path) && now_ms() - t0 < 120000 && waitpid(pid, NULL, WNOHANG) == 0) sleep_ms(2);
    int seen = exists(path);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(seen && WIFSIGNALED(status), "stage %s: the child %s", stages[k],
              seen ? "was not killed" : "never wrote the file");
    snprintf(path, sizeof path, "%s/step-00000002.tmp-%d", ckdir, (int)pid);
    CHECK_MSG(exists(path), "stage %s: no temp folder left: the kill did not land during the save", stages[k]);
    CHECK_MSG(big_check_latest(run) == 1, "after a kill at stage %s", stages[k]);
  }

  // Killed after plain delays, wherever the child is then (writing a file, fsyncing, renaming,
  // pruning the previous checkpoint): the newest complete checkpoint is the previous one or the
  // new one, and it is whole. One save runs to the end first, timed from its temp folder's
  // appearing to its final folder's; each kill then comes that long times k/(KILLS-1), plus 10%,
  // after the temp folder appears.
  enum { KILLS = 12 };
  pid_t pid = spawn_saver(run, 9, 0);
  int64_t t_tmp = -1, t_final = -1, t0 = now_us();
  int status = 0;
  char tmp_dir[512], final_dir[512];
  snprintf(tmp_dir, sizeof tmp_dir, "%s/step-00000009.tmp-%d", ckdir, (int)pid);
  snprintf(final_dir, sizeof final_dir, "%s/step-00000009", ckdir);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (t_tmp < 0 && exists(tmp_dir)) t_tmp = now_us() - t0;
    if (t_final < 0 && exists(final_dir)) t_final = now_us() - t0;
    sleep_us(200);
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(big_check_latest(run) == 9);
  int64_t window = t_tmp >= 0 && t_final > t_tmp ? (t_final - t_tmp) * 11 / 10 : 200000;
  int64_t prev = 9;
  int during = 0, finished = 0;
  for (int k = 0; k < KILLS; k++) {
    int64_t step = 10 + k, delay = window * k / (KILLS - 1);
    pid = spawn_saver(run, step, 0);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/step-%08lld.tmp-%d", ckdir, (long long)step, (int)pid);
    t0 = now_us();
    while (!exists(tmp_dir) && now_us() - t0 < 120000000 && waitpid(pid, &status, WNOHANG) == 0) sleep_us(200);
    sleep_us(delay);
    kill(pid, SIGKILL);
    status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {
      CHECK_MSG(WEXITSTATUS(status) == 0, "child saving step %lld exited %d", (long long)step, WEXITSTATUS(status));
      finished++;
    }
    char tmp[64], del[64];
    snprintf(tmp, sizeof tmp, ".tmp-%d", (int)pid);
    snprintf(del, sizeof del, ".del-%d", (int)pid);
    if (count_entries(ckdir, tmp) + count_entries(ckdir, del) > 0) during++;
    int64_t got = big_check_latest(run);
    CHECK_MSG(got == prev || got == step, "after a kill %lld us into the save: latest is step %lld (want %lld or %lld)",
              (long long)delay, (long long)got, (long long)prev, (long long)step);
    if (WIFEXITED(status)) CHECK(got == step);
    if (got > 0) prev = got;
  }
  printf("crash: a save took %.1f ms from its temp folder to its final name; of %d kills spread over that, "
         "%d left a partial save (or removal) behind, %d came after the child exited\n",
         (double)(t_final - t_tmp) / 1000, KILLS, during, finished);

  // The next save cleans up after the killed ones.
  CHECK_MSG(big_save(run, 100, 1, &err) == 0, "%s", err.msg);
  CHECK(count_entries(ckdir, NULL) == 1);
  CHECK(big_check_latest(run) == 100);
}

// ---- errors -------------------------------------------------------------------------------------

static void expect_error(const char *ckpt, pt_tensor *const *params, const char *const *names, int n,
                         pt_adamw *opt, const char *file, const char *problem) {
  pith_err err = {{0}};
  int64_t step = 77;
  char *cursor = NULL;
  void *rng = NULL;
  size_t rng_len = 5;
  CHECK(train_state_load(ckpt, params, names, n, opt, &step, &cursor, &rng, &rng_len, &err) == -1);
  CHECK(step == 0 && cursor == NULL && rng == NULL && rng_len == 0);
  CHECK_MSG(!strchr(err.msg, '\n') && strlen(err.msg) > 0, "not one line: %s", err.msg);
  CHECK_CONTAINS(err.msg, file);
  CHECK_CONTAINS(err.msg, problem);
  printf("  error: %s\n", err.msg);
}

// Rewrite a checkpoint's state.json through an edit of its JSON.
static void edit_state(const char *ckpt, void (*edit)(cJSON *)) {
  char path[512];
  snprintf(path, sizeof path, "%s/state.json", ckpt);
  pith_err err;
  char *text = pith_read_file(path, NULL, &err);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  CHECK(j != NULL);
  if (j) {
    edit(j);
    char *out = cJSON_Print(j);
    CHECK(pith_write_file_atomic(path, out, strlen(out), &err) == 0);
    free(out);
  }
  cJSON_Delete(j);
  free(text);
}

static void set_version_2(cJSON *j) { cJSON_ReplaceItemInObject(j, "format_version", cJSON_CreateNumber(2)); }
static void drop_files(cJSON *j) { cJSON_DeleteItemFromObject(j, "files"); }

static void test_errors(void) {
  char run[128], ckpt[256], bad[256], path[512];
  snprintf(run, sizeof run, "%s/errors", root);
  pith_err err = {{0}};
  toy t = toy_new(1, 2);
  toy_step(&t);
  CHECK_MSG(toy_save(&t, run, 1, 0, &err) == 0, "%s", err.msg);
  CHECK(train_state_latest(run, ckpt, sizeof ckpt, &err) == 0);
  toy u = toy_new(3, 4);
  size_t n0;
  void *before = bytes_of(u.p[0], &n0);

  pt_scope s = pt_scope_begin();
  // The model has a tensor the checkpoint lacks.
  pt_tensor *four[4] = {u.p[0], u.p[1], u.p[2], pt_zeros(PT_SHAPE(2), PT_F32, PT_CPU)};
  const char *four_names[4] = {toy_names[0], toy_names[1], toy_names[2], "lora.1.q_proj.A"};
  expect_error(ckpt, four, four_names, 4, NULL, "params.safetensors", "no tensor 'lora.1.q_proj.A'");
  // The checkpoint has a tensor the model lacks.
  expect_error(ckpt, u.p, toy_names, 2, NULL, "params.safetensors",
               "tensor 'compress' is in the checkpoint but not among the model's 2");
  // A name differs (the first tensor matches and must not be copied in).
  const char *renamed[TOY_N] = {toy_names[0], "lora.0.q_proj.B", toy_names[2]};
  expect_error(ckpt, u.p, renamed, TOY_N, u.opt, "params.safetensors", "no tensor 'lora.0.q_proj.B'");
  // Shape and dtype.
  pt_tensor *shaped[TOY_N] = {pt_zeros(PT_SHAPE(3, 4), PT_F32, PT_CPU), u.p[1], u.p[2]};
  expect_error(ckpt, shaped, toy_names, TOY_N, NULL, "params.safetensors",
               "tensor 'lora.0.q_proj.A' has shape [4,3] in the checkpoint but [3,4] in the model");
  pt_tensor *typed[TOY_N] = {u.p[0], u.p[1], pt_zeros(PT_SCALAR_SHAPE, PT_BF16, PT_CPU)};
  expect_error(ckpt, typed, toy_names, TOY_N, NULL, "params.safetensors",
               "tensor 'compress' is F32 in the checkpoint but BF16 in the model");
  // An optimizer over other shapes.
  pt_tensor *q = pt_keep(pt_zeros(PT_SHAPE(4, 4), PT_F32, PT_CPU));
  pt_set_requires_grad(q, 1);
  pt_tensor *qs[TOY_N] = {q, u.p[1], u.p[2]};
  pt_adamw *qopt = pt_adamw_new(qs, TOY_N, (pt_adamw_config){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999});
  expect_error(ckpt, u.p, toy_names, TOY_N, qopt, "optimizer.safetensors",
               "tensor 'exp_avg.lora.0.q_proj.A' has shape [4,3] in the checkpoint but [4,4] in the optimizer");
  pt_adamw_free(qopt);
  pt_free(q);
  pt_scope_end(s);

  // A truncated params.safetensors: caught by the size recorded in state.json, and by the
  // safetensors reader when state.json does not list it.
  snprintf(bad, sizeof bad, "%s/truncated", root);
  copy_ckpt(ckpt, bad);
  snprintf(path, sizeof path, "%s/params.safetensors", bad);
  struct stat st;
  stat(path, &st);
  CHECK(truncate(path, st.st_size - 10) == 0);
  expect_error(bad, u.p, toy_names, TOY_N, u.opt, "truncated/params.safetensors", "truncated");
  edit_state(bad, drop_files);
  expect_error(bad, u.p, toy_names, TOY_N, u.opt, "truncated/params.safetensors", "but the file's data is only");
  CHECK(truncate(path, 5) == 0);
  expect_error(bad, u.p, toy_names, TOY_N, u.opt, "truncated/params.safetensors", "too short");

  // A state.json of a newer format version; one that is not JSON; one missing.
  snprintf(bad, sizeof bad, "%s/newer", root);
  copy_ckpt(ckpt, bad);
  edit_state(bad, set_version_2);
  expect_error(bad, u.p, toy_names, TOY_N, u.opt, "newer/state.json", "format version 2 is newer than this pith reads (1)");
  snprintf(path, sizeof path, "%s/state.json", bad);
  CHECK(pith_write_file_atomic(path, "{\"format\": ", 11, &err) == 0);
  expect_error(bad, u.p, toy_names, TOY_N, u.opt, "newer/state.json", "not a JSON object");
  unlink(path);
  expect_error(bad, u.p, toy_names, TOY_N, u.opt, "newer/state.json", "cannot open");
  expect_error("/nonexistent/ckpt", u.p, toy_names, TOY_N, u.opt, "/nonexistent/ckpt", "not a checkpoint folder");

  // Nothing was copied in by any failed load.
  size_t n1;
  void *after = bytes_of(u.p[0], &n1);
  CHECK(n0 == n1 && memcmp(before, after, n0) == 0);
  CHECK(pt_adamw_steps(u.opt) == 0);
  free(before);
  free(after);

  // Bad saves.
  train_state bs = {.n = TOY_N, .params = t.p, .names = renamed, .step = 2, .loader_cursor = "a\nb"};
  CHECK(train_state_save(run, &bs, 0, &err) == -1);
  CHECK_CONTAINS(err.msg, "loader cursor must be one line");
  const char *dup[TOY_N] = {"x", "y", "x"};
  bs.names = dup;
  bs.loader_cursor = NULL;
  CHECK(train_state_save(run, &bs, 0, &err) == -1);
  CHECK_CONTAINS(err.msg, "tensor name 'x' is used twice");
  bs.names = toy_names;
  bs.metrics_json = "{loss: 1";
  CHECK(train_state_save(run, &bs, 0, &err) == -1);
  CHECK_CONTAINS(err.msg, "metrics_json is not valid JSON");
  char ckdir[256];
  snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run);
  CHECK(count_entries(ckdir, NULL) == 1);

  CHECK(pt_ok());
  toy_free(&t);
  toy_free(&u);
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--child-save")) {  // the crash test's saver
    pith_err err = {{0}};
    if (big_save(argv[2], atoll(argv[3]), 1, &err) != 0) {
      fprintf(stderr, "child save: %s\n", err.msg);
      return 1;
    }
    return 0;
  }
  pt_set_num_threads(1);
  snprintf(root, sizeof root, "/tmp/pith-train-state-XXXXXX");
  CHECK_SKIP_IF(!mkdtemp(root), "cannot create a temp folder: %s", strerror(errno));
  size_t handles = pt_live_handles();

  struct {
    const char *name;
    void (*fn)(void);
  } parts[] = {{"resume", test_resume_bit_exact}, {"dtypes", test_dtypes}, {"keep_last/latest", test_keep_and_latest},
               {"errors", test_errors}, {"crash", test_crash}};
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
    int64_t t0 = now_ms();
    parts[i].fn();
    printf("%s: %.1f s\n", parts[i].name, (double)(now_ms() - t0) / 1000);
  }

  CHECK_MSG(pt_live_handles() == handles, "%zu tensor handles leaked", pt_live_handles() - handles);
  CHECK(pt_ok());
  rm_tree(root);
  return check_done("train_state");
}
