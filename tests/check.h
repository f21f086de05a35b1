// check: the tiny test harness of the C suites. A failed CHECK prints file:line and the
// expression, counts, and lets the test go on; check_done() prints the tally and gives the exit
// code. A test that cannot run prints why and exits with CHECK_SKIP (ctest shows it skipped).
#ifndef PITH_CHECK_H
#define PITH_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_SKIP 77

static int check_failures_ = 0, check_count_ = 0;

#define CHECK(cond)                                                               \
  do {                                                                            \
    check_count_++;                                                               \
    if (!(cond)) {                                                                \
      check_failures_++;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
    }                                                                             \
  } while (0)

#define CHECK_MSG(cond, ...)                                                      \
  do {                                                                            \
    check_count_++;                                                               \
    if (!(cond)) {                                                                \
      check_failures_++;                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);    \
      fprintf(stderr, __VA_ARGS__);                                               \
      fputc('\n', stderr);                                                        \
    }                                                                             \
  } while (0)

// |a - b| <= tol * max(1, |b|)
#define CHECK_NEAR(a, b, tol)                                                          \
  do {                                                                                 \
    double a_ = (double)(a), b_ = (double)(b);                                         \
    CHECK_MSG(fabs(a_ - b_) <= (tol) * fmax(1.0, fabs(b_)), "%s = %.9g, want %.9g", #a, \
              a_, b_);                                                                 \
  } while (0)

// The string `hay` contains `needle`.
#define CHECK_CONTAINS(hay, needle)                                                  \
  do {                                                                               \
    const char *h_ = (hay), *n_ = (needle);                                          \
    CHECK_MSG(h_ && strstr(h_, n_), "\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); \
  } while (0)

static inline int check_done(const char *suite) {
  printf("%s: %d checks, %d failed\n", suite, check_count_, check_failures_);
  return check_failures_ ? 1 : 0;
}

// Path of a file in the shared test assets, or NULL (and a printed reason) when absent.
static inline const char *check_asset(const char *rel) {
  static char buf[4096];
  const char *root = getenv("PITH_ASSETS");
  if (!root) root = PITH_ASSETS_DEFAULT;
  snprintf(buf, sizeof buf, "%s/%s", root, rel);
  if (access(buf, R_OK) != 0) {
    printf("asset %s not found (set PITH_ASSETS to the assets folder)\n", buf);
    return NULL;
  }
  return buf;
}

#define CHECK_SKIP_IF(cond, ...)         \
  do {                                   \
    if (cond) {                          \
      printf("SKIP: " __VA_ARGS__);      \
      printf("\n");                      \
      exit(CHECK_SKIP);                  \
    }                                    \
  } while (0)

#endif
