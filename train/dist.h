// dist: data parallelism across processes, as torchrun (or srun, mpirun) launches them. It reads
// the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and joins
// torch.distributed's c10d process group through the shim; the trainer asks it for what ranks
// must agree on. WORLD_SIZE unset, or 1 outside torchrun: no process group, and every call is the
// one-process case. Under torchrun a single process joins a group of one (the distributed path
// alone: what it costs a step is measurable on one GPU).
//
// PITH_DIST_TIMEOUT (seconds, default 600, torch.distributed's) bounds the rendezvous and every
// collective: a rank that never came or hangs makes the others fail with an error instead of
// hanging (one that died is seen at once, by its closed connections).
#ifndef PITH_DIST_H
#define PITH_DIST_H

#include <stddef.h>

#include "base.h"
#include "torch_shim.h"

typedef struct {
  int rank, world, local_rank;  // world 1: no process group
  pt_dist *pg;
  pt_dist_grads *grads;  // dist_overlap's hooks, or NULL: the all-reduce after backward
} dist_ctx;

#define DIST_BUCKET_BYTES (4u << 20)  // gradients travel in all-reduces of about this size

// Read the environment and, for world > 1 (or 1 under torchrun), join the group for tensors on
// *dev: Gloo on the CPU, NCCL on CUDA, where each rank takes its node's GPU LOCAL_RANK (*dev becomes
// it). On error d is the one-process context and err names the variable or the failed rendezvous.
int dist_init(dist_ctx *d, pt_device *dev, pith_err *err);
// Leaves the group (fine on the one-process context): after a barrier, or at once when this rank
// failed (the others learn it from the dead link rather than wait at the barrier).
void dist_close(dist_ctx *d, int failed);
static inline int dist_main(const dist_ctx *d) { return d->rank == 0; }
// params ← rank 0's values.
int dist_broadcast(dist_ctx *d, pt_tensor *const *params, int n, pith_err *err);
// Overlap the gradients' all-reduce with the backward pass from now on (hooks on params; see
// pt_dist_grads_new): dist_arm before a step's last backward, and dist_reduce_grads after it waits.
int dist_overlap(dist_ctx *d, pt_tensor *const *params, int n, pith_err *err);
int dist_arm(dist_ctx *d, pith_err *err);  // no-op without dist_overlap
// The gradients of params ← their sum over ranks × scale (with dist_overlap: the buckets the
// backward pass launched, and the rest).
int dist_reduce_grads(dist_ctx *d, pt_tensor *const *params, int n, double scale, pith_err *err);
// v (n doubles) ← their sum (max: their maximum) over ranks.
int dist_reduce(dist_ctx *d, double *v, int n, int max, pith_err *err);

#endif
