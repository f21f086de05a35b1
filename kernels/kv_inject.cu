// CUDA side of kv_inject.h: one thread per (row, slot, pair i), the two halves of a pair together.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>

extern "C" {
#include "kv_inject.h"
}

__global__ static void kv_inject_kernel(const float *__restrict__ prefix_k, const float *__restrict__ prefix_v,
                                        float *__restrict__ cache_k, float *__restrict__ cache_v, long rows,
                                        int prefix_len, int cache_len, int head_dim, double log_theta, int shift) {
  int half = head_dim / 2;
  long n = rows * prefix_len * half;
  for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < n; idx += (long)gridDim.x * blockDim.x) {
    int i = (int)(idx % half);
    long rj = idx / half;  // (row, slot)
    long row = rj / prefix_len;
    int j = (int)(rj % prefix_len);
    long src = rj * head_dim, dst = (row * cache_len + j) * head_dim;
    // angle in double like the CPU reference: large shifts lose too much in float.
    double angle = shift * exp(-2.0 * i / head_dim * log_theta);
    float c = (float)cos(angle), s = (float)sin(angle);
    float a = prefix_k[src + i], b = prefix_k[src + i + half];
    cache_k[dst + i] = a * c - b * s;
    cache_k[dst + i + half] = b * c + a * s;
    cache_v[dst + i] = prefix_v[src + i];
    cache_v[dst + i + half] = prefix_v[src + i + half];
  }
}

extern "C" int kv_inject_cuda(const float *prefix_k, const float *prefix_v, float *cache_k, float *cache_v,
                              kv_inject_shape s, void *stream, char *err, int err_len) {
  if (!kv_inject_shape_ok(s)) {
    snprintf(err, err_len, "kv_inject_cuda: invalid shape");
    return -1;
  }
  long rows = (long)s.layers * s.batch * s.kv_heads;
  long n = rows * s.prefix_len * (s.head_dim / 2);
  int threads = 256;
  long blocks = (n + threads - 1) / threads;
  if (blocks > 65535L * 16) blocks = 65535L * 16;
  kv_inject_kernel<<<(unsigned)blocks, threads, 0, (cudaStream_t)stream>>>(
      prefix_k, prefix_v, cache_k, cache_v, rows, s.prefix_len, s.cache_len, s.head_dim, log(s.rope_theta),
      s.shift);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    snprintf(err, err_len, "kv_inject_cuda: launch failed: %s", cudaGetErrorString(e));
    return -1;
  }
  return 0;
}
