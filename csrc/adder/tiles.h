// Inner kernels of the optimized AdderNet path (train_f32_avx2.cpp, infer_int8_avx2.cpp). They
// work on a chunk the drivers (train_f32.cpp, infer_int8.cpp) have packed: float columns X[k, q]
// (k = (c*KH + i)*KW + j, q = output position in the chunk, row stride ldx % 8 == 0, 32-byte
// aligned, padding columns finite), int8 rows in offset binary (byte ^ 0x80).
#pragma once
#include <cstdint>

#include "dispatch.h"

namespace onebit::adder::avx2 {

// Y[t*ldy + q] = -sum_k |W[t*K + k] - X[k*ldx + q]|,  t < M, q < ncols.
void fwd_chunk(const float* W, int64_t M, int64_t K, const float* X, int64_t ldx, int64_t ncols,
               float* Y, int64_t ldy);

// D[r*ldd + q] = sum_t clip(W[t*ldw + r] - X[r*ldx + q], -1, 1) * G[t*ldg + q],
// r < nrows, q < roundup(ncols, 8) (ldd, ldg multiples of 8, 32-byte aligned).
void dx_chunk(const float* W, int64_t ldw, int64_t M, const float* X, int64_t ldx, const float* G,
              int64_t ldg, int64_t nrows, int64_t ncols, float* D, int64_t ldd);

// XT[q*ldxt + r] = X[r*ldx + q] for r < roundup(nrows, 8), q < roundup(ncols, 8) (whole 8x8
// blocks: X must hold roundup(nrows, 8) rows and XT roundup(ncols, 8) rows).
void transpose_cols(const float* X, int64_t ldx, int64_t nrows, int64_t ncols, float* XT,
                    int64_t ldxt);

// DW[t*lddw + k] += sum_q G[t*ldg + q] * XT[q*ldxt + k],  t < M, k < nk, q < ncols
// (XT: the packed columns transposed, ldxt % 8 == 0, 32-byte aligned).
void dw_chunk(const float* G, int64_t ldg, int64_t M, const float* XT, int64_t ldxt, int64_t nk,
              int64_t ncols, float* DW, int64_t lddw);

// Y[p*ldy + t] = fma(-sad(p, t), mult[t], bias[t]) with sad(p, t) = sum_b |Xc[p*kp + b] - Wc[t*kp + b]|
// over kp bytes (kp % 32 == 0), p < np, t < M.
void sad_chunk(const uint8_t* Xc, int64_t np, const uint8_t* Wc, int64_t M, int64_t kp,
               const float* mult, const float* bias, float* Y, int64_t ldy);

}  // namespace onebit::adder::avx2

namespace onebit::adder::avx512 {

// The AVX-512 SAD tiles (infer_int8_avx512.cpp) read the filters in groups of eight, per 8-byte
// word q a 64-byte block of the eight filters' words q. pack_filters writes that layout (64-byte
// aligned Wb of filters_padded(M) * kp bytes) from int8 filters w [M, K], in offset binary, the
// bytes past K and the padding filters zero.
int64_t filters_padded(int64_t M);
void pack_filters(const int8_t* w, int64_t M, int64_t K, int64_t kp, uint8_t* Wb);
// As avx2::sad_chunk, with Wb from pack_filters.
void sad_chunk(const uint8_t* Xc, int64_t np, const uint8_t* Wb, int64_t M, int64_t kp,
               const float* mult, const float* bias, float* Y, int64_t ldy);

}  // namespace onebit::adder::avx512
