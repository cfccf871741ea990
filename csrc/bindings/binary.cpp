// onebit._kernels: binary GEMM and binary conv2d with their output transforms. The Python
// wrappers (onebit/kernels/binary.py) validate everything and allocate the outputs; these
// functions re-check the sizes they rely on (overflow-checked products, limits in
// bindings/checked.h) and release the GIL while the kernels run.
#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/vector.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "bconv2d/bconv2d.h"
#include "bconv2d/prepared.h"
#include "bgemm/bgemm.h"
#include "bindings/checked.h"
#include "dispatch.h"

namespace nb = nanobind;

namespace {

using WordsIn = nb::ndarray<const uint32_t, nb::c_contig, nb::device::cpu>;
using FloatIn = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using BoolIn = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;
using AnyOut = nb::ndarray<nb::c_contig, nb::device::cpu>;
using WordsOut = nb::ndarray<uint32_t, nb::c_contig, nb::device::cpu>;

using onebit::bindings::checked_dim;
using onebit::bindings::checked_product;
using onebit::bindings::checked_sum;
using onebit::bindings::kMaxElements;

void need(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(what);
}

// Builds the transform from the optional arrays and checks every size against rows x channels.
onebit::OutputTransform make_transform(const std::string& kind, int64_t rows, int64_t channels,
                                       const FloatIn& row_scale, const FloatIn& multiplier,
                                       const FloatIn& bias, const FloatIn& thresholds,
                                       const BoolIn& flip, const FloatIn& residual,
                                       WordsOut& sign_out, AnyOut& out) {
  onebit::OutputTransform t;
  t.channels = channels;
  const int64_t values = checked_product({rows, channels}, "the output [rows, channels]");
  const int64_t bit_words =
      checked_product({rows, onebit::words_for(channels)}, "the output [rows, words(channels)]");
  auto vec = [&](const FloatIn& a, int64_t n, const char* msg) -> const float* {
    if (!a.is_valid()) return nullptr;
    need(static_cast<int64_t>(a.size()) == n, msg);
    return a.data();
  };
  t.row_scale = vec(row_scale, rows, "k_map / row scale size mismatch");
  t.multiplier = vec(multiplier, channels, "multiplier size mismatch");
  t.bias = vec(bias, channels, "bias size mismatch");
  t.thresholds = vec(thresholds, channels, "thresholds size mismatch");
  if (flip.is_valid()) {
    need(static_cast<int64_t>(flip.size()) == channels, "flip size mismatch");
    t.flip = flip.data();
  }
  t.out = out.data();
  if (residual.is_valid() || sign_out.is_valid())
    need(kind == "float", "residual and sign bits apply only to the float output");
  t.residual = vec(residual, values, "residual size mismatch");
  if (sign_out.is_valid()) {
    need(static_cast<int64_t>(sign_out.size()) == bit_words,
         "sign bits must be uint32 [rows, words(channels)]");
    t.sign_out = sign_out.data();
  }
  if (kind == "int32") {
    t.kind = onebit::OutputKind::Int32;
    need(out.dtype() == nb::dtype<int32_t>() && static_cast<int64_t>(out.size()) == values,
         "int32 output must be int32 [rows, channels]");
  } else if (kind == "float") {
    t.kind = onebit::OutputKind::Float;
    need(out.dtype() == nb::dtype<float>() && static_cast<int64_t>(out.size()) == values,
         "float output must be float32 [rows, channels]");
  } else if (kind == "bits") {
    t.kind = onebit::OutputKind::Bits;
    need(t.thresholds != nullptr, "bits output needs thresholds");
    need(out.dtype() == nb::dtype<uint32_t>() &&
             static_cast<int64_t>(out.size()) == bit_words,
         "bits output must be uint32 [rows, words(channels)]");
  } else {
    throw std::invalid_argument("output must be 'int32', 'float' or 'bits'");
  }
  return t;
}

template <class Rows>
void bgemm_any(WordsIn a, const Rows& b, int64_t m, int64_t n, int64_t k, const std::string& kind,
               FloatIn row_scale, FloatIn multiplier, FloatIn bias, FloatIn thresholds, BoolIn flip,
               FloatIn residual, WordsOut sign_out, AnyOut out, int num_threads) {
  checked_dim(m, "bgemm: m", 1, kMaxElements);
  checked_dim(n, "bgemm: n", 1, kMaxElements);
  checked_dim(k, "bgemm: k", 1, kMaxElements);
  need(k < (int64_t{1} << 31), "bgemm: k must be < 2^31 (the int32 accumulator)");
  const int64_t kw = onebit::words_for(k);
  need(static_cast<int64_t>(a.size()) == checked_product({m, kw}, "bgemm: a [m, words(k)]"),
       "bgemm: a size does not match [m, words(k)]");
  const onebit::OutputTransform t = make_transform(kind, m, n, row_scale, multiplier, bias, thresholds, flip, residual,
                                                     sign_out, out);
  if constexpr (std::is_same_v<Rows, WordsIn>) {
    need(static_cast<int64_t>(b.size()) == checked_product({n, kw}, "bgemm: b [n, words(k)]"),
         "bgemm: b size does not match [n, words(k)]");
    nb::gil_scoped_release release;
    onebit::bgemm(a.data(), b.data(), m, n, kw, k, t, num_threads);
  } else {
    need(b.n() == n && b.k() == k, "bgemm: the prepared rows do not match n and k");
    nb::gil_scoped_release release;
    onebit::bgemm(a.data(), b, m, t, num_threads);
  }
}

void prepare_rows(onebit::PreparedRows* self, WordsIn b, int64_t n, int64_t k) {
  checked_dim(n, "PreparedRows: n", 1, kMaxElements);
  checked_dim(k, "PreparedRows: k", 1, (int64_t{1} << 31) - 1);
  need(static_cast<int64_t>(b.size()) ==
           checked_product({n, onebit::words_for(k)}, "PreparedRows: b [n, words(k)]"),
       "PreparedRows: b size does not match [n, words(k)]");
  new (self) onebit::PreparedRows(b.data(), n, k);
}

// The geometry of a binary conv from binding arguments: every value in its range and every size
// the kernels derive from them bounded before BConv2DShape computes anything (its products could
// otherwise wrap around), then validated. `what` prefixes the messages.
onebit::BConv2DShape checked_shape(int64_t batch, int64_t in_h, int64_t in_w, int64_t in_channels,
                                   int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                                   int64_t stride_h, int64_t stride_w, int64_t pad_top,
                                   int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                                   int pad_value, const std::string& what) {
  for (int64_t v : {batch, in_h, in_w, in_channels, out_channels, kernel_h, kernel_w, stride_h,
                    stride_w})
    checked_dim(v, (what + ": sizes and strides").c_str());
  for (int64_t v : {pad_top, pad_bottom, pad_left, pad_right}) checked_dim(v, (what + ": padding").c_str(), 0);
  checked_product({kernel_h, kernel_w, in_channels}, (what + ": kernel_h * kernel_w * in_channels").c_str());
  const int64_t padded_h = checked_sum({in_h, pad_top, pad_bottom}, (what + ": padded height").c_str());
  const int64_t padded_w = checked_sum({in_w, pad_left, pad_right}, (what + ": padded width").c_str());
  checked_product({batch, padded_h, padded_w, onebit::words_for(in_channels)}, (what + ": the padded input").c_str());
  checked_product({out_channels, kernel_h, kernel_w, onebit::words_for(in_channels)}, (what + ": the filters").c_str());
  need(pad_value >= 0 && pad_value <= 2, (what + ": pad_value code must be 0, 1 or 2").c_str());
  onebit::BConv2DShape s;
  s.batch = batch;
  s.in_h = in_h;
  s.in_w = in_w;
  s.in_channels = in_channels;
  s.out_channels = out_channels;
  s.kernel_h = kernel_h;
  s.kernel_w = kernel_w;
  s.stride_h = stride_h;
  s.stride_w = stride_w;
  s.pad_top = pad_top;
  s.pad_bottom = pad_bottom;
  s.pad_left = pad_left;
  s.pad_right = pad_right;
  s.pad_value = static_cast<onebit::PadValue>(pad_value);
  s.validate();
  return s;
}

template <class Filters>
void bconv2d_any(WordsIn x, const Filters& w, int64_t batch, int64_t in_h, int64_t in_w, int64_t in_channels,
                int64_t out_channels, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
                int64_t stride_w, int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                int64_t pad_right, int pad_value, const std::string& kind, FloatIn k_map,
                FloatIn multiplier, FloatIn bias, FloatIn thresholds, BoolIn flip, FloatIn residual,
                WordsOut sign_out, AnyOut out, int num_threads) {
  const onebit::BConv2DShape s =
      checked_shape(batch, in_h, in_w, in_channels, out_channels, kernel_h, kernel_w, stride_h, stride_w,
                    pad_top, pad_bottom, pad_left, pad_right, pad_value, "bconv2d");
  need(static_cast<int64_t>(x.size()) == checked_product({batch, in_h, in_w, s.in_words()}, "bconv2d: x"),
       "bconv2d: x size does not match [batch, in_h, in_w, words(in_channels)]");
  const onebit::OutputTransform t =
      make_transform(kind, checked_product({batch, s.out_h(), s.out_w()}, "bconv2d: the output"), out_channels, k_map, multiplier, bias, thresholds, flip,
                     residual, sign_out, out);
  if constexpr (std::is_same_v<Filters, WordsIn>) {
    need(static_cast<int64_t>(w.size()) == out_channels * s.filter_words(),
         "bconv2d: w size does not match [out_channels, kernel_h, kernel_w, words(in_channels)]");
    nb::gil_scoped_release release;
    onebit::bconv2d(x.data(), w.data(), s, t, num_threads);
  } else {
    nb::gil_scoped_release release;
    onebit::bconv2d(x.data(), w, s, t, num_threads);
  }
}

void prepare_filters(onebit::PreparedFilters* self, WordsIn w, int64_t out_channels, int64_t kernel_h,
                     int64_t kernel_w, int64_t in_channels) {
  for (int64_t v : {out_channels, kernel_h, kernel_w, in_channels})
    checked_dim(v, "PreparedFilters: out_channels, kernel_h, kernel_w and in_channels");
  checked_product({kernel_h, kernel_w, in_channels}, "PreparedFilters: kernel_h * kernel_w * in_channels");
  need(static_cast<int64_t>(w.size()) ==
           checked_product({out_channels, kernel_h, kernel_w, onebit::words_for(in_channels)},
                           "PreparedFilters: w"),
       "PreparedFilters: w size does not match [out_channels, kernel_h, kernel_w, words(in_channels)]");
  new (self) onebit::PreparedFilters(w.data(), out_channels, kernel_h, kernel_w, in_channels);
}

std::vector<std::pair<std::string, double>> tune_filters(
    onebit::PreparedFilters& self, int64_t batch, int64_t in_h, int64_t in_w, int64_t stride_h,
    int64_t stride_w, int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
    int pad_value, int num_threads, int reps) {
  need(reps >= 1 && reps <= 1000, "tune: reps must be in [1, 1000]");
  need(batch <= 4096, "tune: batch must be <= 4096 (one timed conv per candidate)");
  const onebit::BConv2DShape s =
      checked_shape(batch, in_h, in_w, self.in_channels(), self.out_channels(), self.kernel_h(),
                    self.kernel_w(), stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right,
                    pad_value, "tune");
  return self.tune(s, num_threads, reps);
}

}  // namespace

