// kv_inject: the CPU reference against RoPE written independently with the shim's ops, guard
// slots untouched, rotations that undo each other, invalid shapes refused; and, where a GPU is
// present, the CUDA kernel against the CPU reference over many shapes.
#include "check.h"
#include "kv_inject.h"
#include "torch_shim.h"

#ifdef PITH_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

static const float GUARD = 12345.f;

static void fill(float *x, long n, unsigned seed) {
  for (long i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = ((seed >> 9) % 20000) / 10000.0f - 1.0f;
  }
}

// RoPE by `shift` positions, rotate-half pairing, through libtorch: x (N, D).
static pt_tensor *rope_torch(pt_tensor *x, int D, double theta, int shift) {
  float *c = malloc(sizeof(float) * D), *s = malloc(sizeof(float) * D);
  for (int i = 0; i < D; i++) {
    double angle = shift * pow(theta, -2.0 * (i % (D / 2)) / D);
    c[i] = (float)cos(angle);
    s[i] = (float)sin(angle);
  }
  pt_tensor *cs = pt_from_data(c, PT_F32, PT_SHAPE(D), PT_CPU), *sn = pt_from_data(s, PT_F32, PT_SHAPE(D), PT_CPU);
  free(c);
  free(s);
  pt_tensor *halves[2] = {pt_neg(pt_slice(x, 1, D / 2, D)), pt_slice(x, 1, 0, D / 2)};
  return pt_add(pt_mul(x, cs), pt_mul(pt_cat(halves, 2, 1), sn));
}

static void test_cpu_reference(kv_inject_shape s) {
  long rows = (long)s.layers * s.batch * s.kv_heads, D = s.head_dim;
  long np = rows * s.prefix_len * D, nc = rows * s.cache_len * D;
  float *pk = malloc(sizeof(float) * np), *pv = malloc(sizeof(float) * np);
  float *ck = malloc(sizeof(float) * nc), *cv = malloc(sizeof(float) * nc);
  fill(pk, np, 1);
  fill(pv, np, 2);
  for (long i = 0; i < nc; i++) ck[i] = cv[i] = GUARD;
  CHECK(kv_inject_cpu(pk, pv, ck, cv, s) == 0);

  pt_scope sc = pt_scope_begin();
  pt_tensor *want = rope_torch(pt_from_data(pk, PT_F32, PT_SHAPE(rows * s.prefix_len, D), PT_CPU), (int)D,
                               s.rope_theta, s.shift);
  float *w = malloc(sizeof(float) * np);
  CHECK(pt_to_data(want, w, sizeof(float) * np) == 0);
  double worst = 0;
  int guards_ok = 1, values_ok = 1;
  for (long r = 0; r < rows; r++)
    for (int j = 0; j < s.cache_len; j++)
      for (long i = 0; i < D; i++) {
        long c = (r * s.cache_len + j) * D + i, p = (r * s.prefix_len + j) * D + i;
        if (j >= s.prefix_len) {
          guards_ok &= ck[c] == GUARD && cv[c] == GUARD;
          continue;
        }
        values_ok &= cv[c] == pv[p];
        worst = fmax(worst, fabs(ck[c] - w[p]));
      }
  CHECK_MSG(worst < 1e-5, "keys differ from RoPE through libtorch by %g (shift %d)", worst, s.shift);
  CHECK_MSG(guards_ok, "slots past the prefix were written");
  CHECK_MSG(values_ok, "values are not copied exactly");

  // Shifting by -shift undoes it.
  kv_inject_shape back = s;
  back.shift = -s.shift;
  back.cache_len = s.prefix_len;
  float *pk2 = malloc(sizeof(float) * np), *pv2 = malloc(sizeof(float) * np);
  float *rk = malloc(sizeof(float) * np), *rv = malloc(sizeof(float) * np);
  for (long r = 0; r < rows; r++) {
    memcpy(pk2 + r * s.prefix_len * D, ck + r * s.cache_len * D, sizeof(float) * s.prefix_len * D);
    memcpy(pv2 + r * s.prefix_len * D, cv + r * s.cache_len * D, sizeof(float) * s.prefix_len * D);
  }
  CHECK(kv_inject_cpu(pk2, pv2, rk, rv, back) == 0);
  worst = 0;
  for (long i = 0; i < np; i++) worst = fmax(worst, fabs(rk[i] - pk[i]));
  CHECK_MSG(worst < 1e-5, "rotating back leaves an error of %g", worst);
  free(pk2), free(pv2), free(rk), free(rv), free(w);
  free(pk), free(pv), free(ck), free(cv);
  pt_scope_end(sc);
}

