#include "common/parallel.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <new>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define ONEBIT_HAS_ATFORK 1
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace onebit {
namespace {

std::atomic<int> g_default_threads{0};

int64_t spin_from_env() {
  const char* e = std::getenv("ONEBIT_WORKER_SPIN_US");
  if (e == nullptr || *e == '\0') return -1;
  char* end = nullptr;
  const long long v = std::strtoll(e, &end, 10);
  return (end != nullptr && *end == '\0' && v >= 0) ? static_cast<int64_t>(v) : -1;
}
std::atomic<int64_t> g_spin_us{spin_from_env()};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Chunks of one parallel_for call. Workers and the caller take chunk indices from `next`.
struct Job {
  void (*fn)(void*, int) = nullptr;
  void* ctx = nullptr;
  int chunks = 0;
  std::atomic<int> next{0};
  std::atomic<int> remaining{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  void run_available() {
    for (int t = next.fetch_add(1, std::memory_order_relaxed); t < chunks;
         t = next.fetch_add(1, std::memory_order_relaxed)) {
      try {
        fn(ctx, t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
      remaining.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
};

thread_local bool t_inside_chunk = false;

class Pool {
 public:
  // Runs the job with up to `helpers` pool workers. Returns false (nothing run) if the pool is
  // busy with another caller's job.
  bool try_run(Job& job, int helpers) {
    std::unique_lock<std::mutex> submit(submit_mutex_, std::try_to_lock);
    if (!submit.owns_lock()) return false;
    grow(helpers);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      wanted_ = helpers;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    t_inside_chunk = true;
    job.run_available();
    t_inside_chunk = false;
    // Wait for the chunks that workers took; withdraw the job (under the lock, so no worker can
    // pick it up afterwards), then wait for every worker that did to let go of it.
    for (int spin = 0; job.remaining.load(std::memory_order_acquire) > 0; ++spin)
      if (spin > 2000) std::this_thread::yield(); else cpu_relax();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = nullptr;
    }
    for (int spin = 0; active_.load(std::memory_order_acquire) > 0; ++spin)
      if (spin > 2000) std::this_thread::yield(); else cpu_relax();
    return true;
  }

 private:
  void grow(int helpers) {
    while (static_cast<int>(workers_.size()) < helpers) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { loop(index); });
      workers_.back().detach();  // the pool lives as long as the process (see instance())
    }
  }

  void loop(int index) {
    t_inside_chunk = true;  // a parallel_for inside a chunk runs serially
    uint64_t seen = 0;
    for (;;) {
      // Spin for the next job (back-to-back kernel calls), then sleep: kDefaultSpins pauses, or
      // for worker_spin_us() microseconds where set.
      uint64_t gen = generation_.load(std::memory_order_acquire);
      const int64_t spin_us = g_spin_us.load(std::memory_order_relaxed);
      if (spin_us < 0) {
        for (int spin = 0; gen == seen && spin < kDefaultSpins; ++spin) {
          cpu_relax();
          gen = generation_.load(std::memory_order_acquire);
        }
      } else {
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
        while (gen == seen) {
          for (int k = 0; k < 64 && gen == seen; ++k) {
            cpu_relax();
            gen = generation_.load(std::memory_order_acquire);
          }
          if (std::chrono::steady_clock::now() >= until) break;
        }
      }
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      Job* job = job_;
      if (job == nullptr || index >= wanted_) continue;
      active_.fetch_add(1, std::memory_order_acq_rel);
      lock.unlock();
      job->run_available();
      active_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::mutex submit_mutex_;  // one job at a time
  std::mutex mutex_;         // guards job_ / wanted_ with the condition variable
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};
  Job* job_ = nullptr;
  int wanted_ = 0;
  std::vector<std::thread> workers_;
};

std::atomic<Pool*> g_pool{nullptr};
std::mutex g_pool_create;

#if defined(ONEBIT_HAS_ATFORK)
// The child of a fork has none of the parent's worker threads: forget the pool (it is leaked on
// purpose; its mutexes may be held by threads that no longer exist) and start a new one on use.
void forget_pool_in_child() {
  g_pool.store(nullptr);
  new (&g_pool_create) std::mutex();
}
#endif

Pool& instance() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  std::lock_guard<std::mutex> lock(g_pool_create);
  p = g_pool.load(std::memory_order_acquire);
  if (p == nullptr) {
#if defined(ONEBIT_HAS_ATFORK)
    static const bool registered = (pthread_atfork(nullptr, nullptr, forget_pool_in_child), true);
    (void)registered;
#endif
    p = new Pool();  // never deleted: workers may still sleep in it at exit
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

}  // namespace

int default_num_threads() {
  const int set = g_default_threads.load(std::memory_order_relaxed);
  if (set > 0) return set;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void set_default_num_threads(int n) { g_default_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

void set_worker_spin_us(int64_t us) { g_spin_us.store(us < 0 ? -1 : us, std::memory_order_relaxed); }
int64_t worker_spin_us() { return g_spin_us.load(std::memory_order_relaxed); }

namespace detail {

void run_chunks(int chunks, int threads, void (*fn)(void*, int), void* ctx) {
  Job job;
  job.fn = fn;
  job.ctx = ctx;
  job.chunks = chunks;
  job.remaining.store(chunks);
  if (t_inside_chunk) {
    job.run_available();  // nested: serially on this thread
  } else if (!instance().try_run(job, threads - 1)) {
    // The pool is busy with another caller: use threads of our own for this call.
    std::vector<std::thread> own;
    own.reserve(static_cast<size_t>(threads - 1));
    for (int t = 1; t < threads; ++t)
      own.emplace_back([&job] {
        t_inside_chunk = true;
        job.run_available();
      });
    t_inside_chunk = true;
    job.run_available();
    t_inside_chunk = false;
    for (auto& th : own) th.join();
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace detail
}  // namespace onebit
