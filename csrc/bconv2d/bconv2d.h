// Binary 2-D convolution over packed NHWC activations (geometry and semantics in params.h),
// followed by an output transform (bgemm/output_transform.h) with rows = output pixels in NHWC
// order and channels = out_channels.
#pragma once
#include <cstdint>

#include "bconv2d/params.h"
#include "bgemm/microkernel.h"
#include "bgemm/output_transform.h"

namespace onebit {

// Validates s (std::invalid_argument), then runs the variant of the active ISA on num_threads
// threads (<= 0: the default count). x: [batch, in_h, in_w, in_words], w: [out_channels,
// kernel_h, kernel_w, in_words], both uint32 with zero tail bits.
void bconv2d(const uint32_t* x, const uint32_t* w, const BConv2DShape& s, const OutputTransform& t,
             int num_threads);

// The optimized path for one popcount kernel (used by bconv2d() and by the tests).
void bconv2d_optimized(const PopcountKernel& uk, const uint32_t* x, const uint32_t* w,
                       const BConv2DShape& s, const OutputTransform& t, int num_threads);

}  // namespace onebit
