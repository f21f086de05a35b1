// tb_events: TensorBoard event files in a run folder, so that `tensorboard --logdir runs/` shows a
// run's curves. A file events.out.tfevents.TIME.HOST is a TFRecord stream (per record: length as
// u64 LE, masked CRC-32C of the length, the data, masked CRC-32C of the data) of Event messages
// (tb_event.proto, TensorBoard's field numbers, encoded by protobuf-c); the first holds
// file_version "brain.Event:2", the others one scalar (Summary.Value simple_value) each.
//
// tb_metrics mirrors metrics.jsonl: every number of every line ({"step": N, "loss": ..., ...}) is
// written as a scalar of that name at step N (null and other non-numbers are skipped), so the two
// always hold the same history. Resume: a new events file (TensorBoard merges the files of a
// folder), and the older files lose their events after the resumed step, as metrics.jsonl loses its
// lines (TensorBoard would otherwise show a killed run's stale points beside the new ones).
#ifndef PITH_TB_EVENTS_H
#define PITH_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base.h"

#define TB_FILE_PREFIX "events.out.tfevents."
#define TB_FILE_VERSION "brain.Event:2"

// CRC-32C (Castagnoli, reflected, as iSCSI and TFRecord), and TFRecord's mask of it
// (rotate right by 15, add 0xa282ead8), which keeps a CRC of data holding CRCs well distributed.
uint32_t tb_crc32c(const void *data, size_t len);
uint32_t tb_crc32c_masked(const void *data, size_t len);

// One TFRecord of len bytes into f (path names the file in errors).
int tb_record_write(FILE *f, const char *path, const void *data, size_t len, pith_err *err);
// The next record of f: 1 with *data (malloc'd, the caller frees) and *len; 0 at the end of the
// file or at a record cut short there (what a killed writer leaves); -1 when a CRC does not match
// (the error names path and the record's offset).
int tb_record_read(FILE *f, const char *path, void **data, size_t *len, pith_err *err);

// A new events file in dir (which exists). Its name's time is now, or one second past the newest
// events file already in dir, so that TensorBoard, which reads a folder's files in name order, reads
// them in the order they were written.
typedef struct tb_writer tb_writer;
tb_writer *tb_writer_open(const char *dir, pith_err *err);
const char *tb_writer_path(const tb_writer *w);
int tb_writer_scalar(tb_writer *w, int64_t step, const char *tag, float value, pith_err *err);
int tb_writer_flush(tb_writer *w, pith_err *err);
int tb_writer_close(tb_writer *w, pith_err *err);  // flushes and frees; NULL is fine

// Every events file of dir keeps the events at steps <= step (the file_version record is step 0);
// a file that loses some is rewritten atomically. A record cut short at a file's end is dropped.
int tb_truncate_dir(const char *dir, int64_t step, pith_err *err);
// Removes every events file of dir (a new run in an old folder: they belong to the run that
// metrics.jsonl no longer holds).
int tb_remove_dir(const char *dir, pith_err *err);

// The mirror of run_dir/metrics.jsonl. resume_step < 0: a new run (old events files removed);
// otherwise a resumed run, after metrics.jsonl was cut back to resume_step: old events files are
// truncated to it, and the lines already in metrics.jsonl are mirrored again only when there was
// no events file (a run that had TensorBoard off so far).
typedef struct tb_metrics tb_metrics;
tb_metrics *tb_metrics_open(const char *run_dir, const char *metrics_path, int64_t resume_step, pith_err *err);
// Flushes metrics (the FILE the trainer writes metrics_path through), writes an event for each
// scalar of the lines added since the last sync, and flushes the events file.
int tb_metrics_sync(tb_metrics *m, FILE *metrics, pith_err *err);
// A last sync, then frees m; NULL is fine.
int tb_metrics_close(tb_metrics *m, FILE *metrics, pith_err *err);

#endif
