// metrics_tool: pith's metrics over JSON lines, for tests/reference/metrics_parity.py.
// Each stdin line is {"pred": str, "golds": [str, ...]} (QA: SQuAD and raw EM/F1) or
// {"pred": str, "ref": str} (ROUGE-1/2/L F, sentence BLEU, exact match; the pair also goes into
// a corpus BLEU). One JSON object is printed per line, then a last one with the dataset scores:
// {"squad_em": 100*mean, "squad_f1": 100*mean, "corpus_bleu": score}.
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  long lineno = 0;
  squad_acc sq;
  bleu_acc bl;
  squad_acc_init(&sq);
  bleu_acc_init(&bl);
  while (getline(&line, &cap, stdin) > 0) {
    lineno++;
    cJSON *j = cJSON_Parse(line);
    const cJSON *pred = j ? cJSON_GetObjectItemCaseSensitive(j, "pred") : NULL;
    const cJSON *golds = j ? cJSON_GetObjectItemCaseSensitive(j, "golds") : NULL;
    const cJSON *ref = j ? cJSON_GetObjectItemCaseSensitive(j, "ref") : NULL;
    if (!cJSON_IsString(pred) || !(cJSON_IsArray(golds) || cJSON_IsString(ref))) {
      fprintf(stderr, "metrics_tool: line %ld: want {\"pred\": str, \"golds\": [str]} or "
                      "{\"pred\": str, \"ref\": str}\n", lineno);
      return 2;
    }
    if (cJSON_IsArray(golds)) {
      int n = cJSON_GetArraySize(golds);
      const char **g = malloc((size_t)(n ? n : 1) * sizeof *g);
      if (!g) return 3;
      for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(golds, i);
        if (!cJSON_IsString(x)) {
          fprintf(stderr, "metrics_tool: line %ld: golds must be strings\n", lineno);
          return 2;
        }
        g[i] = x->valuestring;
      }
      const char *p = pred->valuestring;
      if (squad_acc_add(&sq, p, g, n)) return 3;
      printf("{\"squad_em\": %.17g, \"squad_f1\": %.17g, \"raw_em\": %.17g, \"raw_f1\": %.17g}\n",
             metrics_squad_em(p, g, n), metrics_squad_f1(p, g, n), metrics_raw_em(p, g, n),
             metrics_raw_f1(p, g, n));
      free(g);
    } else {
      double r1, r2, rl;
      const char *p = pred->valuestring, *r = ref->valuestring;
      if (metrics_rouge(p, r, &r1, &r2, &rl) || bleu_acc_add(&bl, p, r)) return 3;
      printf("{\"rouge1\": %.17g, \"rouge2\": %.17g, \"rougeL\": %.17g, \"sentence_bleu\": %.17g, "
             "\"exact\": %d}\n",
             r1, r2, rl, metrics_sentence_bleu(p, r), metrics_exact_match(p, r));
    }
    cJSON_Delete(j);
  }
  free(line);
  printf("{\"squad_em\": %.17g, \"squad_f1\": %.17g, \"corpus_bleu\": %.17g}\n", squad_acc_em(&sq),
         squad_acc_f1(&sq), bleu_acc_score(&bl));
  return 0;
}
