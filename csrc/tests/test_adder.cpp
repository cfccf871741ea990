// AdderNet kernels (adder/adder.h): every available ISA against the plain reference
// (adder/reference.h) for random shapes (odd channel counts, kernels 1 and 3, strides 1 and 2,
// padding 0 and 1, spatial sizes down to 1x1) and a few larger layers that reach the multi-chunk
// plans, the fan-in blocks of the forward (K > 512) and the filter blocks of dX (C_out > 128).
//   int8 SAD inference    exact (integer SAD, the same fma(-sad, multiplier, bias))
//   float forward/dX/dF   within the rounding bound below; exact when every value is a small
//                         integer (then every partial sum is an integer below 2^24)
//   thread counts         1, 2 and 3 threads give bit-identical results: the forward sums each
//                         output over k in a fixed order whatever the chunking, the backward says
//                         so in train_f32.cpp, the SAD is exact
// plus the two references against each other (float forward with integer values == -SAD of the
// int8 reference on the NHWC copies, zero padding), dX-only / dF-only backward calls against the
// full one, and the geometry checks.
//
// Float tolerance. With u = 2^-24 (float unit roundoff), a float kernel evaluating a sum of n terms
// t_1..t_n in any association order, each term rounded at most once before it is added, and with
// n additions at most on the path of any term, is off from the exact sum by at most
// ((1 + u)^(n+1) - 1) * S ~= (n + 1) u S, where S = sum |t_k|; the reference (double accumulators,
// error ~n 2^-53 S) rounds its result to float once more (u S). A few extra roundings are allowed
// for the final steps, so an element passes when |got - ref| <= (n + 5) u S, with
//   forward  n = C*KH*KW, t = |x - f|                    (S = |y|: all terms are >= 0)
//   dX       n = C_out*KH*KW (most taps onto one input), t = clip(f - x, -1, 1) * g
//   dF       n = N*OH*OW, and the kernel evaluates sum x g - f * sum g (train_f32.cpp), so its
//            terms are x g and f g: S = sum (|x g| + |f g|), which bounds sum |(x - f) g|.
// A dropped or doubled term, a wrong tap or a stale buffer is off by about S / n or more, far above
// that bound for the sizes used here.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "adder/adder.h"
#include "adder/reference.h"
#include "test_util.h"

using namespace onebit;
using adder::ConvGeometry;
using onebit_test::failures;

namespace {

constexpr double kUnitRoundoff = 0x1p-24;

struct Inputs {
  std::vector<float> x, w, gy;           // NCHW input, [Cout, C, KH, KW] filters, NCHW output grad
  std::vector<int8_t> xq, wq;            // NHWC input, [Cout, KH, KW, C] filters
  std::vector<float> mult, bias;         // int8 output transform, [Cout]
  int8_t pad = 0;
  bool integer = false;                  // float values are small integers: float paths exact
};

std::string describe(const ConvGeometry& g) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "n=%lld c=%lld h=%lld w=%lld cout=%lld k=%lldx%lld s=%lldx%lld p=%lldx%lld",
                (long long)g.n, (long long)g.c, (long long)g.h, (long long)g.w, (long long)g.cout,
                (long long)g.kh, (long long)g.kw, (long long)g.sh, (long long)g.sw, (long long)g.ph,
                (long long)g.pw);
  return buf;
}

ConvGeometry random_geometry(std::mt19937& rng, int trial) {
  static const int64_t channels[] = {1, 3, 17, 33, 2, 8, 5};
  static const int64_t couts[] = {1, 3, 4, 5, 8, 13, 17};
  static const int64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 9};
  ConvGeometry g;
  g.n = 1 + rng() % 3;
  g.c = (trial % 5 == 4) ? 1 + rng() % 40 : channels[rng() % 7];
  g.cout = couts[rng() % 7];
  for (;;) {
    g.kh = (rng() % 2) ? 3 : 1;
    g.kw = (trial % 4 == 3) ? ((rng() % 2) ? 3 : 1) : g.kh;
    g.sh = 1 + rng() % 2;
    g.sw = (trial % 3 == 2) ? 1 + rng() % 2 : g.sh;
    g.ph = rng() % 2;
    g.pw = (trial % 4 == 1) ? rng() % 2 : g.ph;
    g.h = sizes[rng() % 8];
    g.w = (trial % 2) ? sizes[rng() % 8] : g.h;
    if (g.h + 2 * g.ph >= g.kh && g.w + 2 * g.pw >= g.kw) return g;
  }
}

