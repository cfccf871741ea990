// parallel_for / parallel_for_dynamic: every index covered exactly once, chunks contiguous,
// nested calls, exceptions rethrown in the caller, and several callers at once.
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/parallel.h"
#include "test_util.h"

using namespace onebit;

namespace {

template <class Run>
void check_cover(Run run, int64_t n, int threads, const char* name) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  for (auto& h : hits) h.store(0);
  run(n, threads, [&](int64_t b, int64_t e) {
    CHECK(0 <= b && b < e && e <= n, "%s: bad chunk [%lld, %lld) of %lld", name, (long long)b, (long long)e,
          (long long)n);
    for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) CHECK(hits[i].load() == 1, "%s: index %lld hit %d times", name, (long long)i, hits[i].load());
}

}  // namespace

int main() {
  auto plain = [](int64_t n, int t, auto f) { parallel_for(n, t, 1, f); };
  auto dynamic = [](int64_t n, int t, auto f) { parallel_for_dynamic(n, t, 1, f); };
  for (int64_t n : {1, 2, 3, 7, 64, 1000})
    for (int t : {1, 2, 3, 8}) {
      check_cover(plain, n, t, "parallel_for");
      check_cover(dynamic, n, t, "parallel_for_dynamic");
    }

  // the worker spin setting: every value covers every range; the getter reports it
  for (int64_t us : {int64_t{0}, int64_t{300}, int64_t{-1}}) {
    set_worker_spin_us(us);
    CHECK(worker_spin_us() == us, "worker_spin_us() %lld after setting %lld", (long long)worker_spin_us(),
          (long long)us);
    for (int64_t n : {3, 1000}) {
      check_cover(plain, n, 3, "parallel_for (spin set)");
      check_cover(dynamic, n, 3, "parallel_for_dynamic (spin set)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // workers asleep or spinning
    check_cover(dynamic, 1000, 3, "parallel_for_dynamic after a pause");
  }
  set_worker_spin_us(-7);
  CHECK(worker_spin_us() == -1, "a negative spin is the default (-1), got %lld", (long long)worker_spin_us());

  // at most one chunk per thread for parallel_for
  std::atomic<int> chunks{0};
  parallel_for(100, 3, 1, [&](int64_t, int64_t) { chunks.fetch_add(1); });
  CHECK(chunks.load() == 3, "parallel_for made %d chunks for 3 threads", chunks.load());

  // nested: the inner call runs and covers its range
  std::atomic<int64_t> total{0};
  parallel_for(8, 4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for_dynamic(10, 4, 1, [&](int64_t ib, int64_t ie) { total.fetch_add(ie - ib); });
  });
  CHECK(total.load() == 80, "nested total %lld != 80", (long long)total.load());

  // an exception in a chunk reaches the caller after every chunk ran
  std::atomic<int> ran{0};
  bool caught = false;
  try {
    parallel_for_dynamic(16, 4, 1, [&](int64_t b, int64_t) {
      ran.fetch_add(1);
      if (b == 4) throw std::runtime_error("chunk failed");
    });
  } catch (const std::runtime_error&) {
    caught = true;
  }
  CHECK(caught, "the exception was not rethrown");
  CHECK(ran.load() == 16, "only %d of 16 chunks ran", ran.load());

  // several callers at once (the pool serves one, the others bring their own threads)
  std::vector<std::thread> callers;
  std::atomic<int> bad{0};
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) {
        std::atomic<int64_t> sum{0};
        parallel_for_dynamic(257, 3, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
        });
        if (sum.load() != 257 * 256 / 2) bad.fetch_add(1);
      }
    });
  for (auto& th : callers) th.join();
  CHECK(bad.load() == 0, "%d concurrent calls summed wrongly", bad.load());
  return onebit_test::finish("test_parallel");
}
