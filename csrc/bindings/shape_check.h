// Shape checks shared by the nanobind bindings.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace onebit::bindings {

// Throws std::invalid_argument naming `name` unless a's leading dimensions equal `shape`.
template <class A>
void expect_shape(const A& a, std::initializer_list<int64_t> shape, const char* name) {
  size_t d = 0;
  for (int64_t s : shape) {
    if (static_cast<int64_t>(a.shape(d)) != s)
      throw std::invalid_argument(std::string(name) + " has the wrong shape (dimension " +
                                  std::to_string(d) + " is " + std::to_string(a.shape(d)) +
                                  ", expected " + std::to_string(s) + ")");
    ++d;
  }
}

}  // namespace onebit::bindings