void register_binary(nb::module_& m) {
  m.def("bgemm", &bgemm_any<WordsIn>, nb::arg("a"), nb::arg("b"), nb::arg("m"), nb::arg("n"),
        nb::arg("k"), nb::arg("output"), nb::arg("row_scale").none(), nb::arg("multiplier").none(),
        nb::arg("bias").none(), nb::arg("thresholds").none(), nb::arg("flip").none(), nb::arg("residual").none(), nb::arg("sign_out").none(), nb::arg("out"),
        nb::arg("num_threads"), "Binary GEMM (see onebit.kernels.bgemm).");
  nb::class_<onebit::PreparedRows>(m, "PreparedRows",
                                   "Rows of B packed once for bgemm (see onebit.kernels.prepare_gemm_weight).")
      .def("__init__", &prepare_rows, nb::arg("b"), nb::arg("n"), nb::arg("k"))
      .def_prop_ro("isa", [](const onebit::PreparedRows& p) { return std::string(onebit::isa_name(p.isa())); });
  m.def("bgemm_prepared", &bgemm_any<onebit::PreparedRows>, nb::arg("a"), nb::arg("b"), nb::arg("m"),
        nb::arg("n"), nb::arg("k"), nb::arg("output"), nb::arg("row_scale").none(),
        nb::arg("multiplier").none(), nb::arg("bias").none(), nb::arg("thresholds").none(),
        nb::arg("flip").none(), nb::arg("residual").none(), nb::arg("sign_out").none(), nb::arg("out"), nb::arg("num_threads"),
        "Binary GEMM with prepared rows of B (see onebit.kernels.bgemm).");
  nb::class_<onebit::PreparedFilters>(m, "PreparedFilters",
                                      "Conv filters packed once for bconv2d (see onebit.kernels.prepare_conv_weight).")
      .def("__init__", &prepare_filters, nb::arg("w"), nb::arg("out_channels"), nb::arg("kernel_h"),
           nb::arg("kernel_w"), nb::arg("in_channels"))
      .def_prop_ro("isa", [](const onebit::PreparedFilters& p) { return std::string(onebit::isa_name(p.isa())); })
      .def_prop_ro("kernel", [](const onebit::PreparedFilters& p) {
        return std::string(p.kernel() ? p.kernel()->name : "reference"); })
      .def_prop_ro("choice", [](const onebit::PreparedFilters& p) { return std::string(p.choice()); })
      .def("candidates", &onebit::PreparedFilters::candidates)
      .def("use_kernel", &onebit::PreparedFilters::use_kernel, nb::arg("name"))
      .def("tune", &tune_filters, nb::arg("batch"), nb::arg("in_h"), nb::arg("in_w"),
           nb::arg("stride_h"), nb::arg("stride_w"), nb::arg("pad_top"), nb::arg("pad_bottom"),
           nb::arg("pad_left"), nb::arg("pad_right"), nb::arg("pad_value"), nb::arg("num_threads"),
           nb::arg("reps"), "Times each candidate kernel on this geometry and keeps the fastest.");
  m.def("bconv2d_prepared", &bconv2d_any<onebit::PreparedFilters>, nb::arg("x"), nb::arg("w"),
        nb::arg("batch"), nb::arg("in_h"), nb::arg("in_w"), nb::arg("in_channels"),
        nb::arg("out_channels"), nb::arg("kernel_h"), nb::arg("kernel_w"), nb::arg("stride_h"),
        nb::arg("stride_w"), nb::arg("pad_top"), nb::arg("pad_bottom"), nb::arg("pad_left"),
        nb::arg("pad_right"), nb::arg("pad_value"), nb::arg("output"), nb::arg("k_map").none(),
        nb::arg("multiplier").none(), nb::arg("bias").none(), nb::arg("thresholds").none(),
        nb::arg("flip").none(), nb::arg("residual").none(), nb::arg("sign_out").none(), nb::arg("out"), nb::arg("num_threads"),
        "Binary conv2d with prepared filters (see onebit.kernels.bconv2d).");
  m.def("bconv2d", &bconv2d_any<WordsIn>, nb::arg("x"), nb::arg("w"), nb::arg("batch"), nb::arg("in_h"),
        nb::arg("in_w"), nb::arg("in_channels"), nb::arg("out_channels"), nb::arg("kernel_h"),
        nb::arg("kernel_w"), nb::arg("stride_h"), nb::arg("stride_w"), nb::arg("pad_top"),
        nb::arg("pad_bottom"), nb::arg("pad_left"), nb::arg("pad_right"), nb::arg("pad_value"),
        nb::arg("output"), nb::arg("k_map").none(), nb::arg("multiplier").none(),
        nb::arg("bias").none(), nb::arg("thresholds").none(), nb::arg("flip").none(), nb::arg("residual").none(), nb::arg("sign_out").none(), nb::arg("out"),
        nb::arg("num_threads"), "Binary conv2d over packed NHWC (see onebit.kernels.bconv2d).");
}
