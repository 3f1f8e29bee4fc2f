"""NVFP4 numerics in plain PyTorch: the reference for every kernel in this package."""

from .activations import dequantize_activation, dequantize_activation_unscaled, quantize_activation
from .formats import (
    E2M1_VALUES,
    FP4_FP8_RANGE,
    FP4_MAX,
    FP8_DTYPE,
    FP8_MAX,
    GROUP_SIZE,
    e2m1_decode,
    e2m1_encode,
    e2m1_table,
    pack_fp4,
    round_to_fp8_e4m3,
    unpack_fp4,
)
from .gemm import nvfp4_matmul_reference, scaled_matmul_reference, w4a16_matmul_reference
from .global_scales import activation_global_scale, global_scale_from_amax, weight_global_scale
from .weights import (
    check_global_scale,
    dequantize_weight,
    dequantize_weight_unscaled,
    quantize_weight,
    weight_block_scales,
)

__all__ = [
    "E2M1_VALUES",
    "FP4_FP8_RANGE",
    "FP4_MAX",
    "FP8_DTYPE",
    "FP8_MAX",
    "GROUP_SIZE",
    "e2m1_decode",
    "e2m1_encode",
    "e2m1_table",
    "pack_fp4",
    "unpack_fp4",
    "round_to_fp8_e4m3",
    "quantize_weight",
    "dequantize_weight",
    "dequantize_weight_unscaled",
    "weight_global_scale",
    "activation_global_scale",
    "global_scale_from_amax",
    "check_global_scale",
    "weight_block_scales",
    "quantize_activation",
    "dequantize_activation",
    "dequantize_activation_unscaled",
    "nvfp4_matmul_reference",
    "w4a16_matmul_reference",
    "scaled_matmul_reference",
]
