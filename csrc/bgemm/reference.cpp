#include "bgemm/reference.h"

#include <cstddef>
#include <vector>

#include "bgemm/popcount.h"

namespace onebit {

void bgemm_reference(const uint32_t* a, const uint32_t* b, int64_t m, int64_t n, int64_t kw,
                     int64_t k, const OutputTransform& t) {
  std::vector<int32_t> row(static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
    const uint32_t* ai = a + i * kw;
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t* bj = b + j * kw;
      int64_t pop = 0;
      for (int64_t w = 0; w < kw; ++w) pop += popcount32(ai[w] ^ bj[w]);
      row[j] = static_cast<int32_t>(k - 2 * pop);
    }
    apply_output_transform(t, row.data(), n, i, 1, 0, n);
  }
}

}  // namespace onebit
