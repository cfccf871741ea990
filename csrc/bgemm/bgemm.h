// Binary GEMM: dot products of packed {+1, -1} vectors, followed by an output transform.
#pragma once
#include <cstdint>

#include "bgemm/output_transform.h"

namespace onebit {

// For i < m, j < n: acc[i, j] = k - 2 * popcount(a[i, :] XOR b[j, :]) over kw uint32 words
// (a: [m, kw], b: [n, kw], row-major; bits past k zero in both), then t (channels = n) writes the
// output. Runs the variant of the active ISA on num_threads threads (<= 0: the default count).
void bgemm(const uint32_t* a, const uint32_t* b, int64_t m, int64_t n, int64_t kw, int64_t k,
           const OutputTransform& t, int num_threads);

}  // namespace onebit
