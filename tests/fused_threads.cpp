// The fused row bodies (kernels/fused_math.cuh: RMSNorm's, the cross-entropy's log-sum-exp) run the
// way fused_ops.cu launches them: `blocks` blocks, each of `nt` threads (std::thread here) over
// columns tid, tid + nt, ... and rows b, b + blocks, ...; the block sum and max reductions between
// barriers, as block_sum's and block_max's are between __syncthreads; RMSNorm's weight gradient in
// one partial row per block, summed afterwards. Only the warp shuffles inside the reductions are
// left out. The CPU references run the same bodies with one thread; this is
// how test_fused_ops checks the thread layout without a GPU.
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "fused_math.cuh"
#include "fused_ops.h"

namespace {
// A reusable barrier for n threads (C++17 has none).
class barrier {
  std::mutex m;
  std::condition_variable cv;
  int n, waiting = 0;
  long generation = 0;

 public:
  explicit barrier(int count) : n(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    long gen = generation;
    if (++waiting == n) {
      waiting = 0;
      generation++;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return gen != generation; });
    }
  }
};

// One block's shared state: each thread's partial, and the barrier between the phases.
struct block {
  std::vector<float> partial;
  barrier sync;
  explicit block(int nt) : partial(nt), sync(nt) {}
};

// block_sum's contract: every thread gets the total of every thread's v.
struct block_total {
  block *b;
  int tid;
  float operator()(float v) const {
    b->sync.wait();  // an earlier call's readers are done with partial
    b->partial[tid] = v;
    b->sync.wait();
    float total = 0;
    for (float p : b->partial) total += p;
    return total;
  }
};

// block_max's: every thread gets the largest of every thread's v.
struct block_largest {
  block *b;
  int tid;
  float operator()(float v) const {
    b->sync.wait();
    b->partial[tid] = v;
    b->sync.wait();
    float m = -INFINITY;
    for (float p : b->partial) m = fmaxf(m, p);
    return m;
  }
};

template <class F> void run_block(int nt, F body) {
  block b(nt);
  std::vector<std::thread> threads;
  for (int tid = 0; tid < nt; tid++) threads.emplace_back([&, tid] { body(block_total{&b, tid}, tid); });
  for (std::thread &t : threads) t.join();
}

template <class S>
void rms_norm(const void *x, const void *res, void *sum, const void *w, void *y, float *r, long rows, int D, float eps,
              int blocks, int nt) {
  const S *xs = (const S *)x, *rs = (const S *)res;
  S *ss = (S *)sum, *ys = (S *)y;
  for (int blk = 0; blk < blocks; blk++)
    run_block(nt, [&](block_total total, int tid) {
      for (long i = blk; i < rows; i += blocks) {
        float ri = rms_norm_row<S>(xs + i * D, rs ? rs + i * D : nullptr, ss ? ss + i * D : nullptr, (const S *)w,
                                   ys + i * D, D, eps, tid, nt, total);
        if (tid == 0) r[i] = ri;
      }
    });
}

template <class S>
void rms_norm_backward(const void *gy, const void *gsum, const void *v, const void *w, const float *r, void *gv,
                       float *gw, long rows, int D, int blocks, int nt) {
  const S *g = (const S *)gy, *gs = (const S *)gsum, *vs = (const S *)v;
  std::vector<float> partial((size_t)blocks * D, 0.0f);
  for (int blk = 0; blk < blocks; blk++)
    run_block(nt, [&](block_total total, int tid) {
      for (long i = blk; i < rows; i += blocks)
        rms_norm_row_backward<S>(g + i * D, gs ? gs + i * D : nullptr, vs + i * D, (const S *)w, r[i],
                                 (S *)gv + i * D, partial.data() + (size_t)blk * D, D, tid, nt, total);
    });
  for (int blk = 0; blk < blocks; blk++)
    for (int c = 0; c < D; c++) gw[c] += partial[(size_t)blk * D + c];
}

template <class S> void ce_lse(const void *logits, float *lse, long rows, long V, int blocks, int nt) {
  for (int blk = 0; blk < blocks; blk++)
    run_block(nt, [&](block_total total, int tid) {
      for (long i = blk; i < rows; i += blocks) {
        float l = ce_row_lse<S>((const S *)logits + i * V, V, tid, nt, block_largest{total.b, tid}, total);
        if (tid == 0) lse[i] = l;
      }
    });
}
}  // namespace

extern "C" {
void fused_ce_lse_threads(fused_dtype dt, const void *logits, float *lse, long rows, long V, int blocks, int nt) {
  (dt == FUSED_BF16 ? ce_lse<pith_bf16> : ce_lse<float>)(logits, lse, rows, V, blocks, nt);
}
void fused_rms_norm_threads(fused_dtype dt, const void *x, const void *res, void *sum, const void *w, void *y,
                            float *r, long rows, int D, float eps, int blocks, int nt) {
  (dt == FUSED_BF16 ? rms_norm<pith_bf16> : rms_norm<float>)(x, res, sum, w, y, r, rows, D, eps, blocks, nt);
}
void fused_rms_norm_backward_threads(fused_dtype dt, const void *gy, const void *gsum, const void *v, const void *w,
                                     const float *r, void *gv, float *gw, long rows, int D, int blocks, int nt) {
  (dt == FUSED_BF16 ? rms_norm_backward<pith_bf16> : rms_norm_backward<float>)(gy, gsum, v, w, r, gv, gw, rows, D,
                                                                               blocks, nt);
}
}
