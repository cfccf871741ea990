// onebit._kernels: bit packing. The Python wrappers (onebit/kernels/bitpack.py) validate dtypes,
// shapes and contiguity and allocate the outputs; these functions re-check the sizes they rely on.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <stdexcept>

#include "bitpack/bitpack.h"

namespace nb = nanobind;

namespace {

using FloatIn = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using FloatOut = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using WordsIn = nb::ndarray<const uint32_t, nb::c_contig, nb::device::cpu>;
using WordsOut = nb::ndarray<uint32_t, nb::c_contig, nb::device::cpu>;

void check_view(int64_t outer, int64_t n, int64_t inner) {
  if (outer < 1 || n < 1 || inner < 1) throw std::invalid_argument("pack/unpack: empty view");
}

void pack(FloatIn x, int64_t outer, int64_t n, int64_t inner, WordsOut out) {
  check_view(outer, n, inner);
  if (static_cast<int64_t>(x.size()) != outer * n * inner ||
      static_cast<int64_t>(out.size()) != outer * onebit::words_for(n) * inner)
    throw std::invalid_argument("pack_bits: array sizes do not match the [outer, n, inner] view");
  nb::gil_scoped_release release;
  onebit::pack_bits(x.data(), outer, n, inner, out.data());
}

void unpack(WordsIn packed, int64_t outer, int64_t n, int64_t inner, FloatOut out) {
  check_view(outer, n, inner);
  if (static_cast<int64_t>(packed.size()) != outer * onebit::words_for(n) * inner ||
      static_cast<int64_t>(out.size()) != outer * n * inner)
    throw std::invalid_argument("unpack_bits: array sizes do not match the [outer, n, inner] view");
  nb::gil_scoped_release release;
  onebit::unpack_bits(packed.data(), outer, n, inner, out.data());
}

}  // namespace

void register_bitpack(nb::module_& m) {
  m.def("pack_bits", &pack, nb::arg("x"), nb::arg("outer"), nb::arg("n"), nb::arg("inner"), nb::arg("out"),
        "Packs x viewed as [outer, n, inner] into out [outer, words(n), inner] (bit 1 iff x < 0).");
  m.def("unpack_bits", &unpack, nb::arg("packed"), nb::arg("outer"), nb::arg("n"), nb::arg("inner"),
        nb::arg("out"), "Unpacks [outer, words(n), inner] words into +/-1 floats [outer, n, inner].");
}
