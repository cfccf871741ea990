// Binary GEMM: dot products of packed {+1, -1} vectors, followed by an output transform.
#pragma once
#include <cstdint>

#include <vector>

#include "bgemm/output_transform.h"
#include "bgemm/panel.h"
#include "dispatch.h"

namespace onebit {

// For i < m, j < n: acc[i, j] = k - 2 * popcount(a[i, :] XOR b[j, :]) over kw uint32 words
// (a: [m, kw], b: [n, kw], row-major; bits past k zero in both), then t (channels = n) writes the
// output. Runs the variant of the active ISA on num_threads threads (<= 0: the default count).
void bgemm(const uint32_t* a, const uint32_t* b, int64_t m, int64_t n, int64_t kw, int64_t k,
           const OutputTransform& t, int num_threads);

// The rows of B (e.g. the weights of a dense layer) prepared once for the active ISA: a plain copy
// and, where that ISA has an optimized kernel, the panel it reads, so repeated products skip the
// packing (for 4096 x 4096 bits, a 4 MB panel per call).
class PreparedRows {
 public:
  PreparedRows(const uint32_t* b, int64_t n, int64_t k);  // b: [n, words_for(k)], tail bits 0
  Isa isa() const { return isa_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  int64_t kw() const { return kw_; }
  const uint32_t* words() const { return words_.data(); }
  const PopcountKernel* kernel() const { return kernel_; }  // nullptr for the reference ISA
  const uint8_t* panel() const { return panel_.get(0); }

 private:
  Isa isa_;
  int64_t n_, k_, kw_;
  std::vector<uint32_t> words_;
  const PopcountKernel* kernel_ = nullptr;
  AlignedBuffer panel_;
};

// bgemm with prepared rows of B (same results; the plain copy serves another active ISA).
void bgemm(const uint32_t* a, const PreparedRows& b, int64_t m, const OutputTransform& t,
           int num_threads);

}  // namespace onebit
