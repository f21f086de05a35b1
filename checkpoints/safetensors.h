// safetensors: read and write the safetensors format that Hugging Face checkpoints, PEFT adapters
// and pith's own exports use, with no Python and no copies on the read side.
//
// A file is: an 8-byte little-endian u64 N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}
// then the data buffer; offsets are relative to the buffer start.
//
// The reader maps the file read-only and validates the whole header before handing out a pointer:
// a tensor you get from st_find() points at exactly the bytes its dtype and shape say it has.
// The set view opens a Hugging Face model folder (model.safetensors, or shards listed by
// model.safetensors.index.json) and finds a tensor in whichever shard holds it.
// The writer streams tensors to a temp file beside the target, fsyncs and renames it, so a reader
// sees the old file or the new one, never half of one; its header is ordered like the Python
// `safetensors` library's (dtype alignment, largest first, then name) and padded to 8 bytes so
// every tensor's data is aligned to its dtype.
//
// Errors are one line naming the file and the problem, in a pith_err (data/base.h). An open file
// or set never changes, so threads may share it; a writer belongs to one thread at a time.
// Data is little-endian; pith builds only on little-endian machines.
#ifndef PITH_SAFETENSORS_H
#define PITH_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define ST_MAX_DIMS 8                 // most dimensions a tensor may have here
#define ST_MAX_HEADER (100u << 20)    // header bytes the reader accepts (100 MiB, as the reference)

// ---- dtypes -------------------------------------------------------------------------------------

typedef enum {
  ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
  ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype d);               // "F32", ...; "?" when out of range
size_t st_dtype_size(st_dtype d);                    // bytes per element; 0 when out of range
int st_dtype_from_name(const char *name, st_dtype *out);  // 0, or -1 for an unknown name

// ---- bf16 / f16 <-> f32 -------------------------------------------------------------------------
// f32 -> bf16 and f32 -> f16 round to nearest, ties to even (as torch does); NaN stays NaN (quiet),
// overflow gives inf, and f16 produces subnormals where the value needs them.

float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);

void st_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);  // src (n), dst (n)
void st_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);  // src (n), dst (n)
void st_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);   // src (n), dst (n)
void st_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);   // src (n), dst (n)

// ---- tensors ------------------------------------------------------------------------------------

typedef struct {
  const char *name;             // key in the header; owned by the file it came from
  st_dtype dtype;               // element type
  int ndim;                     // number of dimensions; 0 for a scalar
  int64_t shape[ST_MAX_DIMS];   // (ndim) sizes, outermost first; entries past ndim are 0
  const void *data;             // (nbytes) the elements, row-major, little-endian, read-only.
                                // Aligned to the dtype when the header is padded to 8 bytes (files
                                // from the reference library and from st_writer are); otherwise
                                // read it with memcpy or st_read_f32.
  size_t nbytes;                // numel * st_dtype_size(dtype)
} st_tensor;

int64_t st_numel(const st_tensor *t);  // product of the shape; 1 for a scalar

// Convert a floating tensor (F64, F32, F16, BF16) into f32. `out` has room for `n` floats and n must
// equal st_numel(t). Works on unaligned data. -1 with a message for another dtype or n.
int st_read_f32(const st_tensor *t, float *out, size_t n, pith_err *err);  // out (n)

// ---- one file -----------------------------------------------------------------------------------

typedef struct st_file st_file;

st_file *st_open(const char *path, pith_err *err);  // NULL and a message if anything is off
void st_close(st_file *f);                           // unmaps; NULL is fine
const char *st_path(const st_file *f);               // the path given to st_open

int st_count(const st_file *f);                          // number of tensors
const st_tensor *st_at(const st_file *f, int i);         // i-th in file order (by data offset)
const st_tensor *st_find(const st_file *f, const char *name);  // NULL when absent

int st_metadata_count(const st_file *f);                 // entries of "__metadata__"
const char *st_metadata_at(const st_file *f, int i, const char **key);  // value; *key its key
const char *st_metadata(const st_file *f, const char *key);  // value, or NULL when absent

// ---- a model folder: one file or shards ---------------------------------------------------------
// st_set_open(dir) opens dir/model.safetensors.index.json when present (every shard it names is
// opened and every tensor it lists must be in the shard it says), else dir/model.safetensors.
// `dir` may also be the path of one .safetensors file. A sharded set holds exactly the tensors the
// index lists (extra tensors in a shard are not reachable through the set), ordered by shard file
// name, then file order.

typedef struct st_set st_set;

st_set *st_set_open(const char *dir, pith_err *err);
void st_set_close(st_set *s);

int st_set_count(const st_set *s);
const st_tensor *st_set_at(const st_set *s, int i);
const st_tensor *st_set_find(const st_set *s, const char *name);  // NULL when absent
// Metadata: the index's "metadata" (numbers given in decimal) for a sharded set, else the file's.
const char *st_set_metadata(const st_set *s, const char *key);
int st_set_nfiles(const st_set *s);                   // 1, or the number of shards
const st_file *st_set_file(const st_set *s, int i);   // i-th file, sorted by file name

// ---- writer -------------------------------------------------------------------------------------

typedef struct st_writer st_writer;

st_writer *st_writer_new(void);  // NULL only when out of memory
void st_writer_free(st_writer *w);

// Add a tensor whose `data` holds prod(shape) * st_dtype_size(dtype) bytes (may be NULL when that
// is 0). st_writer_add copies the bytes now; st_writer_add_ref keeps the pointer, which must stay
// valid until st_writer_finish returns. Names must be unique, non-empty, and not "__metadata__".
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data, pith_err *err);
int st_writer_add_ref(st_writer *w, const char *name, st_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, pith_err *err);
// Set one "__metadata__" entry (a later value for the same key replaces the earlier one).
int st_writer_set_metadata(st_writer *w, const char *key, const char *value, pith_err *err);
// Write everything to `path` atomically (temp file beside it, fsync, rename). The writer stays
// usable: finishing twice writes the same file twice.
int st_writer_finish(st_writer *w, const char *path, pith_err *err);

#endif
