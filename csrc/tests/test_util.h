// Small helpers shared by the standalone C++ test drivers (no framework: each driver prints what
// failed and exits non-zero).
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bitpack/bitpack.h"
#include "dispatch.h"

namespace onebit_test {

inline int& failures() {
  static int n = 0;
  return n;
}

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                              \
      std::fprintf(stderr, "\n");                                     \
      ++onebit_test::failures();                                      \
    }                                                                 \
  } while (0)

// Random packed rows of n bits each (words_for(n) words per row), tail bits zero.
inline std::vector<uint32_t> random_packed(std::mt19937& rng, int64_t rows, int64_t n) {
  const int64_t nw = onebit::words_for(n);
  std::vector<uint32_t> v(static_cast<size_t>(rows * nw));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < nw; ++w) {
      uint32_t word = static_cast<uint32_t>(rng());
      const int64_t bits = n - 32 * w;
      if (bits < 32) word &= (uint32_t{1} << bits) - 1u;
      v[r * nw + w] = word;
    }
  return v;
}

// The ISAs this CPU can run, reference first.
inline std::vector<onebit::Isa> available_isas() {
  std::vector<onebit::Isa> out;
  for (onebit::Isa isa : {onebit::Isa::Reference, onebit::Isa::Avx2, onebit::Isa::Avx512, onebit::Isa::Neon})
    if (onebit::isa_available(isa)) out.push_back(isa);
  return out;
}

inline int finish(const char* name) {
  if (failures()) {
    std::fprintf(stderr, "%s: %d failure(s)\n", name, failures());
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}

}  // namespace onebit_test
