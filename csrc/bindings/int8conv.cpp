// Python bindings of the int8 convolution (csrc/floatops/int8conv.h): prepared int8 filters,
// conv2d on float32 or already-quantized uint8 NHWC input, and the quantizer alone.
// onebit.kernels.int8conv quantizes the weights, validates arguments with friendlier messages and
// allocates the outputs; the checks here guard the C++ side (ValueError), sizes included
// (int8conv::check_conv refuses any product that could overflow).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/tuple.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

#include "bindings/shape_check.h"
#include "floatops/int8conv.h"

namespace nb = nanobind;
namespace i8 = onebit::int8conv;

namespace {

template <class T, int D>
using In = nb::ndarray<const T, nb::ndim<D>, nb::c_contig, nb::device::cpu>;
template <class T, int D>
using Out = nb::ndarray<T, nb::ndim<D>, nb::c_contig, nb::device::cpu>;

using onebit::bindings::expect_shape;

void prepare(i8::PreparedInt8Conv* self, In<int8_t, 4> wq, In<float, 1> out_scale,
             std::optional<In<float, 1>> bias, float act_scale, int zero_point, int act_max) {
  const int64_t cout = static_cast<int64_t>(wq.shape(0));
  expect_shape(out_scale, {cout}, "out_scale");
  if (bias) expect_shape(*bias, {cout}, "bias");
  new (self) i8::PreparedInt8Conv(wq.data(), cout, wq.shape(1), wq.shape(2), wq.shape(3),
                                  out_scale.data(), bias ? bias->data() : nullptr, act_scale,
                                  zero_point, act_max);
}

// A fused max pool: (kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode), or none.
using PoolArgs = std::optional<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, bool>>;

template <class T>
i8::ConvGeometry geometry(const In<T, 4>& x, const i8::PreparedInt8Conv& w, const Out<float, 4>& y,
                          int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                          bool nchw, const PoolArgs& pool, onebit::floatops::PoolGeometry& p) {
  i8::ConvGeometry g;
  g.n = x.shape(0);
  g.h = x.shape(nchw ? 2 : 1), g.w = x.shape(nchw ? 3 : 2), g.c = x.shape(nchw ? 1 : 3);
  g.cout = w.cout(), g.kh = w.kh(), g.kw = w.kw();
  g.sh = sh, g.sw = sw, g.ph = ph, g.pw = pw, g.dh = dh, g.dw = dw;
  if (w.cin() != g.c)
    throw std::invalid_argument("the filters have " + std::to_string(w.cin()) +
                                " input channels but x has " + std::to_string(g.c));
  i8::check_conv(w, g);  // every size below 2^40, so the shapes below cannot overflow
  if (!pool) {
    expect_shape(y, {g.n, g.oh(), g.ow(), g.cout}, "y");
    return g;
  }
  p.n = g.n, p.h = g.oh(), p.w = g.ow(), p.c = g.cout;
  std::tie(p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, p.ceil_mode) = *pool;
  onebit::floatops::check_pool_geometry(p);
  expect_shape(y, {p.n, p.oh(), p.ow(), p.c}, "y");
  return g;
}

}  // namespace

void register_int8conv(nb::module_& m) {
  nb::class_<i8::PreparedInt8Conv>(m, "PreparedInt8Conv",
                                   "Int8 conv filters prepared once for int8_conv2d (see "
                                   "onebit.kernels.prepare_conv2d_int8).")
      .def("__init__", &prepare, nb::arg("wq"), nb::arg("out_scale"), nb::arg("bias").none(),
           nb::arg("act_scale"), nb::arg("zero_point"), nb::arg("act_max"))
      .def_prop_ro("shape",
                   [](const i8::PreparedInt8Conv& p) {
                     return nb::make_tuple(p.cout(), p.cin(), p.kh(), p.kw());
                   })
      .def_prop_ro("pairs", &i8::PreparedInt8Conv::pairs)
      .def_prop_ro("act_scale", &i8::PreparedInt8Conv::act_scale)
      .def_prop_ro("zero_point", &i8::PreparedInt8Conv::zero_point)
      .def_prop_ro("act_max", &i8::PreparedInt8Conv::act_max);
  m.def(
      "int8_conv2d",
      [](In<float, 4> x, const i8::PreparedInt8Conv& w, Out<float, 4> y, int64_t sh, int64_t sw,
         int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool relu, int num_threads, bool nchw,
         const PoolArgs& maxpool) {
        onebit::floatops::PoolGeometry p;
        const i8::ConvGeometry g = geometry(x, w, y, sh, sw, ph, pw, dh, dw, nchw, maxpool, p);
        nb::gil_scoped_release release;
        i8::conv2d(x.data(), w, y.data(), g, relu, num_threads, {nchw, maxpool ? &p : nullptr});
      },
      nb::arg("x"), nb::arg("w"), nb::arg("y"), nb::arg("stride_h"), nb::arg("stride_w"),
      nb::arg("pad_h"), nb::arg("pad_w"), nb::arg("dilation_h"), nb::arg("dilation_w"),
      nb::arg("relu"), nb::arg("num_threads"), nb::arg("nchw") = false,
      nb::arg("maxpool").none() = nb::none(),
      "Int8 conv2d of float32 NHWC (or NCHW) input, optionally max pooled (see onebit.kernels.conv2d_int8; writes y).");
  m.def(
      "int8_conv2d_u8",
      [](In<uint8_t, 4> x, const i8::PreparedInt8Conv& w, Out<float, 4> y, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool relu, int num_threads,
         bool nchw, const PoolArgs& maxpool) {
        onebit::floatops::PoolGeometry p;
        const i8::ConvGeometry g = geometry(x, w, y, sh, sw, ph, pw, dh, dw, nchw, maxpool, p);
        nb::gil_scoped_release release;
        i8::conv2d_u8(x.data(), w, y.data(), g, relu, num_threads, {nchw, maxpool ? &p : nullptr});
      },
      nb::arg("x"), nb::arg("w"), nb::arg("y"), nb::arg("stride_h"), nb::arg("stride_w"),
      nb::arg("pad_h"), nb::arg("pad_w"), nb::arg("dilation_h"), nb::arg("dilation_w"),
      nb::arg("relu"), nb::arg("num_threads"), nb::arg("nchw") = false,
      nb::arg("maxpool").none() = nb::none(),
      "Int8 conv2d of quantized uint8 NHWC (or NCHW) input, optionally max pooled (see onebit.kernels.conv2d_int8; writes y).");
  m.def(
      "int8_quantize",
      [](In<float, 1> x, Out<uint8_t, 1> q, float scale, int zero_point, int act_max) {
        expect_shape(q, {static_cast<int64_t>(x.shape(0))}, "q");
        nb::gil_scoped_release release;
        i8::quantize(x.data(), q.data(), static_cast<int64_t>(x.shape(0)), scale, zero_point,
                     act_max);
      },
      nb::arg("x"), nb::arg("q"), nb::arg("scale"), nb::arg("zero_point"), nb::arg("act_max"),
      "The int8 conv's activation quantizer (see onebit.kernels.quantize_activations; writes q).");
}
