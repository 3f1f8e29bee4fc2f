"""The ``reference`` backend: exact NVFP4 in plain PyTorch, on any device.

Dequantizes both operands *without* their global scales (exact values), multiplies in
float32 and applies ``alpha`` afterwards: the numbers an FP4 tensor core produces. It
dequantizes the weight on every call instead of caching a float copy, so memory stays at
4.5 bits per weight; it is meant for correctness, CPUs and small models, not speed.
"""

from __future__ import annotations

import torch

from ..numerics import quantize_activation
from ..numerics.gemm import nvfp4_matmul_reference, w4a16_matmul_reference
from .base import Backend


class ReferenceBackend(Backend):
    name = "reference"
    priority = 0

    def apply_w4a4(self, layer, x, bias):
        x_packed, x_scale = quantize_activation(x, layer.input_global_scale)
        return nvfp4_matmul_reference(
            x_packed, x_scale, layer.weight_packed, layer.weight_scale, layer.alpha, x.dtype, bias
        )

    def apply_w4a16(self, layer, x, bias):
        return w4a16_matmul_reference(x, layer.weight_packed, layer.weight_scale, layer.alpha, x.dtype, bias)
