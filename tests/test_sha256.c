// sha256: the FIPS 180-4 / NIST example vectors, fed whole, in odd-sized pieces and from a file.
#include "check.h"
#include "sha256.h"

static void hex_of(const void *data, size_t len, char hex[SHA256_HEX_SIZE]) {
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_hash_buffer(data, len, d);
  sha256_to_hex(d, hex);
}

// Same digest when the input arrives in pieces of `step` bytes (crosses block boundaries).
static void hex_in_pieces(const char *data, size_t len, size_t step, char hex[SHA256_HEX_SIZE]) {
  sha256_ctx ctx;
  sha256_init(&ctx);
  for (size_t i = 0; i < len; i += step) sha256_update(&ctx, data + i, len - i < step ? len - i : step);
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_final(&ctx, d);
  sha256_to_hex(d, hex);
}

int main(void) {
  static const struct { const char *msg, *hex; } V[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
  };
  char hex[SHA256_HEX_SIZE];
  for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
    hex_of(V[i].msg, strlen(V[i].msg), hex);
    CHECK_MSG(!strcmp(hex, V[i].hex), "vector %zu: %s", i, hex);
    for (size_t step = 1; step <= 65; step += 7) {
      hex_in_pieces(V[i].msg, strlen(V[i].msg), step, hex);
      CHECK_MSG(!strcmp(hex, V[i].hex), "vector %zu step %zu: %s", i, step, hex);
    }
  }

  // A million 'a': in memory, in pieces, and from a file.
  const char *million = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  size_t n = 1000000;
  char *a = malloc(n);
  memset(a, 'a', n);
  hex_of(a, n, hex);
  CHECK(!strcmp(hex, million));
  hex_in_pieces(a, n, 4099, hex);
  CHECK(!strcmp(hex, million));

  pith_err err = {{0}};
  char path[] = "/tmp/pith_test_sha256_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(write(fd, a, n) == (ssize_t)n);
  close(fd);
  CHECK(sha256_hash_file(path, hex, &err) == 0);
  CHECK_MSG(!strcmp(hex, million), "file: %s", hex);
  unlink(path);
  free(a);

  // Padding edge cases: lengths 55, 56, 63, 64 agree between one call and byte-by-byte.
  char buf[130];
  memset(buf, 'x', sizeof buf);
  for (size_t len = 54; len <= 129; len++) {
    char one[SHA256_HEX_SIZE];
    hex_of(buf, len, one);
    hex_in_pieces(buf, len, 1, hex);
    CHECK_MSG(!strcmp(one, hex), "len %zu", len);
  }
  hex_of(buf, 64, hex);  // 64 'x' (digest from Python's hashlib)
  CHECK(!strcmp(hex, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"));
  hex_of(buf, 56, hex);  // 56 'x': the length needs a second padding block
  CHECK(!strcmp(hex, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"));

  // A missing file is an error that names it.
  CHECK(sha256_hash_file("/nonexistent/pith.bin", hex, &err) == -1);
  CHECK_CONTAINS(err.msg, "/nonexistent/pith.bin");
  return check_done("test_sha256");
}
