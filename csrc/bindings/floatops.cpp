// Python bindings of the float ops (csrc/floatops): direct conv2d for few input channels, max and
// average pooling, NHWC float32. onebit.kernels.floatops validates arguments with friendlier
// messages and allocates the outputs; the checks here guard the C++ side (ValueError), with
// overflow-checked sizes (bindings/checked.h states the limits).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

#include "floatops/floatops.h"
#include "bindings/checked.h"
#include "bindings/shape_check.h"

namespace nb = nanobind;
namespace fo = onebit::floatops;

namespace {

// A fused max pool: (kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode), or none.
using PoolArgs = std::optional<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, bool>>;

template <int D>
using In = nb::ndarray<const float, nb::ndim<D>, nb::c_contig, nb::device::cpu>;
template <int D>
using Out = nb::ndarray<float, nb::ndim<D>, nb::c_contig, nb::device::cpu>;

using onebit::bindings::checked_dim;
using onebit::bindings::checked_product;
using onebit::bindings::checked_sum;
using onebit::bindings::expect_shape;

// Strides, padding and dilation in range, and the padded input and the output of bounded size.
// x's dimensions as (N, H, W, C): NHWC, or NCHW where nchw.
struct Dims {
  int64_t n, h, w, c;
};
Dims dims_of(const In<4>& x, bool nchw = false) {
  const auto d = [&](int i) { return static_cast<int64_t>(x.shape(i)); };
  return nchw ? Dims{d(0), d(2), d(3), d(1)} : Dims{d(0), d(1), d(2), d(3)};
}

void check_window(const In<4>& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                  int64_t pw, int64_t dh, int64_t dw, bool nchw = false) {
  const Dims x_ = dims_of(x, nchw);
  checked_dim(kh, "kernel_h");
  checked_dim(kw, "kernel_w");
  checked_dim(sh, "stride_h");
  checked_dim(sw, "stride_w");
  checked_dim(ph, "pad_h", 0);
  checked_dim(pw, "pad_w", 0);
  checked_dim(dh, "dilation_h");
  checked_dim(dw, "dilation_w");
  checked_product({dh, kh}, "the dilated kernel height");
  checked_product({dw, kw}, "the dilated kernel width");
  const int64_t hp = checked_sum({x_.h, ph, ph}, "the padded height");
  const int64_t wp = checked_sum({x_.w, pw, pw}, "the padded width");
  checked_product({x_.n, hp, wp, x_.c}, "the padded input");
}

void prepare_conv(fo::PreparedConv* self, In<4> w) {
  new (self) fo::PreparedConv(w.data(), w.shape(0), w.shape(1), w.shape(2), w.shape(3));
}

fo::PoolGeometry pool_geometry(const In<4>& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode) {
  check_window(x, kh, kw, sh, sw, ph, pw, dh, dw);
  fo::PoolGeometry g;
  g.n = x.shape(0), g.h = x.shape(1), g.w = x.shape(2), g.c = x.shape(3);
  g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw, g.dh = dh, g.dw = dw;
  g.ceil_mode = ceil_mode;
  fo::check_pool_geometry(g);
  return g;
}

}  // namespace

