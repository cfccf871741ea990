// pack_bits / unpack_bits of every available ISA against a direct per-element definition, on odd
// lengths, inner strides, NaN, -0.0 and infinities.
#include <cmath>
#include <limits>

#include "test_util.h"

using namespace onebit;
using onebit_test::failures;

int main() {
  std::mt19937 rng(1234);
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 1e-38f, -1e-38f};
  for (Isa isa : onebit_test::available_isas()) {
    set_isa(isa);
    for (int trial = 0; trial < 200; ++trial) {
      const int64_t outer = 1 + rng() % 3, n = 1 + rng() % 300, inner = (trial % 3 == 0) ? 1 + rng() % 19 : 1;
      std::vector<float> x(static_cast<size_t>(outer * n * inner));
      std::normal_distribution<float> nd;
      for (auto& v : x) v = (rng() % 10 == 0) ? specials[rng() % 8] : nd(rng);
      const int64_t nw = words_for(n);
      std::vector<uint32_t> packed(static_cast<size_t>(outer * nw * inner), 0xdeadbeefu);
      pack_bits(x.data(), outer, n, inner, packed.data());
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t w = 0; w < nw; ++w)
          for (int64_t j = 0; j < inner; ++j) {
            uint32_t expect = 0;
            for (int64_t b = 0; b < 32 && w * 32 + b < n; ++b)
              if (x[(o * n + w * 32 + b) * inner + j] < 0.0f) expect |= uint32_t{1} << b;
            const uint32_t got = packed[(o * nw + w) * inner + j];
            CHECK(got == expect, "isa=%s n=%lld inner=%lld word %lld: %08x != %08x", isa_name(isa),
                  (long long)n, (long long)inner, (long long)w, got, expect);
          }
      std::vector<float> back(x.size(), 7.0f);
      unpack_bits(packed.data(), outer, n, inner, back.data());
      for (size_t i = 0; i < x.size(); ++i) {
        const float expect = x[i] < 0.0f ? -1.0f : 1.0f;
        CHECK(back[i] == expect, "isa=%s unpack index %zu", isa_name(isa), i);
      }
    }
  }
  reset_isa();
  return onebit_test::finish("test_bitpack");
}
