// Plain reference kernels for AdderNet: the formulas of adder.h as direct loops (double
// accumulators for the float op, int64 for the SAD), no tiling, no im2col. The optimized kernels
// are tested against these; ONEBIT_KERNELS=reference selects them at run time.
#pragma once
#include <cstdint>

#include "adder/adder.h"

namespace onebit::adder::ref {

void conv2d_forward(const float* x, const float* w, float* y, const ConvGeometry& g,
                    int num_threads);
void conv2d_backward(const float* x, const float* w, const float* gy, float* dx, float* dw,
                     const ConvGeometry& g, int num_threads);
void int8_conv2d(const int8_t* x, const int8_t* w, int8_t pad_value, const float* multiplier,
                 const float* bias, float* y, const ConvGeometry& g, int num_threads);

}  // namespace onebit::adder::ref
