// llama_tool: the C side of tests/reference/llama_parity.py.
//
//   llama_tool make DIR SEED           random weights for DIR/config.json, saved into DIR by pith
//   llama_tool forward DIR IN OUT      forward + backward on the inputs in IN (safetensors), writing
//                                      logits, loss, selected K/V and hidden states, and gradients
//   llama_tool compress DIR IN OUT     a compressor's loss (500x or ICAE) and its gradients
//   llama_tool exported DIR EXP IN OUT a compressor loaded from the export folder EXP (pith export)
//                                      over the model DIR: per-layer K/V (k.L, v.L; 500x) or memory
//                                      (ICAE), decoder logits and loss for text_ids/text_mask/dec_*
//
// IN holds: ids (B,T) i64; optional mask (B,T) u8, embeds (B,T,dim) f32 (replace ids when the
// metadata says use_embeds=1), prefix_k.L / prefix_v.L (B,Hkv,P,hd), prefix_mask (B,P) u8,
// select (B,K) i64, lora.L.PROJ.A / .B with metadata lora_rank and lora_alpha; loss_w (B,T,V):
// loss = sum(logits * loss_w).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compressor.h"
#include "export.h"
#include "hf_folder.h"
#include "lora.h"
#include "safetensors.h"

static void die(const char *what, const char *msg) {
  fprintf(stderr, "llama_tool: %s: %s\n", what, msg);
  exit(1);
}

static pt_tensor *load(const st_file *f, const char *name, int required) {
  const st_tensor *t = st_find(f, name);
  if (!t) {
    if (required) die(name, "missing from the input file");
    return NULL;
  }
  pt_dtype dt = t->dtype == ST_I64 ? PT_I64 : t->dtype == ST_U8 || t->dtype == ST_BOOL ? PT_BOOL : PT_F32;
  if (t->dtype != ST_I64 && t->dtype != ST_U8 && t->dtype != ST_BOOL && t->dtype != ST_F32) die(name, "unexpected dtype");
  pt_shape s = {t->ndim, {0}};
  for (int i = 0; i < t->ndim; i++) s.d[i] = t->shape[i];
  return pt_from_data(t->data, dt, s, PT_CPU);  // in the arena: freed with the thread
}

static void add(st_writer *w, const char *name, pt_tensor *t) {
  pith_err err;
  if (!t) die(name, "no tensor to write");
  pt_tensor *f = pt_contiguous(pt_to_dtype(t, PT_F32));
  pt_shape s = pt_shape_of(f);
  size_t n = (size_t)pt_numel(f) * 4;
  float *buf = malloc(n ? n : 1);
  if (pt_to_data(f, buf, n)) die(name, pt_error());
  if (st_writer_add(w, name, ST_F32, s.ndim, s.d, buf, &err)) die(name, err.msg);
  free(buf);
}

static lora_config lora_config_of(const st_file *f) {
  pith_err err;
  lora_config lc = {atoi(st_metadata(f, "lora_rank")), atof(st_metadata(f, "lora_alpha")), 0, 0};
  if (lora_parse_targets(st_metadata(f, "lora_target"), &lc.targets, &err)) die("lora", err.msg);
  return lc;
}

