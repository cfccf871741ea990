// onebit._kernels: bit packing. The Python wrappers (onebit/kernels/bitpack.py) validate dtypes,
// shapes and contiguity and allocate the outputs; these functions re-check the sizes they rely on,
// with overflow-checked products (bindings/checked.h states the limits).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <stdexcept>
#include <utility>

#include "bindings/checked.h"
#include "bitpack/bitpack.h"

namespace nb = nanobind;

namespace {

using FloatIn = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
using FloatOut = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using WordsIn = nb::ndarray<const uint32_t, nb::c_contig, nb::device::cpu>;
using WordsOut = nb::ndarray<uint32_t, nb::c_contig, nb::device::cpu>;

using onebit::bindings::checked_dim;
using onebit::bindings::checked_product;
using onebit::bindings::kMaxElements;

// Checks the [outer, n, inner] view; returns {outer * n * inner, outer * words(n) * inner}.
std::pair<int64_t, int64_t> check_view(int64_t outer, int64_t n, int64_t inner) {
  checked_dim(outer, "outer", 1, kMaxElements);
  checked_dim(n, "n", 1, kMaxElements);
  checked_dim(inner, "inner", 1, kMaxElements);
  return {checked_product({outer, n, inner}, "the [outer, n, inner] view"),
          checked_product({outer, onebit::words_for(n), inner}, "the packed view")};
}

void pack(FloatIn x, int64_t outer, int64_t n, int64_t inner, WordsOut out) {
  const auto [values, words] = check_view(outer, n, inner);
  if (static_cast<int64_t>(x.size()) != values || static_cast<int64_t>(out.size()) != words)
    throw std::invalid_argument("pack_bits: array sizes do not match the [outer, n, inner] view");
  nb::gil_scoped_release release;
  onebit::pack_bits(x.data(), outer, n, inner, out.data());
}

void unpack(WordsIn packed, int64_t outer, int64_t n, int64_t inner, FloatOut out) {
  const auto [values, words] = check_view(outer, n, inner);
  if (static_cast<int64_t>(packed.size()) != words || static_cast<int64_t>(out.size()) != values)
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
