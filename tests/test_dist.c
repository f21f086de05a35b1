// test_dist: the shim's c10d ops across 3 processes (fork) on this machine with Gloo: broadcast from
// rank 0, the gradients' bucketed all-reduce (buckets of 16 floats, so several buckets, a tensor
// larger than one, and a parameter without a gradient), the same overlapped with the backward pass
// (hooks, gradient accumulation, buckets launched before finish), host sums and maxima, a barrier;
// and the refusals of bad arguments.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "check.h"
#include "torch_shim.h"

#define WORLD 3

static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) return -1;
  close(s);
  return ntohs(a.sin_port);
}

static int rank_main(int rank, int port) {
  pt_dist *d = pt_dist_init("127.0.0.1", port, rank, WORLD, 0, PT_CPU, 30);
  CHECK_MSG(d != NULL, "rank %d: %s", rank, pt_error());
  if (!d) return check_done("test_dist rank");
  pt_scope s = pt_scope_begin();

  // broadcast: every rank holds (rank + 1) * [0, 1, ..., 9]; afterwards rank 0's values
  pt_tensor *b = pt_mul_scalar(pt_arange(0, 10, PT_F32, PT_CPU), rank + 1.0);
  CHECK(pt_dist_broadcast(d, &b, 1, 0) == 0);
  float got[300];
  CHECK(pt_to_data(b, got, sizeof(float) * 10) == 0);
  int bad = 0;
  for (int i = 0; i < 10; i++) bad += got[i] != (float)i;
  CHECK_MSG(bad == 0, "rank %d: broadcast: %d values differ", rank, bad);

  // gradients: loss = sum_i c_i (rank + 1) sum(p_i), so grad p_i = c_i (rank + 1); summed over the
  // ranks and scaled by 0.5: c_i * 6 * 0.5. p3 takes no part: it keeps no gradient.
  int64_t sizes[4] = {5, 300, 7, 4};
  pt_tensor *p[4];
  for (int i = 0; i < 4; i++) {
    p[i] = pt_keep(pt_zeros(PT_SHAPE(sizes[i]), PT_F32, PT_CPU));
    pt_set_requires_grad(p[i], 1);
  }
  pt_tensor *loss = pt_zeros(PT_SCALAR_SHAPE, PT_F32, PT_CPU);
  for (int i = 0; i < 3; i++) loss = pt_add(loss, pt_mul_scalar(pt_sum(p[i]), (i + 1.0) * (rank + 1)));
  CHECK(pt_backward(loss) == 0);
  CHECK_MSG(pt_dist_all_reduce_grads(d, p, 4, 0.5, 16 * sizeof(float)) == 0, "%s", pt_error());
  for (int i = 0; i < 3; i++) {
    CHECK(pt_to_data(pt_grad(p[i]), got, sizeof(float) * (size_t)sizes[i]) == 0);
    bad = 0;
    for (int j = 0; j < sizes[i]; j++) bad += got[j] != (float)((i + 1) * 3);
    CHECK_MSG(bad == 0, "rank %d: gradient %d: %d values differ (first %g, want %d)", rank, i, bad, got[0], (i + 1) * 3);
  }
  CHECK(pt_grad(p[3]) == NULL);

  // The overlapped all-reduce, with gradient accumulation: two backward passes, the second armed.
  // Buckets of 16 floats in reverse order: [q4 q3] [q2] [q1] [q0]; q0 takes no part, so the hooks
  // launch the first three during the backward pass and finish sends the last.
  int64_t qs[5] = {5, 300, 7, 4, 9};
  pt_tensor *q[5];
  for (int i = 0; i < 5; i++) {
    q[i] = pt_keep(pt_zeros(PT_SHAPE(qs[i]), PT_F32, PT_CPU));
    pt_set_requires_grad(q[i], 1);
  }
  pt_dist_grads *g = pt_dist_grads_new(d, q, 5, 16 * sizeof(float));
  CHECK_MSG(g != NULL, "rank %d: %s", rank, pt_error());
  CHECK(pt_dist_grads_new(d, q, 5, 16 * sizeof(float)) == NULL);  // one set of hooks per tensor
  CHECK_CONTAINS(pt_error(), "already has a post-accumulate-grad hook");
  pt_error_clear();
  CHECK(pt_dist_grads_new(d, &loss, 1, 64) == NULL);  // not a leaf
  CHECK_CONTAINS(pt_error(), "not a leaf");
  pt_error_clear();
  for (int round = 0; round < 2 && g; round++) {  // the second: the state was reset by finish
    for (int i = 0; i < 5; i++) pt_zero_grad(q[i]);
    for (int micro = 0; micro < 2; micro++) {
      pt_tensor *l = pt_zeros(PT_SCALAR_SHAPE, PT_F32, PT_CPU);
      for (int i = 1; i < 5; i++) l = pt_add(l, pt_mul_scalar(pt_sum(q[i]), (double)i * (rank + 1)));
      if (micro == 1) CHECK(pt_dist_grads_arm(g) == 0);
      CHECK(pt_backward(l) == 0);
      CHECK_MSG(pt_dist_grads_launched(g) == (micro ? 3 : 0), "rank %d round %d micro %d: %d buckets launched",
                rank, round, micro, pt_dist_grads_launched(g));
    }
    CHECK_MSG(pt_dist_grads_finish(g, 0.5) == 0, "%s", pt_error());
    CHECK(pt_dist_grads_launched(g) == 0);
    for (int i = 1; i < 5; i++) {  // 2 micro-batches x i (rank + 1), summed over ranks (6), x 0.5
      CHECK(pt_to_data(pt_grad(q[i]), got, sizeof(float) * (size_t)qs[i]) == 0);
      bad = 0;
      for (int j = 0; j < qs[i]; j++) bad += got[j] != (float)(i * 6);
      CHECK_MSG(bad == 0, "rank %d: overlapped gradient %d: %d values differ (first %g, want %d)", rank, i, bad,
                got[0], i * 6);
    }
    CHECK(pt_grad(q[0]) == NULL);
  }
  pt_dist_grads_free(g);
  // Without hooks the tensors train as before: a backward pass launches nothing.
  pt_tensor *q1 = pt_grad(q[1]);
  CHECK(q1 != NULL && pt_backward(pt_sum(q[1])) == 0);

  // host values
  double v[2] = {rank, 2.0 * rank}, m[2] = {rank, -rank};
  CHECK(pt_dist_all_reduce_host(d, v, 2, 0) == 0 && v[0] == 3 && v[1] == 6);
  CHECK(pt_dist_all_reduce_host(d, m, 2, 1) == 0 && m[0] == 2 && m[1] == 0);
  CHECK(pt_dist_barrier(d) == 0);

  pt_scope_end(s);
  for (int i = 0; i < 4; i++) pt_free(p[i]);
  for (int i = 0; i < 5; i++) pt_free(q[i]);
  pt_dist_free(d);
  int rc = check_done("test_dist rank");
  fflush(stdout);  // the child leaves with _exit
  return rc;
}

