// eval_sys_press: KV presses (models/press.h) as `pith eval` systems, an instance per --press spec.
//
// The base model reads [bos] + the context as the full baseline does, but that prefill goes
// through generate_pressed (models/generate.h): the press chooses per layer and KV head which of
// its entries stay, only those are cached, and then the decoder prompt is read at the positions
// after the uncompressed context, as in the full baseline's prompt:
//   question-agnostic (default; kvpress's pipeline): the context is pressed before the question is
//          seen; the decoder prompt ("Question: {q} Answer: "; regen: [bos], as after a compressed
//          prefix) follows the pressed cache. Named "snapkv@0.5", "adakv-snapkv@0.25",
//          "snapkv@0.5:window_size=16" when parameters are given.
//   question-aware (":aware" after the spec, qa only; named "snapkv@0.5+q"): [bos] + context +
//          the decoder prompt are prefilled and pressed together (the question may be evicted
//          too, and snapkv's window sits on it); an empty question follows, so the first token
//          comes from the prefill's last position.
// The engine (eval.c) sees in->press and calls generate_pressed instead of generate(); the KV
// bytes of the row are its kept entries' K and V (eval_input.kv_bytes).
//
// A context too short for the press (snapkv: window_size ≥ its tokens) is a usage error that names
// the example and the parameter to lower, never a silent skip.
#include <stdlib.h>
#include <string.h>

#include "eval.h"

typedef struct {
  eval_press_spec spec;
} press_state;

// The text of spec with a trailing ":aware" removed into aware.
static int strip_aware(const char *spec, char *buf, size_t len, int *aware, pith_err *err) {
  if (strlen(spec) >= len) return pith_fail(err, "press '%.40s...': spec too long", spec);
  snprintf(buf, len, "%s", spec);
  size_t n = strlen(buf);
  *aware = n > 6 && !strcmp(buf + n - 6, ":aware");
  if (*aware) buf[n - 6] = 0;
  return 0;
}

int eval_press_parse(const char *spec, eval_press_spec *out, pith_err *err) {
  char buf[512];
  *out = (eval_press_spec){0};
  if (strip_aware(spec, buf, sizeof buf, &out->aware, err)) return -1;
  if (press_parse(buf, &out->p, err)) return -1;
  // The name: the press and its ratio as given, then the parameters as given (so two specs that
  // differ only in them get two rows), then "+q" for question-aware.
  const char *ratio = strchr(buf, ':') + 1, *params = strchr(ratio, ':');
  int n_ratio = params ? (int)(params - ratio) : (int)strlen(ratio);
  int len = snprintf(out->name, sizeof out->name, "%s%s@%.*s%s%s", out->p.adaptive ? "adakv-" : "",
                     press_kind_name(out->p.kind), n_ratio, ratio, params ? params : "", out->aware ? "+q" : "");
  if (len >= (int)sizeof out->name) return pith_fail(err, "press '%s': spec too long for a system name", spec);
  return 0;
}

// Whether s (up to the next comma) starts a spec: NAME:..., a ':' before any '='.
static int starts_spec(const char *s) {
  for (; *s && *s != ','; s++) {
    if (*s == ':') return 1;
    if (*s == '=') return 0;
  }
  return 0;
}

int eval_press_split(char *list, char **specs, int max, pith_err *err) {
  int n = 0;
  char *p = list;
  while (*p == ' ') p++;
  if (!*p) return pith_fail(err, "--press: no spec (NAME:RATIO, e.g. snapkv:0.5)");
  specs[n++] = p;
  for (; *p; p++) {
    if (*p != ',') continue;
    char *next = p + 1;
    while (*next == ' ') next++;
    if (!starts_spec(next)) continue;  // a parameter of the current spec
    *p = 0;
    if (n == max) return pith_fail(err, "--press: more than %d systems", max);
    specs[n++] = next;
    p = next - 1;
  }
  return n;
}

int eval_press_parse_list(const char *list, pith_err *err) {
  char buf[1024];
  if (strlen(list) >= sizeof buf) return pith_fail(err, "--press: the list is too long");
  snprintf(buf, sizeof buf, "%s", list);
  char *specs[EVAL_MAX_INSTANCES];
  int n = eval_press_split(buf, specs, EVAL_MAX_INSTANCES, err);
  eval_press_spec sp[EVAL_MAX_INSTANCES];
  for (int i = 0; i < n; i++) {
    if (eval_press_parse(specs[i], &sp[i], err)) return -1;
    for (int j = 0; j < i; j++)
      if (!strcmp(sp[i].name, sp[j].name)) return pith_fail(err, "%s twice", sp[i].name);
  }
  return n;
}

static int init(const eval_env *env, const eval_instance *self, void **state, pith_err *err) {
  press_state *s = calloc(1, sizeof *s);
  if (!s) return pith_fail(err, "out of memory");
  *state = s;
  if (eval_press_parse(self->arg, &s->spec, err)) return -1;
  if (s->spec.aware && env->task != EVAL_QA) return pith_fail(err, "question-aware (:aware) is for qa");
  return 0;
}

// The parameter that makes the press need a longer context, for the error's advice.
static const char *length_param(const press *p) { return p->kind == PRESS_SNAPKV ? "window_size" : "n_sink"; }

int eval_press_check_len(const eval_press_spec *sp, int64_t index, const char *id, int n, pith_err *err) {
  pith_err why = {{0}};
  if (!press_check_len(&sp->p, n, &why)) return 0;
  const char *key = length_param(&sp->p);
  char spec[160];
  snprintf(spec, sizeof spec, "%s%s:%g", sp->p.adaptive ? "adakv-" : "", press_kind_name(sp->p.kind), sp->p.ratio);
  pith_fail(err, "record %lld%s%s: %s; the press reads %d tokens here (bos + context%s): give a smaller %s, e.g. "
                 "--press %s:%s=%d", (long long)index, id && *id ? " id " : "", id ? id : "", why.msg, n,
            sp->aware ? " + question" : "", key, spec, key, n > 2 ? n / 2 : 1);
  return EVAL_USAGE;
}

static int build(void *state, const eval_env *env, const eval_example *ex, eval_input *in, pith_err *err) {
  const press_state *s = state;
  const eval_press_spec *sp = &s->spec;
  // [bos] + the context, as the full baseline reads it; aware: the decoder prompt too.
  int32_t *ids;
  int n;
  if (eval_text_prompt(env, ex, ex->n_context, &ids, &n, err)) return -1;
  if (env->task == EVAL_QA) n -= ex->n_decoder_prompt;  // the full baseline's prompt ends with it
  if (sp->aware) n += ex->n_decoder_prompt;
  int rc = eval_press_check_len(sp, ex->index, ex->id, n, err);
  if (rc) {
    free(ids);
    return rc;
  }
  in->press = &sp->p;
  in->press_context = ids, in->n_press_context = n;
  in->n_read = ex->n_context;
  // The decoder prompt after the pressed cache; aware: nothing (it was prefilled).
  int nq = sp->aware ? 0 : ex->n_decoder_prompt;
  in->prompt = malloc(sizeof(int32_t) * (size_t)(nq ? nq : 1));
  if (!in->prompt) return pith_fail(err, "out of memory");
  if (nq) memcpy(in->prompt, ex->decoder_prompt, sizeof(int32_t) * (size_t)nq);
  in->n_prompt = nq;
  return 0;
}

const eval_system eval_sys_press = {.name = "press", .init = init, .build = build, .free = free};
