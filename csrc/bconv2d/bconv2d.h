// Binary 2-D convolution over packed NHWC activations (geometry and semantics in params.h),
// followed by an output transform (bgemm/output_transform.h) with rows = output pixels in NHWC
// order and channels = out_channels.
#pragma once
#include <cstdint>

#include "bconv2d/params.h"
#include "bgemm/microkernel.h"
#include "bgemm/output_transform.h"

namespace onebit {

class PreparedFilters;

// Validates s (std::invalid_argument), then runs the variant of the active ISA on num_threads
// threads (<= 0: the default count). x: [batch, in_h, in_w, in_words], w: [out_channels,
// kernel_h, kernel_w, in_words], both uint32 with zero tail bits.
void bconv2d(const uint32_t* x, const uint32_t* w, const BConv2DShape& s, const OutputTransform& t,
             int num_threads);

// The same with filters prepared beforehand (bconv2d/prepared.h); their shape must match s
// (std::invalid_argument otherwise). Where the active ISA is not the one they were prepared for,
// their plain copy takes the path above.
void bconv2d(const uint32_t* x, const PreparedFilters& w, const BConv2DShape& s,
             const OutputTransform& t, int num_threads);

// The optimized path for one popcount kernel: w_panel holds the filters packed by uk
// (pack_b_panel, rows padded to uk.nr) and tap_sums their per-tap sums (zero_padding.h).
void bconv2d_optimized(const PopcountKernel& uk, const uint32_t* x, const uint8_t* w_panel,
                       const int32_t* tap_sums, const BConv2DShape& s, const OutputTransform& t,
                       int num_threads);

}  // namespace onebit
