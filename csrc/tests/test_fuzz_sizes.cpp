// Fuzz driver for the size checks of the bindings and the kernels behind them (run under
// AddressSanitizer + UBSan by `make asan`).
//
// 1. bindings/checked.h: random edge values (0, 1, word boundaries, 2^31, 2^32, 2^62, INT64_MAX,
//    negatives) for checked_dim / checked_product / checked_sum: an accepted product equals the
//    exact (128-bit) one and is <= kMaxElements; everything else throws std::invalid_argument,
//    never a signed overflow (UBSan would stop the run).
// 2. Random geometries with edge strides, paddings and kernel sizes: whatever the bindings'
//    checks and the kernels' own validation accept runs on buffers of exactly the sizes those
//    checks computed, on every ISA this CPU has, so any read or write past them is reported by
//    AddressSanitizer.
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>

#include "adder/adder.h"
#include "bconv2d/bconv2d.h"
#include "bconv2d/params.h"
#include "bconv2d/prepared.h"
#include "bgemm/bgemm.h"
#include "bindings/checked.h"
#include "bitpack/bitpack.h"
#include "dispatch.h"
#include "floatops/floatops.h"
#include "test_util.h"

using namespace onebit;
using onebit::bindings::checked_dim;
using onebit::bindings::checked_product;
using onebit::bindings::checked_sum;
using onebit::bindings::kMaxDim;
using onebit::bindings::kMaxElements;