Inputs make_inputs(std::mt19937& rng, const ConvGeometry& g, bool integer) {
  Inputs in;
  in.integer = integer;
  const int64_t K = g.c * g.kh * g.kw;
  std::uniform_real_distribution<float> xd(-2.0f, 2.0f), gd(-1.0f, 1.0f);
  // integers in [-4, 4] reach both sides of the HardTanh clip and exact ties (f == x)
  auto value = [&](float scale) {
    return integer ? static_cast<float>(static_cast<int>(rng() % 9) - 4) : scale * xd(rng);
  };
  in.x.resize(static_cast<size_t>(g.n * g.c * g.h * g.w));
  in.w.resize(static_cast<size_t>(g.cout * K));
  in.gy.resize(static_cast<size_t>(g.n * g.cout * g.oh() * g.ow()));
  for (auto& v : in.x) v = value(1.0f);
  for (auto& v : in.w) v = value(1.0f);
  for (auto& v : in.gy) v = integer ? static_cast<float>(static_cast<int>(rng() % 7) - 3) : gd(rng);

  // int8 operands over the whole range (|a - b| up to 255, -128 included)
  in.xq.resize(in.x.size());
  in.wq.resize(in.w.size());
  for (auto& v : in.xq) v = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
  for (auto& v : in.wq) v = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
  in.pad = (rng() % 3 == 0) ? 0 : static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
  in.mult.resize(g.cout);
  in.bias.resize(g.cout);
  for (int64_t t = 0; t < g.cout; ++t) {
    in.mult[t] = 0.001f + std::ldexp(static_cast<float>(rng() % 1000), -9);
    in.bias[t] = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 7.0f;
  }
  return in;
}

// Sums of |terms| per element of dX and dF (see the tolerance above), in double.
void term_sums(const Inputs& in, const ConvGeometry& g, std::vector<double>* sdx,
               std::vector<double>* sdw) {
  const int64_t OH = g.oh(), OW = g.ow(), K = g.c * g.kh * g.kw;
  sdx->assign(in.x.size(), 0.0);
  sdw->assign(in.w.size(), 0.0);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t t = 0; t < g.cout; ++t)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const double gv = in.gy[((n * g.cout + t) * OH + oh) * OW + ow];
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t h = oh * g.sh - g.ph + i, v = ow * g.sw - g.pw + j;
                const bool inside = h >= 0 && h < g.h && v >= 0 && v < g.w;
                const int64_t xi = ((n * g.c + c) * g.h + h) * g.w + v;
                const double xv = inside ? in.x[xi] : 0.0;
                const double f = in.w[t * K + (c * g.kh + i) * g.kw + j];
                if (inside) (*sdx)[xi] += std::fabs(std::fmin(std::fmax(f - xv, -1.0), 1.0) * gv);
                (*sdw)[t * K + (c * g.kh + i) * g.kw + j] += std::fabs(xv * gv) + std::fabs(f * gv);
              }
        }
}

// One CHECK per array: the first element off by more than (n + 5) u S[i] (0 when exact), and how
// many are.
void expect_close(const std::vector<float>& got, const std::vector<float>& ref,
                  const std::vector<double>& sums, int64_t nterms, bool exact, const char* what,
                  const std::string& ctx) {
  int64_t bad = 0, first = -1;
  double first_tol = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double tol = exact ? 0.0 : (nterms + 5) * kUnitRoundoff * sums[i];
    if (!(std::fabs(static_cast<double>(got[i]) - ref[i]) <= tol)) {  // NaN (unwritten) fails too
      if (bad++ == 0) first = static_cast<int64_t>(i), first_tol = tol;
    }
  }
  CHECK(bad == 0, "%s, %s: %lld of %zu elements off, first at %lld: %.9g vs reference %.9g (tol %.3g)",
        what, ctx.c_str(), (long long)bad, ref.size(), (long long)first,
        bad ? got[first] : 0.0, bad ? ref[first] : 0.0, first_tol);
}

