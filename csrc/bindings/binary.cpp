#include <nanobind/nanobind.h>

namespace nb = nanobind;

void register_binary(nb::module_& m) { (void)m; }
