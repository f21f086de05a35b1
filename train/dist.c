// dist: the launcher's environment and the trainer's collectives (see dist.h).
#include "dist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

// An integer environment variable in [lo, hi]; *v keeps its default when the variable is unset.
static int env_int(const char *name, long lo, long hi, int required, long *v, pith_err *err) {
  const char *s = getenv(name);
  if (!s || !*s) return required ? pith_fail(err, "%s: not set (torchrun sets it; WORLD_SIZE > 1 needs it)", name) : 0;
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (errno || *end || x < lo || x > hi)
    return pith_fail(err, "%s: '%s' is not an integer in [%ld, %ld]", name, s, lo, hi);
  *v = x;
  return 0;
}

int dist_init(dist_ctx *d, pt_device *devp, pith_err *err) {
  *d = (dist_ctx){.world = 1};
  long world = 1, rank = 0, local = 0, port = 0, timeout = 600;
  if (env_int("WORLD_SIZE", 1, 1 << 20, 0, &world, err)) return -1;
  // One process joins a group only when torchrun launched it (as DDP does): the distributed path
  // alone, to measure what it costs; without Gloo or NCCL it just runs as one process.
  int torchrun = getenv("TORCHELASTIC_RUN_ID") != NULL;
  if (world == 1 && (!torchrun || !pt_dist_available(*devp == PT_CPU ? PT_CPU : 0))) return 0;
  if (env_int("RANK", 0, world - 1, 1, &rank, err) || env_int("LOCAL_RANK", 0, world - 1, 0, &local, err) ||
      env_int("MASTER_PORT", 1, 65535, 1, &port, err) || env_int("PITH_DIST_TIMEOUT", 1, 86400 * 7, 0, &timeout, err))
    return -1;
  pt_device dev = *devp == PT_CPU ? PT_CPU : (pt_device)local;  // one GPU per rank of a node
  const char *addr = getenv("MASTER_ADDR");
  if (!addr || !*addr) return pith_fail(err, "MASTER_ADDR: not set (torchrun sets it; WORLD_SIZE > 1 needs it)");
  if (!pt_dist_available(dev))
    return pith_fail(err, "WORLD_SIZE=%ld: this pith cannot train on several processes on %s (built without %s)",
                     world, dev == PT_CPU ? "the CPU" : "CUDA", dev == PT_CPU ? "Gloo's headers, Debian libgloo-dev" : "NCCL");
  // torchrun's agent hosts its own store at MASTER_ADDR:MASTER_PORT and says so.
  const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
  pt_dist *pg = pt_dist_init(addr, (int)port, (int)rank, (int)world, agent && !strcmp(agent, "True"), dev,
                             (double)timeout);
  if (!pg)
    return pt_fail(err, "rank %ld of %ld: joining the process group at %s:%ld (PITH_DIST_TIMEOUT=%ld s)", rank, world,
                   addr, port, timeout);
  *d = (dist_ctx){.rank = (int)rank, .world = (int)world, .local_rank = (int)local, .pg = pg};
  *devp = dev;
  return 0;
}

void dist_close(dist_ctx *d, int failed) {
  if (!d->pg) return;
  if (!failed && pt_dist_barrier(d->pg)) pt_error_clear();  // a peer already gone: nothing to wait for
  pt_dist_grads_free(d->grads);
  pt_dist_free(d->pg);
  *d = (dist_ctx){.world = 1};
}

int dist_broadcast(dist_ctx *d, pt_tensor *const *params, int n, pith_err *err) {
  if (!d->pg) return 0;
  return pt_dist_broadcast(d->pg, params, n, 0) ? pt_fail(err, "rank %d: broadcasting the weights", d->rank) : 0;
}

int dist_overlap(dist_ctx *d, pt_tensor *const *params, int n, pith_err *err) {
  if (!d->pg || d->grads) return 0;
  if (!(d->grads = pt_dist_grads_new(d->pg, params, n, DIST_BUCKET_BYTES)))
    return pt_fail(err, "rank %d: gradient hooks for the overlapped all-reduce", d->rank);
  return 0;
}

int dist_arm(dist_ctx *d, pith_err *err) {
  if (!d->grads) return 0;
  return pt_dist_grads_arm(d->grads) ? pt_fail(err, "rank %d: arming the gradient hooks", d->rank) : 0;
}

int dist_reduce_grads(dist_ctx *d, pt_tensor *const *params, int n, double scale, pith_err *err) {
  if (!d->pg) return 0;
  if (d->grads ? pt_dist_grads_finish(d->grads, scale) : pt_dist_all_reduce_grads(d->pg, params, n, scale, DIST_BUCKET_BYTES))
    return pt_fail(err, "rank %d of %d: all-reducing the gradients (a rank died or timed out?)", d->rank, d->world);
  return 0;
}

int dist_reduce(dist_ctx *d, double *v, int n, int max, pith_err *err) {
  if (!d->pg) return 0;
  if (pt_dist_all_reduce_host(d->pg, v, n, max))
    return pt_fail(err, "rank %d of %d: all-reduce (a rank died or timed out?)", d->rank, d->world);
  return 0;
}
