// bconv2d: the reference against a direct convolution of the unpacked +/-1 tensors (zero, +1 and
// -1 padding), and every available ISA against the reference bit for bit, for random shapes,
// strides, paddings, thread counts and every output kind.
#include <cmath>
#include <string>

#include "bconv2d/bconv2d.h"
#include "bconv2d/prepared.h"
#include "bconv2d/reference.h"
#include "test_util.h"

using namespace onebit;
using onebit_test::failures;

namespace {

float bit_value(const uint32_t* words, int64_t c) { return (words[c / 32] >> (c % 32)) & 1u ? -1.0f : 1.0f; }

// Float convolution of the unpacked tensors, padding value per params.h.
std::vector<int32_t> direct_conv(const std::vector<uint32_t>& x, const std::vector<uint32_t>& w,
                                 const BConv2DShape& s) {
  const int64_t cw = s.in_words(), ho = s.out_h(), wo = s.out_w();
  const float pad = s.pad_value == PadValue::Zero ? 0.0f : (s.pad_value == PadValue::PlusOne ? 1.0f : -1.0f);
  std::vector<int32_t> out(static_cast<size_t>(s.out_pixels() * s.out_channels));
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox)
        for (int64_t co = 0; co < s.out_channels; ++co) {
          double acc = 0;
          for (int64_t ky = 0; ky < s.kernel_h; ++ky)
            for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
              const int64_t iy = oy * s.stride_h - s.pad_top + ky, ix = ox * s.stride_w - s.pad_left + kx;
              const bool in = iy >= 0 && iy < s.in_h && ix >= 0 && ix < s.in_w;
              const uint32_t* wt = &w[((co * s.kernel_h + ky) * s.kernel_w + kx) * cw];
              const uint32_t* xt = in ? &x[((n * s.in_h + iy) * s.in_w + ix) * cw] : nullptr;
              for (int64_t c = 0; c < s.in_channels; ++c)
                acc += (in ? bit_value(xt, c) : pad) * bit_value(wt, c);
            }
          out[((n * ho + oy) * wo + ox) * s.out_channels + co] = static_cast<int32_t>(acc);
        }
  return out;
}

