// eval_system: the registry of the systems `pith eval` knows, and selecting them by name. A new
// system is a file defining one eval_system and a line in eval_systems below.
#include "eval_system.h"

#include <stdlib.h>
#include <string.h>

// Output order: predictions.jsonl, metrics.json and the table list the systems in this order.
const eval_system *const eval_systems[] = {
  &eval_sys_compressed, &eval_sys_full, &eval_sys_none, &eval_sys_truncated, &eval_sys_no_layer0, &eval_sys_hard,
  &eval_sys_chain, &eval_sys_press,
};
const int eval_n_systems = (int)(sizeof eval_systems / sizeof eval_systems[0]);
_Static_assert(sizeof eval_systems / sizeof eval_systems[0] <= EVAL_MAX_SYSTEMS, "raise EVAL_MAX_SYSTEMS");

void eval_input_free(eval_input *in) {
  if (!in) return;
  free(in->prompt);
  free(in->prefix_k);
  free(in->prefix_v);
  if (in->priv && in->priv_free) in->priv_free(in->priv);
  free(in->kept_text);
  free(in->press_context);
  *in = (eval_input){0};
}

const eval_system *eval_system_find(const char *name) {
  for (int i = 0; i < eval_n_systems; i++)
    if (!strcmp(eval_systems[i]->name, name)) return eval_systems[i];
  return NULL;
}

int eval_systems_select(const char *list, int with_compressed, int *on, pith_err *err) {
  memset(on, 0, sizeof(int) * EVAL_MAX_SYSTEMS);
  for (int i = 0; i < eval_n_systems; i++)
    if (eval_systems[i] == &eval_sys_compressed) on[i] = with_compressed;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ') t++;
    int found = 0;
    for (int i = 0; i < eval_n_systems; i++)
      if (eval_systems[i]->baseline && !strcmp(t, eval_systems[i]->name)) on[i] = found = 1;
    if (found) continue;
    char names[256] = "";
    for (int i = 0; i < eval_n_systems; i++)
      if (eval_systems[i]->baseline)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", *names ? ", " : "",
                 eval_systems[i]->name);
    return pith_fail(err, "unknown baseline '%s' (%s)", t, names);
  }
  return 0;
}
