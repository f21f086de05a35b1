// kv_inject: write the compress tokens' per-layer K/V into the front of a decoder's KV cache.
//
// 500xCompressor hands the frozen decoder the K and V of the k compress positions at every layer
// as past key/values. Their keys carry the rotary angle of the positions where the encoder saw
// them; placing them at other positions (the "consistent" position policy) means rotating each
// key by the shift. One pass does both: slot j of the cache gets prefix entry j, its key rotated
// by `shift` positions (RoPE, rotate-half pairing (i, i + head_dim/2) as in Hugging Face LLaMA).
// Rotations compose, so rotating a key made at position p by `shift` gives the key at p + shift.
//
// The CPU reference is plain C; the CUDA launcher exists when the project is built with nvcc.
#ifndef PITH_KV_INJECT_H
#define PITH_KV_INJECT_H

#include <stdint.h>

typedef struct {
  int layers, batch, kv_heads;  // L, B, Hkv
  int prefix_len;               // P: compress positions
  int cache_len;                // T: cache slots per sequence, >= P
  int head_dim;                 // D, even
  double rope_theta;            // base of the rotary frequencies (10000, 500000 for LLaMA-3)
  int shift;                    // positions to move the keys by; 0 copies them unchanged
} kv_inject_shape;

// prefix_k, prefix_v (L, B, Hkv, P, D); cache_k, cache_v (L, B, Hkv, T, D): slots [0, P) written.
// Returns 0, or -1 when the shape is invalid (nothing written).
int kv_inject_cpu(const float *prefix_k, const float *prefix_v, float *cache_k, float *cache_v,
                  kv_inject_shape s);

// The same on the GPU: all four pointers are device pointers; stream is a cudaStream_t (NULL for
// the default stream). Returns 0, or -1 with a message in err (the CUDA error string).
int kv_inject_cuda(const float *prefix_k, const float *prefix_v, float *cache_k, float *cache_v,
                   kv_inject_shape s, void *stream, char *err, int err_len);

// 1 when the shape is usable: positive sizes, even head_dim, prefix_len <= cache_len.
int kv_inject_shape_ok(kv_inject_shape s);

#endif
