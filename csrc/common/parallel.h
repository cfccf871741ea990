// Minimal fork-join parallel_for: torch-free and OpenMP-free, so that a torch program calling
// onebit never gets a second OpenMP runtime. The caller picks num_threads (<= 0 means onebit's
// default, see set_default_num_threads / default_num_threads).
//
// Work runs on a small persistent pool of worker threads (created on first use, grown on demand;
// an idle worker spins briefly, then sleeps), so a call costs microseconds rather than a thread
// start per chunk. The calling thread runs a share of the chunks itself. A parallel_for issued
// from inside a chunk, or while another thread's parallel_for holds the pool, still completes
// (the former serially, the latter on threads of its own). An exception thrown by a chunk is
// rethrown in the caller once every chunk has finished. After fork() the child starts a new pool.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace onebit {

int default_num_threads();          // all cores unless set_default_num_threads() said otherwise
constexpr int kMaxThreads = 256;    // larger requests are capped
void set_default_num_threads(int);  // <= 0 restores "all cores"

// How long an idle worker keeps spinning for the next job before it sleeps, in microseconds;
// < 0: the default, a brief spin (kDefaultSpins pause instructions, tens of microseconds), enough
// for the back-to-back kernel calls of one model call. A longer spin keeps the workers awake
// between calls that come after pauses (waking a sleeping thread can take milliseconds on a
// virtual machine), at the price of a busy core while it lasts. The environment variable
// ONEBIT_WORKER_SPIN_US sets the initial value.
void set_worker_spin_us(int64_t us);
int64_t worker_spin_us();
constexpr int kDefaultSpins = 20000;

namespace detail {
// Runs fn(ctx, t) for t in [0, chunks) on up to `threads` threads (the pool's and the calling
// one), each taking the next chunk when free; returns when all ran.
void run_chunks(int chunks, int threads, void (*fn)(void* ctx, int t), void* ctx);
}  // namespace detail

namespace detail {
template <class F>
void split_and_run(int64_t n, int nt, int chunks, F& f) {
  struct Ctx {
    F* f;
    int64_t base, extra;
  } ctx{&f, n / chunks, n % chunks};
  run_chunks(
      chunks, nt,
      [](void* p, int t) {
        const Ctx& c = *static_cast<Ctx*>(p);
        const int64_t begin = t * c.base + std::min<int64_t>(t, c.extra);
        const int64_t end = begin + c.base + (t < c.extra ? 1 : 0);
        (*c.f)(begin, end);
      },
      &ctx);
}
}  // namespace detail

// Runs f(begin, end) on disjoint chunks covering [0, n). Chunks are contiguous and of (nearly)
// equal size, at most one per thread; grain is the smallest chunk worth a thread.
template <class F>
void parallel_for(int64_t n, int num_threads, int64_t grain, F&& f) {
  if (n <= 0) return;
  int nt = std::min(num_threads > 0 ? num_threads : default_num_threads(), kMaxThreads);
  if (grain < 1) grain = 1;
  nt = static_cast<int>(std::min<int64_t>(nt, (n + grain - 1) / grain));
  if (nt <= 1) {
    f(int64_t{0}, n);
    return;
  }
  detail::split_and_run(n, nt, nt, f);
}

// Like parallel_for, but cuts [0, n) into up to 4 chunks per thread (each >= grain) that the
// threads take in order as they become free: a thread that starts late (a busy machine, a worker
// waking up) then costs a quarter of its share instead of all of it. For work whose chunks are
// independent and cheap to start (the binary kernels' task lists).
template <class F>
void parallel_for_dynamic(int64_t n, int num_threads, int64_t grain, F&& f) {
  if (n <= 0) return;
  int nt = std::min(num_threads > 0 ? num_threads : default_num_threads(), kMaxThreads);
  if (grain < 1) grain = 1;
  const int64_t max_chunks = (n + grain - 1) / grain;
  nt = static_cast<int>(std::min<int64_t>(nt, max_chunks));
  if (nt <= 1) {
    f(int64_t{0}, n);
    return;
  }
  detail::split_and_run(n, nt, static_cast<int>(std::min<int64_t>(4 * int64_t{nt}, max_chunks)), f);
}

}  // namespace onebit
