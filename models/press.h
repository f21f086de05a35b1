// press: KV presses, the scorers that choose which prefill entries of the KV cache survive (kvpress's
// ScorerPress family, with kvpress 0.5.5's parameters and defaults), and AdaKV's per-head budgets.
//
// A press scores every context entry of a layer per KV head from what the layer's attention sees
// (llama_layer_view, handed by llama_forward's on_layer hook before the attention runs), then keeps
// the top max(1, int(L·(1 − ratio))) of each head (L: the row's context tokens, BOS included), or,
// adaptive, the top Hkv·that count over all of a layer's heads after each head's safeguard, so every
// KV head keeps its own count. The result goes into a kv_keep (models/kv_keep.h): context-relative
// positions; a 500x prefix in front of the context is attended to while scoring but never a
// candidate, and is never evicted.
//
// Batched: rows of different lengths (right padding, row_len[b] real context tokens) are each
// scored over their own tokens only, so a row gets what it would get alone. Ties are broken as
// torch.topk breaks them (the same libtorch call on the same shapes as kvpress).
//
// Question-agnostic vs question-aware is the caller's choice of what the context holds, as in
// kvpress: agnostic = compress the context alone, then read the question after it (kvpress's
// pipeline; the press never sees the question); aware = the question is part of the prefill that is
// compressed (it may then be evicted like any other entry, and SnapKV's window sits on it).
//
// The presses (kvpress name → spec name):
//   KnormPress              knorm               −‖k‖ (f32)
//   StreamingLLMPress       streaming_llm       n_sink first tokens + the most recent ones
//   SnapKVPress             snapkv              the last window_size queries' attention to earlier keys, mean
//                                               over the window, avg_pool1d(kernel_size, pad kernel//2),
//                                               mean over each KV group; the window itself always kept
//   ExpectedAttentionPress  expected_attention  softmax of the keys' expected logits under the pre-RoPE
//                                               query mean (and covariance) over positions ≥ n_sink,
//                                               rotated by the mean RoPE of the next n_future_positions
//                                               positions; × ‖v‖; n_sink first tokens kept
//   TOVAPress               tova                the last query's attention, averaged over all heads
//   ObservedAttentionPress  observed_attention  each key's attention summed over the queries that see it,
//                                               over their count (kvpress: eager attention only)
//   AdaKVPress(press)       adakv-NAME          per-head budgets: top alpha_safeguard·n_kept of each head,
//                                               then a global top-k over the layer's heads (any scorer here;
//                                               kvpress refuses it over observed_attention, whose eager
//                                               attention AdaKVPress does not run under)
//
// Cost: the presses work on what the view holds; the attention-based ones recompute the softmax
// probabilities they read (snapkv: window × keys, tova: one query, observed_attention: all L × L of
// every layer, the dearest, as kvpress's eager attention is).
//
// Spec grammar (press_parse):  [adakv-]NAME:RATIO[:KEY=VALUE[,KEY=VALUE...]]
//   knorm:0.5   snapkv:0.5:window_size=32,kernel_size=7   adakv-snapkv:0.25:alpha_safeguard=0.1
// Keys are kvpress's field names; window and kernel (snapkv) and alpha (adakv) are short forms.
// Booleans: true/false/1/0. A ratio of 0 keeps everything without scoring (as kvpress).
#ifndef PITH_PRESS_H
#define PITH_PRESS_H

#include <stddef.h>

#include "base.h"
#include "kv_keep.h"
#include "llama.h"

typedef enum {
  PRESS_KNORM,
  PRESS_STREAMING_LLM,
  PRESS_SNAPKV,
  PRESS_EXPECTED_ATTENTION,
  PRESS_TOVA,
  PRESS_OBSERVED_ATTENTION,
  PRESS_N_KINDS
} press_kind;

typedef struct {
  press_kind kind;
  double ratio;            // compression_ratio: the fraction removed, in [0, 1)
  int adaptive;            // AdaKVPress around the scorer: per-head budgets
  double alpha_safeguard;  // adaptive: each head keeps at least int(alpha · n_kept) (≥ 1); default 0.20
  int window_size;         // snapkv: 64 (the context must be longer)
  int kernel_size;         // snapkv: 5 (odd)
  int n_sink;              // streaming_llm, expected_attention: 4
  int n_future_positions;  // expected_attention: 512
  int use_covariance;      // expected_attention: 1
  int use_vnorm;           // expected_attention: 1
  double epsilon;          // expected_attention: 0
} press;

// The spec name of a kind ("snapkv"), or NULL when out of range.
const char *press_kind_name(press_kind k);
// kvpress's defaults for kind at ratio (not adaptive).
void press_defaults(press *p, press_kind kind, double ratio);
// Parse a spec (grammar above) into p; 0, or -1 with a one-line message naming the spec: unknown
// press (the known ones listed), ratio outside [0, 1), unknown parameter (the press's listed), bad value.
int press_parse(const char *spec, press *p, pith_err *err);
// The canonical spec of p with every parameter of its kind ("snapkv:0.5:window_size=64,kernel_size=5");
// the length snprintf would write.
int press_format(const press *p, char *buf, size_t len);
// kvpress's compute_n_kept: max(1, int(L·(1 − ratio))).
int64_t press_n_kept(int64_t L, double ratio);
// Whether p can score a context of L tokens (snapkv: L > window_size; streaming_llm and
// expected_attention: L > n_sink; L ≥ 1); 0, or -1 with the reason. A ratio of 0 accepts any L ≥ 1.
int press_check_len(const press *p, int64_t L, pith_err *err);

// Score one layer's context entries and fill keep's entries of layer v->layer for every row:
// row_len (B) the real context tokens of each row after the prefix (NULL: every row has all T).
// m gives the rotary tables (expected_attention); the view's tensors give the rest. 0, or -1 with err.
int press_select_layer(const press *p, const llama_model *m, const llama_layer_view *v, const int *row_len,
                       kv_keep *keep, pith_err *err);

// The on_layer hook that runs press_select_layer on every layer of a forward:
//   press_hook h = {&p, model, row_len, keep};
//   in.on_layer = press_on_layer; in.on_layer_ctx = &h;
typedef struct {
  const press *p;
  const llama_model *m;
  const int *row_len;  // (B) or NULL
  kv_keep *keep;       // n_layers × B × Hkv
} press_hook;
int press_on_layer(const llama_layer_view *v, void *ctx, pith_err *err);

// generate_pressed's select (models/generate.h, gen_select_fn) over a press:
//   press_selector s = {&p, model};
//   req.select = press_select; req.select_ctx = &s;
typedef struct {
  const press *p;
  const llama_model *m;
} press_selector;
int press_select(void *ctx, const llama_layer_view *v, const int *row_len, kv_keep *keep, pith_err *err);

#endif
