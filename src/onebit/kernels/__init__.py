"""NumPy-facing wrappers around onebit's compiled kernels (torch-free).

Arrays are validated here (dtype, contiguity, shapes) so that the C++ side only ever sees
well-formed buffers. ``onebit.kernels.active_isa()`` tells which kernel family runs; the
environment variable ``ONEBIT_KERNELS=reference`` forces the plain reference kernels.

Binary kernels (bit 1 = -1, LSB first in uint32 words, tail bits 0; see ``bitpack`` and
``binary``): ``pack_bits`` / ``unpack_bits``, ``pack_conv_weight``, ``pack_nchw`` /
``unpack_nhwc``, ``bgemm``, ``bconv2d`` (fused int32 / float / packed-bits outputs),
``prepare_conv_weight`` / ``prepare_gemm_weight`` (weights packed once for repeated calls) and
``sign_thresholds`` (BatchNorm + sign folded into exact thresholds).
"""

from __future__ import annotations

from onebit.kernels._dispatch import (
    active_isa,
    cpu_features,
    default_num_threads,
    isa_available,
    set_default_num_threads,
    set_worker_spin_us,
    use_isa,
    worker_spin_us,
)
from onebit.kernels.adder import adder_conv2d_f32, adder_int8, adder_output_shape
from onebit.kernels.binary import (
    PreparedConvWeight,
    PreparedGemmWeight,
    bconv2d,
    bconv2d_output_shape,
    bgemm,
    conv_padding,
    prepare_conv_weight,
    prepare_gemm_weight,
    sign_thresholds,
)
from onebit.kernels.bitpack import (
    pack_bits,
    pack_conv_weight,
    pack_nchw,
    packed_words,
    unpack_bits,
    unpack_nhwc,
)
from onebit.kernels.floatops import (
    MaxPoolWindow,
    PreparedFloatConvWeight,
    avgpool2d_f32,
    conv2d_f32,
    maxpool2d_f32,
    pool_output_shape,
    prepare_float_conv_weight,
)
from onebit.kernels.int8conv import (
    ActivationQuant,
    PreparedInt8ConvWeight,
    calibrate_activations,
    conv2d_int8,
    prepare_conv2d_int8,
    quantize_activations,
    quantize_conv_weight,
)

__all__ = [
    "ActivationQuant",
    "MaxPoolWindow",
    "PreparedConvWeight",
    "PreparedFloatConvWeight",
    "PreparedGemmWeight",
    "PreparedInt8ConvWeight",
    "active_isa",
    "adder_conv2d_f32",
    "adder_int8",
    "adder_output_shape",
    "avgpool2d_f32",
    "bconv2d",
    "bconv2d_output_shape",
    "bgemm",
    "calibrate_activations",
    "conv2d_f32",
    "conv2d_int8",
    "conv_padding",
    "cpu_features",
    "default_num_threads",
    "isa_available",
    "maxpool2d_f32",
    "pack_bits",
    "pack_conv_weight",
    "pack_nchw",
    "packed_words",
    "pool_output_shape",
    "prepare_conv2d_int8",
    "prepare_conv_weight",
    "prepare_float_conv_weight",
    "prepare_gemm_weight",
    "quantize_activations",
    "quantize_conv_weight",
    "set_default_num_threads",
    "set_worker_spin_us",
    "sign_thresholds",
    "unpack_bits",
    "unpack_nhwc",
    "use_isa",
    "worker_spin_us",
]
