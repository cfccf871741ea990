// The plain binary GEMM that defines the result of every optimized variant.
#pragma once
#include <cstdint>

#include "bgemm/output_transform.h"

namespace onebit {

// acc[i, j] = k - 2 * popcount(a[i, :] XOR b[j, :]) over kw words: the dot product of row i of A
// and row j of B as {+1, -1} vectors of true length k (bit 1 = -1; the tail bits beyond k are 0 in
// both operands, so they cancel). a is [m, kw], b is [n, kw] uint32 (both "row = one vector").
// The accumulators then go through the output transform t (channels = n).
void bgemm_reference(const uint32_t* a, const uint32_t* b, int64_t m, int64_t n, int64_t kw,
                     int64_t k, const OutputTransform& t);

}  // namespace onebit
