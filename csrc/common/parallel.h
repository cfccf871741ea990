// Minimal fork-join parallel_for over std::thread: torch-free and OpenMP-free, so that a torch
// program calling onebit never gets a second OpenMP runtime. The caller picks num_threads
// (<= 0 means onebit's default, see set_default_num_threads / default_num_threads).
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace onebit {

int default_num_threads();          // all cores unless set_default_num_threads() said otherwise
void set_default_num_threads(int);  // <= 0 restores "all cores"

// Runs f(begin, end) on disjoint chunks covering [0, n). Chunks are contiguous and of (nearly)
// equal size; the calling thread runs the first chunk. grain is the smallest chunk worth a thread.
template <class F>
void parallel_for(int64_t n, int num_threads, int64_t grain, F&& f) {
  if (n <= 0) return;
  int nt = num_threads > 0 ? num_threads : default_num_threads();
  if (grain < 1) grain = 1;
  nt = static_cast<int>(std::min<int64_t>(nt, (n + grain - 1) / grain));
  if (nt <= 1) {
    f(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(nt - 1);
  const int64_t base = n / nt, extra = n % nt;
  int64_t start = 0;
  int64_t first_end = 0;
  for (int t = 0; t < nt; ++t) {
    const int64_t len = base + (t < extra ? 1 : 0);
    const int64_t b = start, e = start + len;
    start = e;
    if (t == 0) {
      first_end = e;
      continue;
    }
    workers.emplace_back([&f, b, e] { f(b, e); });
  }
  f(int64_t{0}, first_end);
  for (auto& w : workers) w.join();
}

}  // namespace onebit
