#include "common/parallel.h"

#include <atomic>

namespace onebit {
namespace {
std::atomic<int> g_default_threads{0};
}

int default_num_threads() {
  const int set = g_default_threads.load(std::memory_order_relaxed);
  if (set > 0) return set;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void set_default_num_threads(int n) { g_default_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

}  // namespace onebit
