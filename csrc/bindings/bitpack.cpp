#include <nanobind/nanobind.h>

namespace nb = nanobind;

void register_bitpack(nb::module_& m) { (void)m; }