int main(void) {
  if (!pt_dist_available(PT_CPU)) {
    printf("test_dist: skipped: this pith was built without Gloo's headers (Debian libgloo-dev)\n");
    return CHECK_SKIP;
  }
  // Bad arguments are refused with a message, before any connection.
  CHECK(pt_dist_init("127.0.0.1", 29500, 3, 2, 0, PT_CPU, 5) == NULL);
  CHECK_CONTAINS(pt_error(), "rank 3 of 2");
  pt_error_clear();
  CHECK(pt_dist_init("", 29500, 0, 2, 0, PT_CPU, 5) == NULL);
  CHECK_CONTAINS(pt_error(), "bad arguments");
  pt_error_clear();
  CHECK(pt_dist_broadcast(NULL, NULL, 0, 0) == -1);
  CHECK_CONTAINS(pt_error(), "no process group");
  pt_error_clear();
  CHECK(pt_dist_grads_new(NULL, NULL, 0, 64) == NULL);
  CHECK_CONTAINS(pt_error(), "no process group");
  pt_error_clear();
  CHECK(pt_dist_grads_finish(NULL, 1) == -1);
  pt_error_clear();

  int port = free_port();
  CHECK(port > 0);
  fflush(stdout);
  pid_t kids[WORLD];
  for (int r = 0; r < WORLD; r++) {
    kids[r] = fork();
    if (kids[r] == 0) _exit(rank_main(r, port));
  }
  for (int r = 0; r < WORLD; r++) {
    int st = 0;
    CHECK(kids[r] > 0 && waitpid(kids[r], &st, 0) == kids[r]);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank %d ended with status %d", r, st);
  }
  return check_done("test_dist");
}
