#include "kv_inject.h"

#include <math.h>
#include <string.h>

int kv_inject_shape_ok(kv_inject_shape s) {
  return s.layers > 0 && s.batch > 0 && s.kv_heads > 0 && s.prefix_len > 0 && s.cache_len >= s.prefix_len &&
         s.head_dim > 0 && s.head_dim % 2 == 0 && s.rope_theta > 0;
}

int kv_inject_cpu(const float *prefix_k, const float *prefix_v, float *cache_k, float *cache_v,
                  kv_inject_shape s) {
  if (!kv_inject_shape_ok(s)) return -1;
  int D = s.head_dim, half = D / 2;
  long rows = (long)s.layers * s.batch * s.kv_heads;  // (L, B, Hkv) flattened
  for (long r = 0; r < rows; r++)
    for (int j = 0; j < s.prefix_len; j++) {
      const float *pk = prefix_k + (r * s.prefix_len + j) * D;
      const float *pv = prefix_v + (r * s.prefix_len + j) * D;
      float *ck = cache_k + (r * s.cache_len + j) * D;
      float *cv = cache_v + (r * s.cache_len + j) * D;
      memcpy(cv, pv, sizeof(float) * D);
      for (int i = 0; i < half; i++) {
        double angle = s.shift * pow(s.rope_theta, -2.0 * i / D);
        float c = (float)cos(angle), sn = (float)sin(angle);
        float a = pk[i], b = pk[i + half];
        ck[i] = a * c - b * sn;
        ck[i + half] = b * c + a * sn;
      }
    }
  return 0;
}