#ifdef PITH_HAVE_CUDA
static int test_cuda_against_cpu(kv_inject_shape s) {
  long rows = (long)s.layers * s.batch * s.kv_heads, D = s.head_dim;
  long np = rows * s.prefix_len * D, nc = rows * s.cache_len * D;
  size_t bp = sizeof(float) * np, bc = sizeof(float) * nc;
  float *pk = malloc(bp), *pv = malloc(bp), *ck = malloc(bc), *cv = malloc(bc), *gk = malloc(bc), *gv = malloc(bc);
  fill(pk, np, 3);
  fill(pv, np, 4);
  for (long i = 0; i < nc; i++) ck[i] = cv[i] = GUARD;
  kv_inject_cpu(pk, pv, ck, cv, s);
  float *dpk, *dpv, *dck, *dcv;
  cudaMalloc((void **)&dpk, bp), cudaMalloc((void **)&dpv, bp), cudaMalloc((void **)&dck, bc), cudaMalloc((void **)&dcv, bc);
  for (long i = 0; i < nc; i++) gk[i] = GUARD;
  cudaMemcpy(dpk, pk, bp, cudaMemcpyHostToDevice);
  cudaMemcpy(dpv, pv, bp, cudaMemcpyHostToDevice);
  cudaMemcpy(dck, gk, bc, cudaMemcpyHostToDevice);
  cudaMemcpy(dcv, gk, bc, cudaMemcpyHostToDevice);
  char err[256] = "";
  CHECK_MSG(kv_inject_cuda(dpk, dpv, dck, dcv, s, NULL, err, sizeof err) == 0, "%s", err);
  cudaMemcpy(gk, dck, bc, cudaMemcpyDeviceToHost);
  cudaMemcpy(gv, dcv, bc, cudaMemcpyDeviceToHost);
  CHECK_MSG(cudaDeviceSynchronize() == cudaSuccess, "CUDA error after the kernel");
  double worst = 0;
  int exact = 1;
  for (long i = 0; i < nc; i++) {
    worst = fmax(worst, fabs(gk[i] - ck[i]));
    exact &= gv[i] == cv[i];
  }
  CHECK_MSG(worst < 1e-5, "CUDA keys differ from the CPU reference by %g", worst);
  CHECK_MSG(exact, "CUDA values (or guard slots) differ from the CPU reference");
  cudaFree(dpk), cudaFree(dpv), cudaFree(dck), cudaFree(dcv);
  free(pk), free(pv), free(ck), free(cv), free(gk), free(gv);
  return 0;
}
#endif

int main(void) {
  kv_inject_shape shapes[] = {
      {1, 1, 1, 1, 1, 2, 10000, 0},     {2, 3, 2, 4, 7, 8, 10000, 5},      {3, 2, 4, 16, 20, 64, 500000, 484},
      {1, 1, 1, 4, 4, 128, 500000, -3}, {2, 1, 8, 1, 9, 64, 10000, 1000},
  };
  int n = (int)(sizeof shapes / sizeof shapes[0]);
  for (int i = 0; i < n; i++) test_cpu_reference(shapes[i]);

  kv_inject_shape bad[] = {{0, 1, 1, 1, 1, 2, 1e4, 0}, {1, 1, 1, 2, 1, 2, 1e4, 0}, {1, 1, 1, 1, 1, 3, 1e4, 0}};
  float x = 0;
  for (int i = 0; i < 3; i++) CHECK(kv_inject_cpu(&x, &x, &x, &x, bad[i]) == -1);

#ifdef PITH_HAVE_CUDA
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    printf("SKIP (CUDA part): no CUDA device here; the CPU reference was checked, the kernel compiled\n");
  } else {
    for (int i = 0; i < n; i++) test_cuda_against_cpu(shapes[i]);
    // Many random shapes, ggml test-backend-ops style.
    unsigned seed = 7;
    for (int t = 0; t < 200; t++) {
      seed = seed * 1664525u + 1013904223u;
      kv_inject_shape s = {1 + seed % 4, 1 + (seed >> 4) % 3, 1 + (seed >> 8) % 8, 1 + (seed >> 12) % 17, 0,
                           2 * (1 + (seed >> 18) % 64), (seed >> 25) % 2 ? 10000 : 500000, (int)(seed >> 20) % 600 - 100};
      s.cache_len = s.prefix_len + (seed >> 27) % 5;
      test_cuda_against_cpu(s);
    }
    printf("CUDA kernel checked on %d device(s)\n", devices);
  }
#else
  printf("SKIP (CUDA part): built without nvcc\n");
#endif
  return check_done("test_kv_inject");
}
