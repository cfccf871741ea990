// The plain binary conv2d that defines the result of every optimized variant: direct loops over
// output positions, channels and taps, one popcount per word, padding handled tap by tap.
#pragma once
#include <cstdint>

#include "bconv2d/params.h"
#include "bgemm/output_transform.h"

namespace onebit {

// acc[n, oy, ox, co] as defined in params.h, then the output transform t with rows = output
// pixels in NHWC order (n, oy, ox) and channels = out_channels.
void bconv2d_reference(const uint32_t* x, const uint32_t* w, const BConv2DShape& s,
                       const OutputTransform& t);

}  // namespace onebit