BConv2DShape random_shape(std::mt19937& rng, int trial) {
  BConv2DShape s;
  s.batch = 1 + rng() % 3;
  s.in_channels = (trial % 5 == 0) ? 1 + rng() % 600 : 1 + rng() % 140;
  s.out_channels = 1 + rng() % 70;
  s.kernel_h = 1 + rng() % 3;
  s.kernel_w = (trial % 4 == 0) ? 1 + rng() % 4 : s.kernel_h;
  s.stride_h = 1 + rng() % 2;
  s.stride_w = (trial % 3 == 0) ? 1 + rng() % 2 : s.stride_h;
  s.in_h = s.kernel_h + rng() % 8;
  s.in_w = s.kernel_w + rng() % 8;
  s.pad_top = rng() % (s.kernel_h + 1);
  s.pad_bottom = rng() % (s.kernel_h + 1);
  s.pad_left = rng() % (s.kernel_w + 1);
  s.pad_right = rng() % (s.kernel_w + 1);
  s.pad_value = static_cast<PadValue>(rng() % 3);
  return s;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 150; ++trial) {
    const BConv2DShape s = random_shape(rng, trial);
    s.validate();
    const int64_t cw = s.in_words(), p = s.out_pixels(), co = s.out_channels;
    const auto x = onebit_test::random_packed(rng, s.batch * s.in_h * s.in_w, s.in_channels);
    const auto w = onebit_test::random_packed(rng, co * s.taps(), s.in_channels);
    (void)cw;
    const std::vector<int32_t> direct = direct_conv(x, w, s);
    OutputTransform t;
    t.channels = co;
    std::vector<int32_t> ref(static_cast<size_t>(p * co));
    t.out = ref.data();
    bconv2d_reference(x.data(), w.data(), s, t);
    for (size_t i = 0; i < ref.size(); ++i)
      CHECK(ref[i] == direct[i], "trial %d reference vs direct at %zu: %d != %d (pad %d)", trial, i, ref[i],
            direct[i], static_cast<int>(s.pad_value));

    std::vector<float> kmap(static_cast<size_t>(p)), mult(co), bias(co), thr(co);
    std::vector<uint8_t> flip(co);
    for (auto& v : kmap) v = 0.25f + (rng() % 100) / 64.0f;
    for (int64_t c = 0; c < co; ++c) {
      mult[c] = (static_cast<int>(rng() % 200) - 100) / 37.0f;
      bias[c] = (static_cast<int>(rng() % 200) - 100) / 9.0f;
      const int64_t kt = s.taps() * s.in_channels;
      thr[c] = static_cast<float>(static_cast<int>(rng() % (2 * kt + 1)) - kt) * 0.5f;
      flip[c] = rng() % 2;
    }
    std::vector<float> ref_f(static_cast<size_t>(p * co));
    OutputTransform tf = t;
    tf.kind = OutputKind::Float;
    tf.row_scale = kmap.data();
    tf.multiplier = mult.data();
    tf.bias = bias.data();
    tf.out = ref_f.data();
    bconv2d_reference(x.data(), w.data(), s, tf);
    const int64_t ow = words_for(co);
    std::vector<uint32_t> ref_b(static_cast<size_t>(p * ow));
    OutputTransform tb;
    tb.kind = OutputKind::Bits;
    tb.channels = co;
    tb.thresholds = thr.data();
    tb.flip = flip.data();
    tb.out = ref_b.data();
    bconv2d_reference(x.data(), w.data(), s, tb);

    for (Isa isa : onebit_test::available_isas()) {
      if (isa == Isa::Reference) continue;
      set_isa(isa);
      for (int threads : {1, 2, 5}) {
        std::vector<int32_t> got(ref.size(), -12345);
        t.out = got.data();
        bconv2d(x.data(), w.data(), s, t, threads);
        for (size_t i = 0; i < ref.size(); ++i)
          CHECK(got[i] == ref[i], "isa=%s trial %d threads %d int32 at %zu: %d != %d", isa_name(isa), trial,
                threads, i, got[i], ref[i]);
        std::vector<float> got_f(ref_f.size(), NAN);
        tf.out = got_f.data();
        bconv2d(x.data(), w.data(), s, tf, threads);
        for (size_t i = 0; i < ref_f.size(); ++i)
          CHECK(got_f[i] == ref_f[i], "isa=%s trial %d float at %zu", isa_name(isa), trial, i);
        std::vector<uint32_t> got_b(ref_b.size(), 0xaaaaaaaau);
        tb.out = got_b.data();
        bconv2d(x.data(), w.data(), s, tb, threads);
        for (size_t i = 0; i < ref_b.size(); ++i)
          CHECK(got_b[i] == ref_b[i], "isa=%s trial %d bits at %zu", isa_name(isa), trial, i);
      }
      // filters prepared once, used here and (plain fallback) under the reference ISA
      const PreparedFilters prepared(w.data(), co, s.kernel_h, s.kernel_w, s.in_channels);
      std::vector<int32_t> got(ref.size(), -1);
      t.out = got.data();
      bconv2d(x.data(), prepared, s, t, 2);
      for (size_t i = 0; i < ref.size(); ++i)
        CHECK(got[i] == ref[i], "isa=%s trial %d prepared at %zu", isa_name(isa), trial, i);
      // every candidate kernel of the filter length (the choice tune() makes), bit for bit
      PreparedFilters chosen(w.data(), co, s.kernel_h, s.kernel_w, s.in_channels);
      for (const std::string& name : chosen.candidates()) {
        chosen.use_kernel(name);
        std::fill(got.begin(), got.end(), -1);
        t.out = got.data();
        bconv2d(x.data(), chosen, s, t, 1 + trial % 2);
        for (size_t i = 0; i < ref.size(); ++i)
          CHECK(got[i] == ref[i], "isa=%s trial %d kernel %s at %zu", isa_name(isa), trial, name.c_str(), i);
        std::vector<float> got_f(ref_f.size(), NAN);
        tf.out = got_f.data();
        bconv2d(x.data(), chosen, s, tf, 1);
        for (size_t i = 0; i < ref_f.size(); ++i)
          CHECK(got_f[i] == ref_f[i], "isa=%s trial %d kernel %s float at %zu", isa_name(isa), trial, name.c_str(), i);
      }
      if (trial % 10 == 0) {
        const auto times = chosen.tune(s, 1, 1);
        CHECK(times.size() == chosen.candidates().size(), "tune reports every candidate");
        CHECK(std::string(chosen.choice()) == (times.size() > 1 ? "measured" : "forced"),
              "tune's choice (%s)", chosen.choice());
        std::fill(got.begin(), got.end(), -1);
        bconv2d(x.data(), chosen, s, t, 2);
        for (size_t i = 0; i < ref.size(); ++i)
          CHECK(got[i] == ref[i], "isa=%s trial %d tuned (%s) at %zu", isa_name(isa), trial, chosen.kernel()->name, i);
      }
      set_isa(Isa::Reference);
      std::fill(got.begin(), got.end(), -1);
      bconv2d(x.data(), prepared, s, t, 2);
      for (size_t i = 0; i < ref.size(); ++i)
        CHECK(got[i] == ref[i], "isa=%s trial %d prepared, run by the reference, at %zu", isa_name(isa), trial, i);
    }
    reset_isa();
  }
  return onebit_test::finish("test_bconv2d");
}
