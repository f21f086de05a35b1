// align: Spearman's rho with ties, constant and short inputs (against the definition: Pearson's r
// of average ranks, worked by hand), and align_kl_per_token against the KL computed in double from
// its definition, at temperatures 1 and 2, with vocabularies cut to the smaller one; its gradient
// reaches the scorer's logits.
#include <math.h>

#include "align.h"
#include "check.h"

// KL(p_t || p_s) of two logit rows at temperature T, in double.
static double kl_ref(const float *zt, const float *zs, int V, double T) {
  double mt = -INFINITY, ms = -INFINITY, st = 0, ss = 0, kl = 0;
  for (int v = 0; v < V; v++) mt = fmax(mt, zt[v] / T), ms = fmax(ms, zs[v] / T);
  for (int v = 0; v < V; v++) st += exp(zt[v] / T - mt), ss += exp(zs[v] / T - ms);
  for (int v = 0; v < V; v++) {
    double lt = zt[v] / T - mt - log(st), ls = zs[v] / T - ms - log(ss);
    kl += exp(lt) * (lt - ls);
  }
  return kl;
}

int main(void) {
  // x ranks (1, 2.5, 2.5, 4), y ranks (1, 3, 2, 4): deviations from 2.5 are (-1.5, 0, 0, 1.5) and
  // (-1.5, .5, -.5, 1.5): sxy = 4.5, sxx = 4.5, syy = 5 → rho = 4.5 / sqrt(22.5).
  double x[4] = {0.1, 0.7, 0.7, 2.0}, y[4] = {-3, 5, 1, 9};
  CHECK_NEAR(align_spearman(x, y, 4), 4.5 / sqrt(22.5), 1e-12);
  double rev[4] = {9, 1, 5, -3};  // y's ranks reversed: (4, 2, 3, 1)
  CHECK_NEAR(align_spearman(y, rev, 4), -1.0, 1e-12);
  CHECK_NEAR(align_spearman(y, y, 4), 1.0, 1e-12);
  double flat[4] = {2, 2, 2, 2};
  CHECK(isnan(align_spearman(x, flat, 4)));
  CHECK(isnan(align_spearman(x, y, 1)));

  // (2, 3) target logits over V = 5, scorer over 6 (a padded embedding): the KL is over the first 5.
  float zt[2 * 3 * 5], zs[2 * 3 * 6];
  for (int i = 0; i < 30; i++) zt[i] = (float)sin(1.3 * i) * 3;
  for (int i = 0; i < 36; i++) zs[i] = (float)cos(0.7 * i) * 2;
  for (int T = 1; T <= 2; T++) {
    pt_scope s = pt_scope_begin();
    pt_tensor *t = pt_from_data(zt, PT_F32, PT_SHAPE(2, 3, 5), PT_CPU);
    pt_tensor *u = pt_from_data(zs, PT_F32, PT_SHAPE(2, 3, 6), PT_CPU);
    pt_set_requires_grad(u, 1);
    pt_tensor *kl = align_kl_per_token(t, u, T);
    CHECK(kl && pt_ndim(kl) == 2 && pt_size(kl, 0) == 2 && pt_size(kl, 1) == 3);
    float got[6] = {0};
    CHECK(kl && pt_to_data(kl, got, sizeof got) == 0);
    for (int r = 0; r < 6; r++) CHECK_NEAR(got[r], kl_ref(&zt[r * 5], &zs[r * 6], 5, T), 1e-5);
    CHECK(pt_backward(pt_sum(kl)) == 0);
    pt_tensor *g = pt_grad(u);
    // d KL / d z_s[v] = (p_s(v) - p_t(v)) / T on the shared ids, 0 on the padded one.
    float grad[36] = {0};
    CHECK(g && pt_to_data(g, grad, sizeof grad) == 0);
    for (int r = 0; r < 6; r++) {
      double ms = -INFINITY, mt = -INFINITY, ss = 0, st = 0;
      for (int v = 0; v < 5; v++) ms = fmax(ms, zs[r * 6 + v] / T), mt = fmax(mt, zt[r * 5 + v] / T);
      for (int v = 0; v < 5; v++) ss += exp(zs[r * 6 + v] / T - ms), st += exp(zt[r * 5 + v] / T - mt);
      for (int v = 0; v < 5; v++)
        CHECK_NEAR(grad[r * 6 + v], (exp(zs[r * 6 + v] / T - ms) / ss - exp(zt[r * 5 + v] / T - mt) / st) / T, 1e-5);
      CHECK_NEAR(grad[r * 6 + 5], 0, 1e-7);
    }
    pt_scope_end(s);
  }
  return check_done("test_align");
}
