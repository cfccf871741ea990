// Python bindings of the AdderNet kernels (csrc/adder). Arrays arrive as nanobind ndarrays
// (NumPy arrays or torch tensors, zero-copy); outputs are caller-allocated. onebit.kernels.adder
// and onebit.ops.adder validate arguments with friendlier messages; the checks here guard the
// C++ side against anything that slips through (they raise ValueError), with overflow-checked
// sizes (bindings/checked.h states the limits).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "adder/adder.h"
#include "bindings/checked.h"
#include "bindings/shape_check.h"

namespace nb = nanobind;
using onebit::adder::ConvGeometry;

namespace {

template <class T, int D>
using In = nb::ndarray<const T, nb::ndim<D>, nb::c_contig, nb::device::cpu>;
template <class T, int D>
using Out = nb::ndarray<T, nb::ndim<D>, nb::c_contig, nb::device::cpu>;

using onebit::bindings::checked_dim;
using onebit::bindings::checked_product;
using onebit::bindings::checked_sum;
using onebit::bindings::expect_shape;

ConvGeometry make_geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t cout, int64_t kh,
                           int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  checked_dim(sh, "stride_h");
  checked_dim(sw, "stride_w");
  checked_dim(ph, "pad_h", 0);
  checked_dim(pw, "pad_w", 0);
  // the int8 kernel lays the padded input out in a scratch buffer of n * (h + 2 ph) * (w + 2 pw) * c
  // bytes; the float kernels' column buffers hold c * kh * kw values per output position
  const int64_t hp = checked_sum({h, ph, ph}, "the padded height");
  const int64_t wp = checked_sum({w, pw, pw}, "the padded width");
  checked_product({n, hp, wp, c}, "the padded input");
  checked_product({c, kh, kw, cout}, "the filters");
  ConvGeometry g;
  g.n = n, g.c = c, g.h = h, g.w = w, g.cout = cout, g.kh = kh, g.kw = kw;
  g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw;
  onebit::adder::check_geometry(g);
  checked_product({n, cout, g.oh(), g.ow()}, "the output");
  return g;
}

ConvGeometry nchw_geometry(const In<float, 4>& x, const In<float, 4>& w, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw) {
  if (w.shape(1) != x.shape(1))
    throw std::invalid_argument("weight has " + std::to_string(w.shape(1)) +
                                " input channels but x has " + std::to_string(x.shape(1)));
  return make_geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(2),
                       w.shape(3), sh, sw, ph, pw);
}

}  // namespace

void register_adder(nb::module_& m) {
  m.def(
      "adder_conv2d_forward",
      [](In<float, 4> x, In<float, 4> w, Out<float, 4> y, int64_t sh, int64_t sw, int64_t ph,
         int64_t pw, int num_threads) {
        const ConvGeometry g = nchw_geometry(x, w, sh, sw, ph, pw);
        expect_shape(y, {g.n, g.cout, g.oh(), g.ow()}, "y");
        nb::gil_scoped_release release;
        onebit::adder::conv2d_forward(x.data(), w.data(), y.data(), g, num_threads);
      },
      nb::arg("x"), nb::arg("weight"), nb::arg("y"), nb::arg("stride_h"), nb::arg("stride_w"),
      nb::arg("pad_h"), nb::arg("pad_w"), nb::arg("num_threads"),
      "AdderNet forward, NCHW float32: y = -sum |x_pad - w| (writes y).");
  m.def(
      "adder_conv2d_backward",
      [](In<float, 4> x, In<float, 4> w, In<float, 4> gy, std::optional<Out<float, 4>> dx,
         std::optional<Out<float, 4>> dw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
         int num_threads) {
        const ConvGeometry g = nchw_geometry(x, w, sh, sw, ph, pw);
        expect_shape(gy, {g.n, g.cout, g.oh(), g.ow()}, "grad_output");
        if (dx) expect_shape(*dx, {g.n, g.c, g.h, g.w}, "grad_input");
        if (dw) expect_shape(*dw, {g.cout, g.c, g.kh, g.kw}, "grad_weight");
        float* dxp = dx ? dx->data() : nullptr;
        float* dwp = dw ? dw->data() : nullptr;
        nb::gil_scoped_release release;
        onebit::adder::conv2d_backward(x.data(), w.data(), gy.data(), dxp, dwp, g, num_threads);
      },
      nb::arg("x"), nb::arg("weight"), nb::arg("grad_output"), nb::arg("grad_input").none(),
      nb::arg("grad_weight").none(), nb::arg("stride_h"), nb::arg("stride_w"), nb::arg("pad_h"),
      nb::arg("pad_w"), nb::arg("num_threads"),
      "AdderNet backward: grad_input = sum clip(w - x, -1, 1) * g, grad_weight = sum (x - w) * g "
      "(raw, no adaptive scaling). Either output may be None.");
  m.def(
      "adder_int8_conv2d",
      [](In<int8_t, 4> x, In<int8_t, 4> w, int pad_value, In<float, 1> multiplier,
         In<float, 1> bias, Out<float, 4> y, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
         int num_threads) {
        if (w.shape(3) != x.shape(3))
          throw std::invalid_argument("w_q has " + std::to_string(w.shape(3)) +
                                      " input channels but x_q has " + std::to_string(x.shape(3)));
        if (pad_value < -128 || pad_value > 127)
          throw std::invalid_argument("pad_value_q must be in [-128, 127]");
        const ConvGeometry g = make_geometry(x.shape(0), x.shape(3), x.shape(1), x.shape(2),
                                             w.shape(0), w.shape(1), w.shape(2), sh, sw, ph, pw);
        expect_shape(multiplier, {g.cout}, "multiplier");
        expect_shape(bias, {g.cout}, "bias");
        expect_shape(y, {g.n, g.oh(), g.ow(), g.cout}, "y");
        nb::gil_scoped_release release;
        onebit::adder::int8_conv2d(x.data(), w.data(), static_cast<int8_t>(pad_value),
                                   multiplier.data(), bias.data(), y.data(), g, num_threads);
      },
      nb::arg("x"), nb::arg("weight"), nb::arg("pad_value"), nb::arg("multiplier"),
      nb::arg("bias"), nb::arg("y"), nb::arg("stride_h"), nb::arg("stride_w"), nb::arg("pad_h"),
      nb::arg("pad_w"), nb::arg("num_threads"),
      "Int8 AdderNet, NHWC: y = fma(-sum |x_q - w_q|, multiplier, bias) (writes y).");
}
