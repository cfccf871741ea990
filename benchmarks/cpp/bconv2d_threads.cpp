// The binary conv2d kernel alone (no Python, no PyTorch) at 1 and 2 threads, on the 3x3 layers of
// Bi-Real-18 / ResNet-18 at batch 1: how far a second thread speeds up the kernel itself.
//
//   make bench-cpp            (builds build-bench/bconv2d_threads and runs it)
//   build-bench/bconv2d_threads [seconds per sample, default 0.2] [samples, default 15]
//
// Each sample runs one thread count back to back for the given time; the thread counts take turns
// sample by sample, so a busy moment of a shared machine hits both alike. Filters are prepared once
// (as an inference runtime does), input packed, output float32 with a per-channel multiplier and
// bias. Printed per shape: median and best time per call at 1 and 2 threads, and their ratios.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bconv2d/bconv2d.h"
#include "bconv2d/prepared.h"
#include "dispatch.h"

namespace {

struct Shape {
  const char* name;
  int hw, cin, cout, stride;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace onebit;
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.2;
  const int samples = argc > 2 ? std::atoi(argv[2]) : 15;
  const Shape shapes[] = {{"56x56x64 3x3 s1", 56, 64, 64, 1},     {"28x28x128 3x3 s1", 28, 128, 128, 1},
                          {"14x14x256 3x3 s1", 14, 256, 256, 1},  {"7x7x512 3x3 s1", 7, 512, 512, 1},
                          {"56x56x64 3x3 s2", 56, 64, 128, 2},    {"28x28x128 3x3 s2", 28, 128, 256, 2},
                          {"14x14x256 3x3 s2", 14, 256, 512, 2}};
  std::printf("onebit bconv2d kernel (%s), %d samples of %.2f s per thread count\n",
              isa_name(active_isa()), samples, seconds);
  std::printf("%-18s %10s %10s %10s %10s %9s %9s\n", "shape", "1t med ms", "1t best", "2t med ms",
              "2t best", "med 1/2", "best 1/2");
  std::mt19937 rng(1);
  for (const Shape& sh : shapes) {
    BConv2DShape s;
    s.in_h = s.in_w = sh.hw;
    s.in_channels = sh.cin;
    s.out_channels = sh.cout;
    s.kernel_h = s.kernel_w = 3;
    s.stride_h = s.stride_w = sh.stride;
    s.pad_top = s.pad_bottom = s.pad_left = s.pad_right = 1;
    const int64_t cw = s.in_words();
    std::vector<uint32_t> x(static_cast<size_t>(sh.hw * sh.hw * cw)), w(static_cast<size_t>(sh.cout * 9 * cw));
    for (auto& v : x) v = rng();
    for (auto& v : w) v = rng();
    const PreparedFilters filters(w.data(), sh.cout, 3, 3, sh.cin);
    std::vector<float> out(static_cast<size_t>(s.out_pixels() * sh.cout)), mult(sh.cout, 0.01f),
        bias(sh.cout, 0.5f);
    OutputTransform t;
    t.kind = OutputKind::Float;
    t.channels = sh.cout;
    t.multiplier = mult.data();
    t.bias = bias.data();
    t.out = out.data();
    std::vector<double> per_call[2];
    for (int rep = 0; rep < samples; ++rep) {
      for (int k = 0; k < 2; ++k) {
        const int threads = (rep + k) % 2 + 1;
        bconv2d(x.data(), filters, s, t, threads);  // untimed: wakes the pool
        int calls = 0;
        const auto t0 = std::chrono::steady_clock::now();
        double elapsed = 0;
        while (elapsed < seconds) {
          bconv2d(x.data(), filters, s, t, threads);
          ++calls;
          elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        per_call[threads - 1].push_back(elapsed / calls);
      }
    }
    const double m1 = median(per_call[0]), m2 = median(per_call[1]);
    const double b1 = *std::min_element(per_call[0].begin(), per_call[0].end());
    const double b2 = *std::min_element(per_call[1].begin(), per_call[1].end());
    std::printf("%-18s %10.3f %10.3f %10.3f %10.3f %8.2fx %8.2fx\n", sh.name, m1 * 1e3, b1 * 1e3,
                m2 * 1e3, b2 * 1e3, m1 / m2, b1 / b2);
  }
  return 0;
}