// Overwrite the adapter's weights with lora.L.PROJ.A / .B (the compressor's checkpoint names).
static void load_lora(const st_file *f, lora_adapter *lora) {
  char name[128];
  for (int l = 0; l < lora->n_layers; l++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (lora->a[l][p]) {
        comp_lora_param_name(l, (llama_proj)p, 'A', name, sizeof name);
        pt_copy_(lora->a[l][p], load(f, name, 1));
        comp_lora_param_name(l, (llama_proj)p, 'B', name, sizeof name);
        pt_copy_(lora->b[l][p], load(f, name, 1));
      }
}

// A parameter's gradient, or zeros when nothing reached it (e.g. 500x's last-layer q_proj).
static pt_tensor *grad_or_zeros(pt_tensor *p) {
  pt_tensor *g = pt_grad(p);
  return g ? g : pt_zeros(pt_shape_of(p), pt_dtype_of(p), PT_CPU);
}

// grad.NAME for each LoRA matrix.
static void add_lora_grads(st_writer *w, const lora_adapter *lora) {
  char name[128] = "grad.";
  for (int l = 0; l < lora->n_layers; l++)
    for (int p = 0; p < LLAMA_N_PROJ; p++)
      if (lora->a[l][p]) {
        comp_lora_param_name(l, (llama_proj)p, 'A', name + 5, sizeof name - 5);
        add(w, name, grad_or_zeros(lora->a[l][p]));
        comp_lora_param_name(l, (llama_proj)p, 'B', name + 5, sizeof name - 5);
        add(w, name, grad_or_zeros(lora->b[l][p]));
      }
}

static int cmd_compress(const char *dir, const char *in_path, const char *out_path) {
  pith_err err;
  llama_model *m = hf_model_load(dir, PT_F32, PT_CPU, &err);
  if (!m) die("load", err.msg);
  st_file *f = st_open(in_path, &err);
  if (!f) die("inputs", err.msg);
  comp_config cc = {0};
  cc.method = !strcmp(st_metadata(f, "method"), "icae") ? COMP_ICAE : COMP_500X;
  cc.k = atoi(st_metadata(f, "k"));
  cc.positions = !strcmp(st_metadata(f, "positions"), "consistent") ? COMP_POS_CONSISTENT : COMP_POS_REFERENCE;
  cc.ae_token = !strcmp(st_metadata(f, "ae"), "1");
  compressor *c = comp_new(m, cc, lora_config_of(f), 0, &err);
  if (!c) die("compressor", err.msg);
  // Every trainable tensor from the inputs under its checkpoint name (the AE token only when used).
  int n = comp_params(c, NULL, 0);
  pt_tensor **params = malloc(sizeof *params * (size_t)n);
  comp_params(c, params, n);
  char name[128] = "grad.";  // name + 5: the checkpoint name
  for (int i = 0; i < n; i++)
    if (params[i] != c->ae || cc.ae_token) {
      if (comp_param_name(c, i, name + 5, sizeof name - 5)) die("names", "no name for a parameter");
      pt_copy_(params[i], load(f, name + 5, 1));
    }
  comp_batch b = {load(f, "text_ids", 1), load(f, "text_mask", 1), load(f, "dec_ids", 1), load(f, "dec_mask", 1),
                  load(f, "dec_targets", 1)};
  pt_tensor *loss = comp_loss(c, &b, NULL, &err);
  if (!loss) die("loss", err.msg);
  if (pt_backward(loss)) die("backward", pt_error());
  st_writer *w = st_writer_new();
  add(w, "loss", loss);
  for (int i = 0; i < n; i++)
    if (params[i] != c->ae || cc.ae_token) {
      comp_param_name(c, i, name + 5, sizeof name - 5);
      add(w, name, grad_or_zeros(params[i]));
    }
  free(params);
  if (st_writer_finish(w, out_path, &err)) die("write", err.msg);
  st_writer_free(w);
  comp_free(c);
  st_close(f);
  llama_free(m);
  return 0;
}

static int cmd_exported(const char *dir, const char *exp, const char *in_path, const char *out_path) {
  pith_err err;
  llama_model *m = hf_model_load(dir, PT_F32, PT_CPU, &err);
  if (!m) die("load", err.msg);
  compressor *c;
  if (export_load(exp, m, &c, &err)) die("export_load", err.msg);
  st_file *f = st_open(in_path, &err);
  if (!f) die("inputs", err.msg);
  pt_set_grad_enabled(0);
  comp_batch b = {load(f, "text_ids", 1), load(f, "text_mask", 1), load(f, "dec_ids", 1), load(f, "dec_mask", 1),
                  load(f, "dec_targets", 1)};
  comp_code code;
  if (comp_encode(c, b.text_ids, b.text_mask, NULL, &code, &err)) die("encode", err.msg);
  pt_tensor *logits = comp_decode(c, &code, b.dec_ids, b.dec_mask, &err);
  if (!logits) die("decode", err.msg);
  pt_tensor *loss = comp_loss(c, &b, NULL, &err);
  if (!loss) die("loss", err.msg);
  st_writer *w = st_writer_new();
  char name[64];
  if (c->cfg.method == COMP_500X) {
    pt_tensor **k, **v;  // the keys where the decoder reads them (the position policy's shift applied)
    if (comp_prefix_kv(c, &code, &k, &v, &err)) die("prefix", err.msg);
    for (int l = 0; l < code.n_layers; l++) {
      snprintf(name, sizeof name, "k.%d", l);
      add(w, name, k[l]);
      snprintf(name, sizeof name, "v.%d", l);
      add(w, name, v[l]);
    }
    free(k), free(v);
  } else {
    add(w, "memory", code.memory);
  }
  add(w, "logits", logits);
  add(w, "loss", loss);
  if (st_writer_finish(w, out_path, &err)) die("write", err.msg);
  st_writer_free(w);
  comp_code_free(&code);
  comp_free(c);
  st_close(f);
  llama_free(m);
  return 0;
}

static int cmd_make(const char *dir, uint64_t seed) {
  pith_err err;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  llama_config cfg;
  if (hf_config_load(path, &cfg, &err)) die("config", err.msg);
  llama_model *m = llama_new_random(&cfg, seed, PT_F32, PT_CPU, &err);
  if (!m) die("random model", err.msg);
  if (hf_model_save(m, dir, &err)) die("save", err.msg);
  llama_free(m);
  return 0;
}

static int cmd_forward(const char *dir, const char *in_path, const char *out_path) {
  pith_err err;
  llama_model *m = hf_model_load(dir, PT_F32, PT_CPU, &err);
  if (!m) die("load", err.msg);
  st_file *f = st_open(in_path, &err);
  if (!f) die("inputs", err.msg);
  int L = m->cfg.n_layers;
  llama_inputs in = {0};
  const char *use_embeds = st_metadata(f, "use_embeds");
  pt_tensor *embeds = NULL;
  if (use_embeds && !strcmp(use_embeds, "1")) {
    embeds = load(f, "embeds", 1);
    pt_set_requires_grad(embeds, 1);
    in.embeds = embeds;
  } else {
    in.ids = load(f, "ids", 1);
  }
  in.mask = load(f, "mask", 0);
  in.prefix_mask = load(f, "prefix_mask", 0);
  in.select = load(f, "select", 0);
  in.want_kv = in.want_hidden = in.select != NULL;
  pt_tensor **pk = NULL, **pv = NULL;
  if (st_find(f, "prefix_k.0")) {
    pk = calloc((size_t)L, sizeof *pk);
    pv = calloc((size_t)L, sizeof *pv);
    char name[64];
    for (int l = 0; l < L; l++) {
      snprintf(name, sizeof name, "prefix_k.%d", l);
      pk[l] = load(f, name, 1);
      snprintf(name, sizeof name, "prefix_v.%d", l);
      pv[l] = load(f, name, 1);
      pt_set_requires_grad(pk[l], 1);
      pt_set_requires_grad(pv[l], 1);
    }
    in.prefix_k = pk;
    in.prefix_v = pv;
  }
  lora_adapter *lora = NULL;
  if (st_metadata(f, "lora_rank")) {
    lora = lora_new(m, lora_config_of(f), 0, &err);
    if (!lora) die("lora", err.msg);
    load_lora(f, lora);
    in.lora = lora;
  }
  llama_outputs out;
  if (llama_forward(m, &in, &out, &err)) die("forward", err.msg);
  pt_tensor *loss = pt_sum(pt_mul(out.logits, load(f, "loss_w", 1)));
  if (pt_requires_grad(loss) && pt_backward(loss)) die("backward", pt_error());

  st_writer *w = st_writer_new();
  add(w, "logits", out.logits);
  add(w, "loss", loss);
  if (embeds) add(w, "grad.embeds", pt_grad(embeds));
  char name[128];
  for (int l = 0; l < L; l++) {
    if (pk) {
      snprintf(name, sizeof name, "grad.prefix_k.%d", l);
      add(w, name, pt_grad(pk[l]));
      snprintf(name, sizeof name, "grad.prefix_v.%d", l);
      add(w, name, pt_grad(pv[l]));
    }
    if (in.want_kv) {
      snprintf(name, sizeof name, "out.k.%d", l);
      add(w, name, out.k[l]);
      snprintf(name, sizeof name, "out.v.%d", l);
      add(w, name, out.v[l]);
    }
  }
  if (lora) add_lora_grads(w, lora);
  if (in.want_hidden) add(w, "out.hidden", out.hidden);
  if (st_writer_finish(w, out_path, &err)) die("write", err.msg);
  st_writer_free(w);
  llama_outputs_free(&out);
  lora_free(lora);
  free(pk);
  free(pv);
  st_close(f);
  llama_free(m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "make")) return cmd_make(argv[2], strtoull(argv[3], NULL, 10));
  if (argc == 5 && !strcmp(argv[1], "forward")) return cmd_forward(argv[2], argv[3], argv[4]);
  if (argc == 5 && !strcmp(argv[1], "compress")) return cmd_compress(argv[2], argv[3], argv[4]);
  if (argc == 6 && !strcmp(argv[1], "exported")) return cmd_exported(argv[2], argv[3], argv[4], argv[5]);
  fprintf(stderr, "usage: llama_tool make DIR SEED | llama_tool forward|compress DIR IN OUT | "
                  "llama_tool exported DIR EXPORT_DIR IN OUT\n");
  return 2;
}
