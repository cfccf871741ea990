// The extension onebit._kernels. Each topic registers its functions from its own file.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include "common/parallel.h"
#include "dispatch.h"

namespace nb = nanobind;

void register_bitpack(nb::module_& m);  // bindings/bitpack.cpp
void register_binary(nb::module_& m);   // bindings/binary.cpp: bgemm, bconv2d, output transforms
void register_adder(nb::module_& m);    // bindings/adder.cpp: adder training op, int8 SAD kernel
void register_floatops(nb::module_& m);  // bindings/floatops.cpp: float conv/pools for the runtime
void register_int8conv(nb::module_& m);  // bindings/int8conv.cpp: int8 direct conv (stems)

NB_MODULE(_kernels, m) {
  m.doc() = "onebit's compiled kernels (torch-free). Use onebit.kernels, not this module.";

  m.def("cpu_features", [] {
    const auto& f = onebit::cpu_features();
    nb::dict d;
    d["avx2"] = f.avx2;
    d["avx512_vpopcnt"] = f.avx512_vpopcnt;
    d["avx512_vnni"] = f.avx512_vnni;
    d["neon"] = f.neon;
    return d;
  });
  m.def("active_isa", [] { return std::string(onebit::isa_name(onebit::active_isa())); });
  m.def("set_isa", [](const std::string& name) { onebit::set_isa(onebit::isa_from_name(name)); },
        nb::arg("name"));
  m.def("reset_isa", [] { onebit::reset_isa(); });
  m.def("isa_available",
        [](const std::string& name) { return onebit::isa_available(onebit::isa_from_name(name)); },
        nb::arg("name"));
  m.def("default_num_threads", [] { return onebit::default_num_threads(); });
  m.def("set_default_num_threads", [](int n) { onebit::set_default_num_threads(n); }, nb::arg("n"));
  m.def("worker_spin_us", [] { return onebit::worker_spin_us(); });
  m.def("set_worker_spin_us", [](int64_t us) { onebit::set_worker_spin_us(us); }, nb::arg("us"));

  register_bitpack(m);
  register_binary(m);
  register_adder(m);
  register_floatops(m);
  register_int8conv(m);
}
