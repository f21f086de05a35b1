// sha256: SHA-256 (FIPS 180-4) of a buffer, a stream or a file, and its hex form. pith uses it to
// fingerprint what made a file (tokenizer, sources) and to assign records to splits from their id.
#ifndef PITH_SHA256_H
#define PITH_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE 65   // 64 lowercase hex digits and a NUL

typedef struct {
  uint32_t state[8];    // running hash value H0..H7
  uint64_t n_bytes;     // bytes hashed so far
  uint8_t block[64];    // (64) bytes waiting for a full block
  size_t n_block;       // how many of them are filled
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
// data: (len) bytes
void sha256_update(sha256_ctx *ctx, const void *data, size_t len);
// digest: (32) bytes out; ctx must be re-initialised before reuse.
void sha256_final(sha256_ctx *ctx, uint8_t digest[SHA256_DIGEST_SIZE]);

// One call: digest (32) of data (len).
void sha256_hash_buffer(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_SIZE]);
// digest (32) -> hex (65): lowercase, NUL-terminated.
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char hex[SHA256_HEX_SIZE]);
// Hex digest (65) of a file read in blocks (any size). -1 and err naming the file on failure.
int sha256_hash_file(const char *path, char hex[SHA256_HEX_SIZE], pith_err *err);

#endif
