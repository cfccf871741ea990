// A 64-byte aligned, uninitialised scratch array owned by one thread of a kernel driver.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace onebit::adder {

template <class T>
class ScratchBuffer {
 public:
  explicit ScratchBuffer(std::size_t count) {
    const std::size_t bytes = ((count * sizeof(T) + 63) / 64) * 64;
    data_ = static_cast<T*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~ScratchBuffer() { std::free(data_); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  T* data() { return data_; }

 private:
  T* data_ = nullptr;
};

}  // namespace onebit::adder