template <class T>
void expect_identical(const std::vector<T>& a, const std::vector<T>& b, const char* what,
                      const std::string& ctx) {
  int64_t first = -1;
  for (size_t i = 0; i < a.size() && first < 0; ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) first = static_cast<int64_t>(i);
  CHECK(first < 0, "%s, %s: differs at element %lld", what, ctx.c_str(), (long long)first);
}

void run_case(const ConvGeometry& g, const Inputs& in, const std::string& label) {
  const int64_t OH = g.oh(), OW = g.ow(), P = OH * OW, K = g.c * g.kh * g.kw;
  const std::string base = label + " " + describe(g) + (in.integer ? " (integer values)" : "");
  const float nan = std::nanf("");

  // references (called directly, 1 thread)
  std::vector<float> y_ref(in.gy.size()), dx_ref(in.x.size()), dw_ref(in.w.size());
  adder::ref::conv2d_forward(in.x.data(), in.w.data(), y_ref.data(), g, 1);
  adder::ref::conv2d_backward(in.x.data(), in.w.data(), in.gy.data(), dx_ref.data(), dw_ref.data(), g, 1);
  std::vector<float> q_ref(static_cast<size_t>(g.n * P * g.cout));
  adder::ref::int8_conv2d(in.xq.data(), in.wq.data(), in.pad, in.mult.data(), in.bias.data(),
                          q_ref.data(), g, 1);
  std::vector<double> sy(y_ref.size()), sdx, sdw;
  for (size_t i = 0; i < y_ref.size(); ++i) sy[i] = std::fabs(static_cast<double>(y_ref[i]));
  term_sums(in, g, &sdx, &sdw);

  if (in.integer) {
    // the float reference with integer values is -SAD of the int8 reference on NHWC copies
    std::vector<int8_t> xn(in.x.size()), wn(in.w.size());
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t q = 0; q < g.h * g.w; ++q)
          xn[(n * g.h * g.w + q) * g.c + c] = static_cast<int8_t>(in.x[(n * g.c + c) * g.h * g.w + q]);
    for (int64_t t = 0; t < g.cout; ++t)
      for (int64_t c = 0; c < g.c; ++c)
        for (int64_t r = 0; r < g.kh * g.kw; ++r)
          wn[(t * g.kh * g.kw + r) * g.c + c] = static_cast<int8_t>(in.w[(t * g.c + c) * g.kh * g.kw + r]);
    const std::vector<float> one(g.cout, 1.0f), zero(g.cout, 0.0f);
    std::vector<float> sad(q_ref.size());
    adder::ref::int8_conv2d(xn.data(), wn.data(), 0, one.data(), zero.data(), sad.data(), g, 1);
    int64_t bad = 0;
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t t = 0; t < g.cout; ++t)
        for (int64_t p = 0; p < P; ++p)
          bad += y_ref[(n * g.cout + t) * P + p] != sad[(n * P + p) * g.cout + t];
    CHECK(bad == 0, "%s: float reference != -SAD of the int8 reference at %lld outputs", base.c_str(),
          (long long)bad);
  }

  for (Isa isa : onebit_test::available_isas()) {
    set_isa(isa);
    // the dispatched reference must be the reference itself
    const bool exact = in.integer || isa == Isa::Reference;
    std::vector<float> y1, dx1, dw1, q1;
    for (int threads : {1, 2, 3}) {
      const std::string ctx = base + " isa=" + isa_name(isa) + " threads=" + std::to_string(threads);
      std::vector<float> y(y_ref.size(), nan), dx(dx_ref.size(), nan), dw(dw_ref.size(), nan);
      std::vector<float> q(q_ref.size(), nan);
      adder::conv2d_forward(in.x.data(), in.w.data(), y.data(), g, threads);
      adder::conv2d_backward(in.x.data(), in.w.data(), in.gy.data(), dx.data(), dw.data(), g, threads);
      adder::int8_conv2d(in.xq.data(), in.wq.data(), in.pad, in.mult.data(), in.bias.data(), q.data(),
                         g, threads);
      expect_close(y, y_ref, sy, K, exact, "forward", ctx);
      expect_close(dx, dx_ref, sdx, g.cout * g.kh * g.kw, exact, "dX", ctx);
      expect_close(dw, dw_ref, sdw, g.n * P, exact, "dF", ctx);
      int64_t bad = 0;
      for (size_t i = 0; i < q.size(); ++i) bad += std::memcmp(&q[i], &q_ref[i], sizeof(float)) != 0;
      CHECK(bad == 0, "int8 SAD, %s: %lld of %zu outputs differ from the reference", ctx.c_str(),
            (long long)bad, q.size());
      if (threads == 1) {
        y1 = y, dx1 = dx, dw1 = dw, q1 = q;
        // dX alone and dF alone: the same values as the full backward (stale buffers overwritten)
        std::vector<float> dxa(dx.size(), nan), dwa(dw.size(), nan);
        adder::conv2d_backward(in.x.data(), in.w.data(), in.gy.data(), dxa.data(), nullptr, g, 1);
        adder::conv2d_backward(in.x.data(), in.w.data(), in.gy.data(), nullptr, dwa.data(), g, 1);
        expect_identical(dxa, dx, "dX-only backward vs full", ctx);
        expect_identical(dwa, dw, "dF-only backward vs full", ctx);
        adder::conv2d_backward(in.x.data(), in.w.data(), in.gy.data(), nullptr, nullptr, g, 1);
      } else {
        expect_identical(y, y1, "forward vs 1 thread", ctx);
        expect_identical(dx, dx1, "dX vs 1 thread", ctx);
        expect_identical(dw, dw1, "dF vs 1 thread", ctx);
        expect_identical(q, q1, "int8 SAD vs 1 thread", ctx);
      }
    }
  }
  reset_isa();
}