namespace {

const int64_t kEdges[] = {0,  1,  2,  3,  31, 32, 33, 63, 64, 65, kMaxDim, kMaxDim + 1,
                          int64_t{1} << 32, int64_t{1} << 37, kMaxElements, kMaxElements + 1,
                          int64_t{1} << 62, INT64_MAX, -1, INT64_MIN};

int64_t edge(std::mt19937& rng) { return kEdges[rng() % (sizeof(kEdges) / sizeof(kEdges[0]))]; }

void fuzz_checked(std::mt19937& rng) {
  for (int trial = 0; trial < 20000; ++trial) {
    const int64_t a = edge(rng), b = edge(rng), c = edge(rng);
    // the exact product, step by step as checked_product goes (128 bits hold two factors)
    bool valid = a >= 0 && b >= 0 && c >= 0 && a <= kMaxElements;
    __int128 exact = a;
    if (valid) valid = (exact *= b) <= kMaxElements;
    if (valid) valid = (exact *= c) <= kMaxElements;
    bool threw = false;
    int64_t got = 0;
    try {
      got = checked_product({a, b, c}, "fuzz");
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw == !valid, "checked_product(%lld, %lld, %lld)", (long long)a, (long long)b,
          (long long)c);
    if (!threw) CHECK(got == static_cast<int64_t>(exact), "wrong product");
    threw = false;
    try {
      got = checked_sum({a, b}, "fuzz");
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    const __int128 sum = static_cast<__int128>(a) + b;
    CHECK(threw == !(a >= 0 && b >= 0 && a <= kMaxElements && sum <= kMaxElements),
          "checked_sum(%lld, %lld)", (long long)a, (long long)b);
    threw = false;
    try {
      checked_dim(a, "fuzz", 0);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw == !(a >= 0 && a <= kMaxDim), "checked_dim(%lld)", (long long)a);
  }
}

int64_t small(std::mt19937& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(hi - lo + 1));
}

void fuzz_bconv2d(std::mt19937& rng, int nt) {
  BConv2DShape s;
  s.batch = small(rng, 1, 2), s.in_h = small(rng, 1, 7), s.in_w = small(rng, 1, 7);
  s.in_channels = small(rng, 1, 70), s.out_channels = small(rng, 1, 40);
  s.kernel_h = small(rng, 1, 5), s.kernel_w = small(rng, 1, 5);
  s.stride_h = small(rng, 1, 4), s.stride_w = small(rng, 1, 4);
  s.pad_top = small(rng, 0, 6), s.pad_bottom = small(rng, 0, 6);
  s.pad_left = small(rng, 0, 6), s.pad_right = small(rng, 0, 6);
  s.pad_value = static_cast<PadValue>(rng() % 3);
  try {
    s.validate();
  } catch (const std::invalid_argument&) {
    return;
  }
  const int64_t px = checked_product({s.batch, s.in_h, s.in_w}, "x"), co = s.out_channels;
  const auto x = onebit_test::random_packed(rng, px, s.in_channels);
  const auto w = onebit_test::random_packed(rng, co * s.taps(), s.in_channels);
  const int64_t rows = checked_product({s.batch, s.out_h(), s.out_w()}, "out");
  std::vector<float> mult(co, 0.5f), bias(co, 0.25f), thr(co, 0.0f), res(rows * co, 1.0f);
  std::vector<uint8_t> flip(co, 1);
  std::vector<float> out_f(rows * co);
  std::vector<uint32_t> sign(rows * words_for(co)), bits(rows * words_for(co));
  OutputTransform t;
  t.channels = co;
  t.kind = OutputKind::Float, t.multiplier = mult.data(), t.bias = bias.data();
  t.residual = res.data(), t.sign_out = sign.data(), t.out = out_f.data();
  bconv2d(x.data(), w.data(), s, t, nt);
  OutputTransform b;
  b.channels = co, b.kind = OutputKind::Bits, b.thresholds = thr.data(), b.flip = flip.data();
  b.out = bits.data();
  const PreparedFilters prepared(w.data(), co, s.kernel_h, s.kernel_w, s.in_channels);
  bconv2d(x.data(), prepared, s, b, nt);
}

void fuzz_bgemm(std::mt19937& rng, int nt) {
  const int64_t m = small(rng, 1, 9), n = small(rng, 1, 40), k = small(rng, 1, 300);
  const auto a = onebit_test::random_packed(rng, m, k);
  const auto bw = onebit_test::random_packed(rng, n, k);
  std::vector<int32_t> out(checked_product({m, n}, "out"));
  OutputTransform t;
  t.channels = n, t.kind = OutputKind::Int32, t.out = out.data();
  bgemm(a.data(), bw.data(), m, n, words_for(k), k, t, nt);
  const PreparedRows rows(bw.data(), n, k);
  bgemm(a.data(), rows, m, t, nt);
}

void fuzz_bitpack(std::mt19937& rng) {
  const int64_t outer = small(rng, 1, 5), n = small(rng, 1, 100), inner = small(rng, 1, 5);
  std::vector<float> x(checked_product({outer, n, inner}, "x"));
  for (auto& v : x) v = (rng() & 1) ? -1.0f : 1.0f;
  std::vector<uint32_t> packed(checked_product({outer, words_for(n), inner}, "packed"));
  pack_bits(x.data(), outer, n, inner, packed.data());
  std::vector<float> back(x.size());
  unpack_bits(packed.data(), outer, n, inner, back.data());
  CHECK(back == x, "pack/unpack round trip");
}

void fuzz_adder(std::mt19937& rng, int nt) {
  adder::ConvGeometry g;
  g.n = small(rng, 1, 2), g.c = small(rng, 1, 9), g.h = small(rng, 1, 7), g.w = small(rng, 1, 7);
  g.cout = small(rng, 1, 9), g.kh = small(rng, 1, 4), g.kw = small(rng, 1, 4);
  g.sh = small(rng, 1, 3), g.sw = small(rng, 1, 3), g.ph = small(rng, 0, 5), g.pw = small(rng, 0, 5);
  try {
    adder::check_geometry(g);
  } catch (const std::invalid_argument&) {
    return;
  }
  const int64_t nx = g.n * g.c * g.h * g.w, nw = g.cout * g.c * g.kh * g.kw;
  const int64_t ny = g.n * g.cout * g.oh() * g.ow();
  std::vector<float> x(nx, 0.5f), w(nw, -0.25f), y(ny), gy(ny, 1.0f), dx(nx), dw(nw);
  adder::conv2d_forward(x.data(), w.data(), y.data(), g, nt);
  adder::conv2d_backward(x.data(), w.data(), gy.data(), dx.data(), dw.data(), g, nt);
  std::vector<int8_t> xq(nx, 3), wq(nw, -2);
  std::vector<float> mult(g.cout, 0.1f), bias(g.cout, 0.0f), yq(ny);
  adder::int8_conv2d(xq.data(), wq.data(), static_cast<int8_t>(small(rng, -128, 127)), mult.data(),
                     bias.data(), yq.data(), g, nt);
}

void fuzz_floatops(std::mt19937& rng, int nt) {
  floatops::PoolGeometry p;
  p.n = small(rng, 1, 2), p.h = small(rng, 1, 9), p.w = small(rng, 1, 9), p.c = small(rng, 1, 20);
  p.kh = small(rng, 1, 4), p.kw = small(rng, 1, 4), p.sh = small(rng, 1, 3), p.sw = small(rng, 1, 3);
  p.ph = small(rng, 0, 2), p.pw = small(rng, 0, 2), p.dh = small(rng, 1, 2), p.dw = small(rng, 1, 2);
  p.ceil_mode = rng() & 1;
  bool ok = true;
  try {
    floatops::check_pool_geometry(p);
  } catch (const std::invalid_argument&) {
    ok = false;
  }
  if (ok) {
    std::vector<float> x(p.n * p.h * p.w * p.c, 1.0f), y(p.n * p.oh() * p.ow() * p.c);
    floatops::maxpool2d(x.data(), y.data(), p, nt);
    if (p.dh == 1 && p.dw == 1)
      floatops::avgpool2d(x.data(), y.data(), p, rng() & 1, small(rng, 0, 3), nt);
  }
  floatops::ConvGeometry g;
  g.n = small(rng, 1, 2), g.h = small(rng, 1, 9), g.w = small(rng, 1, 9), g.c = small(rng, 1, 5);
  g.cout = small(rng, 1, 40), g.kh = small(rng, 1, 5), g.kw = small(rng, 1, 5);
  g.sh = small(rng, 1, 3), g.sw = small(rng, 1, 3), g.ph = small(rng, 0, 4), g.pw = small(rng, 0, 4);
  g.dh = small(rng, 1, 2), g.dw = small(rng, 1, 2);
  try {
    floatops::check_geometry(g);
  } catch (const std::invalid_argument&) {
    return;
  }
  std::vector<float> w(g.cout * g.c * g.kh * g.kw, 0.5f), bias(g.cout, 1.0f);
  std::vector<float> x(g.n * g.h * g.w * g.c, -1.0f), y(g.n * g.oh() * g.ow() * g.cout);
  const floatops::PreparedConv prepared(w.data(), g.cout, g.c, g.kh, g.kw);
  floatops::conv2d(x.data(), prepared, bias.data(), 0.0f, y.data(), g, nt);
}

}  // namespace

int main() {
  std::mt19937 rng(2024);
  fuzz_checked(rng);
  for (Isa isa : onebit_test::available_isas()) {
    set_isa(isa);
    for (int trial = 0; trial < 60; ++trial) {
      const int nt = 1 + trial % 2;
      fuzz_bconv2d(rng, nt);
      fuzz_bgemm(rng, nt);
      fuzz_bitpack(rng);
      fuzz_adder(rng, nt);
      fuzz_floatops(rng, nt);
    }
  }
  reset_isa();
  return onebit_test::finish("test_fuzz_sizes");
}
