// bgemm of every available ISA against an element-by-element dot product of +/-1 vectors, for
// random shapes and every output kind, one and several threads.
#include <cmath>

#include "bgemm/bgemm.h"
#include "test_util.h"

using namespace onebit;
using onebit_test::failures;

namespace {

int32_t dot_pm1(const uint32_t* a, const uint32_t* b, int64_t k) {
  int32_t s = 0;
  for (int64_t i = 0; i < k; ++i) {
    const int av = (a[i / 32] >> (i % 32)) & 1u ? -1 : 1;
    const int bv = (b[i / 32] >> (i % 32)) & 1u ? -1 : 1;
    s += av * bv;
  }
  return s;
}

}  // namespace

int main() {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 120; ++trial) {
    const int64_t m = 1 + rng() % 70, n = 1 + rng() % 90, k = 1 + rng() % 700, kw = words_for(k);
    const auto a = onebit_test::random_packed(rng, m, k);
    const auto b = onebit_test::random_packed(rng, n, k);
    std::vector<int32_t> expect(static_cast<size_t>(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) expect[i * n + j] = dot_pm1(&a[i * kw], &b[j * kw], k);
    std::vector<float> mult(n), bias(n), thr(n);
    std::vector<uint8_t> flip(n);
    for (int64_t j = 0; j < n; ++j) {
      mult[j] = 0.5f + (rng() % 100) / 50.0f;
      bias[j] = (static_cast<int>(rng() % 200) - 100) / 10.0f;
      thr[j] = static_cast<float>(static_cast<int>(rng() % (2 * k + 1)) - k);
      flip[j] = rng() % 2;
    }
    for (Isa isa : onebit_test::available_isas()) {
      set_isa(isa);
      for (int threads : {1, 3}) {
        OutputTransform t;
        t.channels = n;
        std::vector<int32_t> out(static_cast<size_t>(m * n), -7);
        t.out = out.data();
        bgemm(a.data(), b.data(), m, n, kw, k, t, threads);
        for (int64_t i = 0; i < m * n; ++i)
          CHECK(out[i] == expect[i], "isa=%s m=%lld n=%lld k=%lld idx %lld: %d != %d", isa_name(isa),
                (long long)m, (long long)n, (long long)k, (long long)i, out[i], expect[i]);
        // B prepared once: the same here, and from its plain copy under the reference ISA
        const PreparedRows prepared(b.data(), n, k);
        for (bool switch_isa : {false, true}) {
          if (switch_isa) set_isa(Isa::Reference);
          std::fill(out.begin(), out.end(), -7);
          bgemm(a.data(), prepared, m, t, threads);
          for (int64_t i = 0; i < m * n; ++i)
            CHECK(out[i] == expect[i], "isa=%s prepared (switched %d) idx %lld", isa_name(isa),
                  static_cast<int>(switch_isa), (long long)i);
          set_isa(isa);
        }
        std::vector<float> outf(static_cast<size_t>(m * n));
        t.kind = OutputKind::Float;
        t.out = outf.data();
        t.multiplier = mult.data();
        t.bias = bias.data();
        bgemm(a.data(), b.data(), m, n, kw, k, t, threads);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            const float e = static_cast<float>(expect[i * n + j]) * mult[j] + bias[j];
            CHECK(std::fabs(outf[i * n + j] - e) <= 1e-5f * (1.0f + std::fabs(e)), "isa=%s float", isa_name(isa));
          }
        const int64_t words = words_for(n);
        std::vector<uint32_t> outb(static_cast<size_t>(m * words), 0xffffffffu);
        t = OutputTransform{};
        t.kind = OutputKind::Bits;
        t.channels = n;
        t.thresholds = thr.data();
        t.flip = flip.data();
        t.out = outb.data();
        bgemm(a.data(), b.data(), m, n, kw, k, t, threads);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t wd = 0; wd < words; ++wd) {
            uint32_t e = 0;
            for (int64_t bt = 0; bt < 32 && wd * 32 + bt < n; ++bt) {
              const int64_t j = wd * 32 + bt;
              const float v = static_cast<float>(expect[i * n + j]);
              if (flip[j] ? v > thr[j] : v < thr[j]) e |= uint32_t{1} << bt;
            }
            CHECK(outb[i * words + wd] == e, "isa=%s bits row %lld word %lld", isa_name(isa), (long long)i,
                  (long long)wd);
          }
      }
    }
  }
  reset_isa();
  return onebit_test::finish("test_bgemm");
}