void check_geometry_errors() {
  auto throws = [](ConvGeometry g) {
    try {
      adder::check_geometry(g);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  ConvGeometry ok;
  ok.n = 1, ok.c = 2, ok.h = 3, ok.w = 3, ok.cout = 4, ok.kh = 3, ok.kw = 3;
  CHECK(!throws(ok), "a valid geometry was rejected");
  ConvGeometry g = ok;
  g.c = 0;
  CHECK(throws(g), "zero channels accepted");
  g = ok, g.sw = 0;
  CHECK(throws(g), "zero stride accepted");
  g = ok, g.ph = -1;
  CHECK(throws(g), "negative padding accepted");
  g = ok, g.h = 2;
  CHECK(throws(g), "a kernel larger than the padded input accepted");
  g.ph = 1;
  CHECK(!throws(g), "a kernel that fits the padded input rejected");
  g = ok, g.kw = 4;
  bool op_threw = false;
  try {
    adder::conv2d_forward(nullptr, nullptr, nullptr, g, 1);
  } catch (const std::invalid_argument&) {
    op_threw = true;
  }
  CHECK(op_threw, "conv2d_forward ran on a kernel wider than the input");
}

}  // namespace

int main() {
  check_geometry_errors();
  std::mt19937 rng(2020);
  for (int trial = 0; trial < 90; ++trial) {
    const ConvGeometry g = random_geometry(rng, trial);
    run_case(g, make_inputs(rng, g, trial % 3 == 0), "trial " + std::to_string(trial));
  }
  // Larger layers: K = 576 > 512 (forward fan-in blocks), an int8 chunk of a few output rows,
  // C_out = 130 > 128 (dX filter blocks) with more output positions than one packed chunk.
  ConvGeometry big;
  big.n = 1, big.c = 64, big.h = 20, big.w = 20, big.cout = 5, big.kh = 3, big.kw = 3;
  big.ph = big.pw = 1;
  run_case(big, make_inputs(rng, big, false), "fan-in blocks");
  run_case(big, make_inputs(rng, big, true), "fan-in blocks");
  ConvGeometry wide;
  wide.n = 2, wide.c = 3, wide.h = 27, wide.w = 25, wide.cout = 130, wide.kh = 3, wide.kw = 3;
  wide.sh = wide.sw = 1, wide.ph = wide.pw = 1;
  run_case(wide, make_inputs(rng, wide, false), "filter blocks");
  wide.sh = 2, wide.pw = 0;
  run_case(wide, make_inputs(rng, wide, true), "filter blocks");
  return onebit_test::finish("test_adder");
}
