#include "bconv2d/prepared.h"

#include <chrono>
#include <limits>
#include <stdexcept>

#include "bconv2d/bconv2d.h"
#include "bconv2d/zero_padding.h"
#include "bitpack/bitpack.h"

namespace onebit {

PreparedFilters::PreparedFilters(const uint32_t* w, int64_t out_channels, int64_t kernel_h,
                                 int64_t kernel_w, int64_t in_channels)
    : isa_(active_isa()),
      out_channels_(out_channels),
      kernel_h_(kernel_h),
      kernel_w_(kernel_w),
      in_channels_(in_channels) {
  if (out_channels < 1 || kernel_h < 1 || kernel_w < 1 || in_channels < 1)
    throw std::invalid_argument("PreparedFilters: every dimension must be >= 1");
  const int64_t taps = kernel_h * kernel_w, kwords = taps * words_for(in_channels);
  words_.assign(w, w + out_channels * kwords);
  const PopcountKernel* kernel = popcount_kernel(isa_, kwords);
  if (kernel == nullptr) return;
  pack(kernel);
  tap_sums_ = ZeroPaddingCorrection::tap_sums(words_.data(), out_channels, taps, in_channels,
                                              kernel_->row_popcounts);
}

void PreparedFilters::pack(const PopcountKernel* kernel) {
  const int64_t kwords = kernel_h_ * kernel_w_ * words_for(in_channels_);
  const int64_t kp = panel_kp(*kernel, kwords), n_pad = round_up(out_channels_, kernel->nr);
  uint8_t* dst = panel_.get(static_cast<size_t>(n_pad * panel_row_bytes(*kernel, kp)));
  pack_b_panel(*kernel, words_.data(), kwords, kwords, out_channels_, n_pad, kp, dst);
  kernel_ = kernel;
}

std::vector<std::string> PreparedFilters::candidates() const {
  std::vector<std::string> names;
  for (const PopcountKernel* k :
       popcount_kernel_candidates(isa_, kernel_h_ * kernel_w_ * words_for(in_channels_)))
    names.emplace_back(k->name);
  return names;
}

void PreparedFilters::use_kernel(const std::string& name) {
  for (const PopcountKernel* k :
       popcount_kernel_candidates(isa_, kernel_h_ * kernel_w_ * words_for(in_channels_))) {
    if (name == k->name) {
      if (k != kernel_) pack(k);
      choice_ = "forced";
      return;
    }
  }
  throw std::invalid_argument("PreparedFilters: kernel '" + name +
                              "' cannot run these filters on this CPU (see candidates())");
}

std::vector<std::pair<std::string, double>> PreparedFilters::tune(const BConv2DShape& s,
                                                                  int num_threads, int reps) {
  s.validate();
  if (s.out_channels != out_channels_ || s.kernel_h != kernel_h_ || s.kernel_w != kernel_w_ ||
      s.in_channels != in_channels_)
    throw std::invalid_argument("PreparedFilters::tune: the shape does not match the filters");
  if (reps < 1) throw std::invalid_argument("PreparedFilters::tune: reps must be >= 1");
  const auto cands =
      popcount_kernel_candidates(isa_, kernel_h_ * kernel_w_ * words_for(in_channels_));
  std::vector<std::pair<std::string, double>> times;
  if (cands.size() < 2) {
    for (const PopcountKernel* k : cands) times.emplace_back(k->name, 0.0);
    return times;
  }
  // A zero input and an int32 output of the layer's size (the transform's cost is the same for
  // every candidate).
  std::vector<uint32_t> x(static_cast<size_t>(s.batch * s.in_h * s.in_w * s.in_words()), 0u);
  std::vector<int32_t> out(static_cast<size_t>(s.out_pixels() * s.out_channels));
  OutputTransform t;
  t.kind = OutputKind::Int32;
  t.channels = s.out_channels;
  t.out = out.data();
  const PopcountKernel* best = nullptr;
  double best_s = std::numeric_limits<double>::infinity();
  for (const PopcountKernel* k : cands) {
    pack(k);
    double fastest = std::numeric_limits<double>::infinity();
    for (int r = 0; r <= reps; ++r) {  // call 0 warms caches and the thread pool
      const auto t0 = std::chrono::steady_clock::now();
      bconv2d_optimized(*k, x.data(), panel(), tap_sums(), s, t, num_threads);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0 && dt < fastest) fastest = dt;
    }
    times.emplace_back(k->name, fastest);
    if (fastest < best_s) {
      best_s = fastest;
      best = k;
    }
  }
  if (best != kernel_) pack(best);
  choice_ = "measured";
  return times;
}

}  // namespace onebit
