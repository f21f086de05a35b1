#include "lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lora_parse_targets(const char *spec, unsigned *targets, pith_err *err) {
  *targets = 0;
  if (!strcmp(spec, "all")) {
    *targets = (1u << LLAMA_N_PROJ) - 1;
    return 0;
  }
  const char *p = spec;
  while (*p) {
    size_t n = strcspn(p, ", ");
    int found = 0;
    for (int i = 0; i < LLAMA_N_PROJ; i++)
      if (n == strlen(LLAMA_PROJ_NAMES[i]) && !strncmp(p, LLAMA_PROJ_NAMES[i], n)) {
        *targets |= 1u << i;
        found = 1;
      }
    if (n && !found)
      return pith_fail(err, "lora_target: unknown module '%.*s' (use q_proj, k_proj, v_proj, o_proj, gate_proj, "
                            "up_proj, down_proj or all)", (int)n, p);
    p += n;
    p += strspn(p, ", ");
  }
  if (!*targets) return pith_fail(err, "lora_target: no modules given");
  return 0;
}

// (out, in) of projection p.
static void proj_shape(const llama_config *c, llama_proj p, int64_t *out, int64_t *in) {
  int64_t D = c->dim, F = c->hidden_dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
  int64_t outs[LLAMA_N_PROJ] = {q, kv, kv, D, F, F, D}, ins[LLAMA_N_PROJ] = {D, D, D, q, D, D, F};
  *out = outs[p];
  *in = ins[p];
}

lora_adapter *lora_new(const llama_model *m, lora_config cfg, uint64_t seed, pith_err *err) {
  if (cfg.rank <= 0 || cfg.alpha <= 0 || cfg.dropout < 0 || cfg.dropout >= 1 || !cfg.targets) {
    pith_fail(err, "lora: need lora_rank > 0, lora_alpha > 0, 0 <= lora_dropout < 1 and a lora_target");
    return NULL;
  }
  int L = m->cfg.n_layers;
  lora_adapter *l = calloc(1, sizeof *l);
  l->cfg = cfg;
  l->scaling = cfg.alpha / cfg.rank;
  l->n_layers = L;
  l->a = calloc((size_t)L, sizeof *l->a);
  l->b = calloc((size_t)L, sizeof *l->b);
  pt_gen *g = pt_gen_new(seed, PT_CPU);
  for (int i = 0; i < L; i++)
    for (int p = 0; p < LLAMA_N_PROJ; p++) {
      if (!(cfg.targets & (1u << p))) continue;
      int64_t out, in;
      proj_shape(&m->cfg, p, &out, &in);
      pt_scope s = pt_scope_begin();
      // PEFT: A Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)); B zero.
      double bound = 1 / sqrt((double)in);
      pt_tensor *a = pt_to_device(pt_uniform(PT_SHAPE(cfg.rank, in), -bound, bound, PT_F32, PT_CPU, g), m->device);
      l->a[i][p] = pt_keep(pt_scope_return(s, a));
      l->b[i][p] = pt_keep(pt_zeros(PT_SHAPE(out, cfg.rank), PT_F32, m->device));
      pt_set_requires_grad(l->a[i][p], 1);
      pt_set_requires_grad(l->b[i][p], 1);
    }
  pt_gen_free(g);
  if (!pt_ok()) {
    pt_fail(err, "lora");
    lora_free(l);
    return NULL;
  }
  return l;
}

void lora_free(lora_adapter *l) {
  if (!l) return;
  lora_cast_step_end(l);
  for (int i = 0; i < l->n_layers; i++)
    for (int p = 0; p < LLAMA_N_PROJ; p++) {
      pt_free(l->a[i][p]);
      pt_free(l->b[i][p]);
    }
  free(l->a);
  free(l->b);
  free(l);
}

int lora_params(const lora_adapter *l, pt_tensor **params, int max) {
  int n = 0;
  for (int i = 0; i < l->n_layers; i++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (l->a[i][p]) {
        if (params && n + 2 <= max) {
          params[n] = l->a[i][p];
          params[n + 1] = l->b[i][p];
        }
        n += 2;
      }
  return n;
}

int lora_cast_step(lora_adapter *l, pt_dtype dt) {
  lora_cast_step_end(l);
  if (dt == PT_F32) return 0;
  if (!pt_grad_enabled()) {  // a copy made now would pass no gradient to its master
    pt_error_set("lora: the step's casts need gradient recording on");
    return -1;
  }
  l->a_step = calloc((size_t)l->n_layers, sizeof *l->a_step);
  l->b_step = calloc((size_t)l->n_layers, sizeof *l->b_step);
  if (!l->a_step || !l->b_step) {
    lora_cast_step_end(l);
    pt_error_set("lora: out of memory");
    return -1;
  }
  for (int i = 0; i < l->n_layers; i++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (l->a[i][p]) {
        l->a_step[i][p] = pt_keep(pt_to_dtype(l->a[i][p], dt));
        l->b_step[i][p] = pt_keep(pt_to_dtype(l->b[i][p], dt));
      }
  if (pt_ok()) return 0;
  lora_cast_step_end(l);
  return -1;
}

void lora_cast_step_end(lora_adapter *l) {
  for (int i = 0; i < l->n_layers; i++)
    for (int p = 0; p < LLAMA_N_PROJ; p++) {
      if (l->a_step) pt_free(l->a_step[i][p]);
      if (l->b_step) pt_free(l->b_step[i][p]);
    }
  free(l->a_step);
  free(l->b_step);
  l->a_step = l->b_step = NULL;
}

// The master w (f32) in the compute dtype dt: the step's copy where one was made for dt, else a cast.
static pt_tensor *compute_copy(pt_tensor *w, pt_tensor *step_copy, pt_dtype dt) {
  return step_copy && pt_dtype_of(step_copy) == dt ? step_copy : pt_to_dtype(w, dt);
}

pt_tensor *lora_add(const lora_adapter *l, int layer, llama_proj p, pt_tensor *x, pt_tensor *base_out, pt_gen *g) {
  pt_tensor *a = l->a[layer][p];
  if (!a) return base_out;
  if (g && l->cfg.dropout > 0) x = pt_dropout(x, l->cfg.dropout, g);
  // The f32 master weights, cast (differentiably) to the compute dtype of x: bf16 on a bf16 base.
  pt_dtype dt = pt_dtype_of(x);
  pt_tensor *ac = compute_copy(a, l->a_step ? l->a_step[layer][p] : NULL, dt);
  pt_tensor *bc = compute_copy(l->b[layer][p], l->b_step ? l->b_step[layer][p] : NULL, dt);
  return pt_add_scaled(base_out, pt_linear(pt_linear(x, ac, NULL), bc, NULL), l->scaling);
}
