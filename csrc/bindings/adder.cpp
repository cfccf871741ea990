#include <nanobind/nanobind.h>

namespace nb = nanobind;

void register_adder(nb::module_& m) { (void)m; }