void register_floatops(nb::module_& m) {
  nb::class_<fo::PreparedConv>(m, "PreparedFloatConv",
                               "Float conv filters prepared once for float_conv2d (see "
                               "onebit.kernels.prepare_float_conv_weight).")
      .def("__init__", &prepare_conv, nb::arg("w"))
      .def_prop_ro("shape", [](const fo::PreparedConv& p) {
        return nb::make_tuple(p.cout(), p.cin(), p.kh(), p.kw());
      });
  m.def(
      "float_conv2d",
      [](In<4> x, const fo::PreparedConv& w, std::optional<In<1>> bias, float pad_value,
         Out<4> y, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
         int num_threads, bool nchw, const PoolArgs& maxpool) {
        check_window(x, w.kh(), w.kw(), sh, sw, ph, pw, dh, dw, nchw);
        const Dims d = dims_of(x, nchw);
        checked_product({d.n, d.h, d.w, w.cout()}, "the output");
        fo::ConvGeometry g;
        g.n = d.n, g.h = d.h, g.w = d.w, g.c = d.c;
        g.cout = w.cout(), g.kh = w.kh(), g.kw = w.kw();
        g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw, g.dh = dh, g.dw = dw;
        fo::check_geometry(g);
        if (w.cin() != g.c)
          throw std::invalid_argument("the filters have " + std::to_string(w.cin()) +
                                      " input channels but x has " + std::to_string(g.c));
        if (bias) expect_shape(*bias, {g.cout}, "bias");
        fo::PoolGeometry p;
        if (maxpool) {
          p.n = g.n, p.h = g.oh(), p.w = g.ow(), p.c = g.cout;
          std::tie(p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, p.ceil_mode) = *maxpool;
          fo::check_pool_geometry(p);
          expect_shape(y, {p.n, p.oh(), p.ow(), p.c}, "y");
        } else {
          expect_shape(y, {g.n, g.oh(), g.ow(), g.cout}, "y");
        }
        const float* b = bias ? bias->data() : nullptr;
        nb::gil_scoped_release release;
        fo::conv2d(x.data(), w, b, pad_value, y.data(), g, num_threads,
                   {nchw, maxpool ? &p : nullptr});
      },
      nb::arg("x"), nb::arg("w"), nb::arg("bias").none(), nb::arg("pad_value"), nb::arg("y"),
      nb::arg("stride_h"), nb::arg("stride_w"), nb::arg("pad_h"), nb::arg("pad_w"),
      nb::arg("dilation_h"), nb::arg("dilation_w"), nb::arg("num_threads"),
      nb::arg("nchw") = false, nb::arg("maxpool").none() = nb::none(),
      "Direct float conv2d, NHWC (or NCHW) input, optionally max pooled (see "
      "onebit.kernels.conv2d_f32; writes y).");
  m.def(
      "float_maxpool2d",
      [](In<4> x, Out<4> y, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, int64_t dh, int64_t dw, bool ceil_mode, int num_threads) {
        const fo::PoolGeometry g = pool_geometry(x, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode);
        expect_shape(y, {g.n, g.oh(), g.ow(), g.c}, "y");
        nb::gil_scoped_release release;
        fo::maxpool2d(x.data(), y.data(), g, num_threads);
      },
      nb::arg("x"), nb::arg("y"), nb::arg("kernel_h"), nb::arg("kernel_w"), nb::arg("stride_h"),
      nb::arg("stride_w"), nb::arg("pad_h"), nb::arg("pad_w"), nb::arg("dilation_h"),
      nb::arg("dilation_w"), nb::arg("ceil_mode"), nb::arg("num_threads"),
      "Max pooling, NHWC (see onebit.kernels.maxpool2d_f32; writes y).");
  m.def(
      "float_avgpool2d",
      [](In<4> x, Out<4> y, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, bool ceil_mode, bool count_include_pad, int64_t divisor_override,
         int num_threads) {
        const fo::PoolGeometry g = pool_geometry(x, kh, kw, sh, sw, ph, pw, 1, 1, ceil_mode);
        expect_shape(y, {g.n, g.oh(), g.ow(), g.c}, "y");
        nb::gil_scoped_release release;
        fo::avgpool2d(x.data(), y.data(), g, count_include_pad, divisor_override, num_threads);
      },
      nb::arg("x"), nb::arg("y"), nb::arg("kernel_h"), nb::arg("kernel_w"), nb::arg("stride_h"),
      nb::arg("stride_w"), nb::arg("pad_h"), nb::arg("pad_w"), nb::arg("ceil_mode"),
      nb::arg("count_include_pad"), nb::arg("divisor_override"), nb::arg("num_threads"),
      "Average pooling, NHWC (see onebit.kernels.avgpool2d_f32; writes y).");
}
