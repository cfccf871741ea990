// Overflow-checked size arithmetic for the nanobind bindings.
//
// The bindings compare the sizes of the arrays they receive with sizes computed from integer
// arguments; a product that wraps around int64 could match a small array and let a kernel read or
// write far past it. Every such product goes through checked_product, and every argument through
// checked_dim, with these limits (std::invalid_argument, i.e. ValueError, beyond them):
//   * a geometry value (dimension, kernel size, stride, padding, dilation) lies in
//     [minimum, kMaxDim], kMaxDim = 2^31 - 1;
//   * a length or count of elements (an array, a view, the padded input a kernel reads, its output)
//     is at most kMaxElements = 2^46 (more than any machine holds as float32), so that the kernels'
//     own int64 index and byte arithmetic (such counts times small factors) cannot overflow either.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace onebit::bindings {

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxElements = int64_t{1} << 46;

// v if minimum <= v <= maximum, else std::invalid_argument naming `name` and the range.
inline int64_t checked_dim(int64_t v, const char* name, int64_t minimum = 1,
                           int64_t maximum = kMaxDim) {
  if (v < minimum || v > maximum)
    throw std::invalid_argument(std::string(name) + " must be in [" + std::to_string(minimum) +
                                ", " + std::to_string(maximum) + "], got " + std::to_string(v));
  return v;
}

// The product of non-negative factors, or std::invalid_argument naming `what` when it exceeds
// kMaxElements (checked after every factor, so no intermediate product can wrap around).
inline int64_t checked_product(std::initializer_list<int64_t> factors, const char* what) {
  int64_t p = 1;
  for (int64_t f : factors) {
    if (f < 0) throw std::invalid_argument(std::string(what) + ": negative size");
    if (__builtin_mul_overflow(p, f, &p) || p > kMaxElements)
      throw std::invalid_argument(std::string(what) + " would exceed 2^46 elements");
  }
  return p;
}

// Sum of non-negative terms (each <= kMaxElements), checked the same way.
inline int64_t checked_sum(std::initializer_list<int64_t> terms, const char* what) {
  int64_t s = 0;
  for (int64_t t : terms) {
    if (t < 0) throw std::invalid_argument(std::string(what) + ": negative size");
    if (__builtin_add_overflow(s, t, &s) || s > kMaxElements)
      throw std::invalid_argument(std::string(what) + " would exceed 2^46");
  }
  return s;
}

}  // namespace onebit::bindings
