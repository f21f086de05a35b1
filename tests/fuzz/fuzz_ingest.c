// Source records (arXiv JSONL, text, SQuAD, MRQA, QA JSONL): the first byte picks the format and
// the options, the rest is the file. Any input is ingested or refused with FILE:LINE and a reason.
#include <string.h>

#include "fuzz.h"
#include "ingest.h"

static tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (!tok) tok = fuzz_tokenizer("PITH_FUZZ_INGEST_TOKENIZER");
  static const ingest_format formats[] = {INGEST_ARXIV, INGEST_TEXT, INGEST_SQUAD, INGEST_MRQA, INGEST_QA};
  uint8_t pick = data[0];
  const char *in = fuzz_file("input", data + 1, size - 1);
  char out[1100];
  snprintf(out, sizeof out, "%s.h5", in);
  ingest_config cfg = {.format = formats[pick % 5],
                       .text_mode = pick & 8 ? INGEST_TEXT_BLOCKS : INGEST_TEXT_LINES,
                       .tok = tok,
                       .out_path = out,
                       .threads = 1,
                       .skip_bad = (pick >> 4) & 1,
                       .add_bos = (pick >> 5) & 1,
                       .val_fraction = 0.25,
                       .test_fraction = 0.25,
                       .max_record_bytes = 1 << 16};
  const char *inputs[] = {in};
  ingest_report rep;
  pith_err err = {{0}};
  if (ingest_run(&cfg, inputs, 1, &rep, &err) == 0) remove(out);
  else if (!err.msg[0]) abort();
  return 0;
}
