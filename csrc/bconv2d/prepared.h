// Conv filters prepared once for the optimized binary conv: packed into the panel format of the
// kernel that the active ISA uses for them, with the per-tap sums of the zero-padding correction.
// An inference runtime prepares each layer's filters at load time and saves the per-call packing
// (for a 3x3x512 -> 512 layer, 590 KB of panel and 2.4 M bit counts per call).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bconv2d/params.h"
#include "bgemm/panel.h"
#include "dispatch.h"

namespace onebit {

class PreparedFilters {
 public:
  // w: packed filters [out_channels, kernel_h, kernel_w, words_for(in_channels)], tail bits 0.
  // Prepares for the ISA active now (a plain copy only, for the reference kernels), with the
  // kernel that popcount_kernel's rule picks for the filter length.
  PreparedFilters(const uint32_t* w, int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                  int64_t in_channels);

  // Repacks the panel for the candidate kernel of that name (see candidates()); throws
  // std::invalid_argument for a name that is not a candidate.
  void use_kernel(const std::string& name);
  // The kernels that can run these filters on this CPU (popcount_kernel_candidates), rule first.
  std::vector<std::string> candidates() const;
  // Times one convolution of geometry s (its filter fields must match) per candidate kernel on
  // num_threads threads: a zero input, int32 output, the best of `reps` calls after one warm-up
  // call. Keeps the fastest kernel (ties keep the earlier candidate) and returns every
  // candidate's seconds. One candidate: nothing is timed and its time is reported as 0. All
  // candidates give identical results; only speed differs.
  std::vector<std::pair<std::string, double>> tune(const BConv2DShape& s, int num_threads, int reps);
  // How the kernel was chosen: "rule", "measured" (tune) or "forced" (use_kernel).
  const char* choice() const { return choice_; }

  Isa isa() const { return isa_; }
  int64_t out_channels() const { return out_channels_; }
  int64_t kernel_h() const { return kernel_h_; }
  int64_t kernel_w() const { return kernel_w_; }
  int64_t in_channels() const { return in_channels_; }
  const uint32_t* words() const { return words_.data(); }  // the packed filters as given
  // The panel and its kernel (nullptr for the reference ISA); rows padded to the kernel's nr.
  const PopcountKernel* kernel() const { return kernel_; }
  const uint8_t* panel() const { return panel_.get(0); }
  const int32_t* tap_sums() const { return tap_sums_.data(); }  // [taps, out_channels]

 private:
  void pack(const PopcountKernel* kernel);

  Isa isa_;
  int64_t out_channels_, kernel_h_, kernel_w_, in_channels_;
  std::vector<uint32_t> words_;
  const PopcountKernel* kernel_ = nullptr;
  const char* choice_ = "rule";
  mutable AlignedBuffer panel_;
  std::vector<int32_t> tap_sums_;
};

}  // namespace onebit
