"""The ``emulation`` backend: vLLM's own NVFP4 emulation, rounding included, for comparisons.

vLLM (``run_nvfp4_emulations``) fake-quantizes the activation and dequantizes the weight
*with* their global scales folded in, rounds both to the activation dtype and runs a matmul
in that dtype. That is less exact than ``reference`` (two extra roundings per operand);
use it to reproduce vLLM's emulated numbers, not as ground truth.

Reproduced bit for bit: vLLM's PyTorch path (``ref_nvfp4_quant_dequant`` on the CPU and
``dequantize_to_dtype(swizzle=False)``, which rounds ``s * (1/Gw)`` before multiplying by the
FP4 value). vLLM's CUDA Triton emulation kernels compute ``Gx / s`` instead of
``1 / (s * (1/Gx))`` and fuse the weight dequantization into the GEMM, so on a GPU vLLM's own
emulation can differ from this (and from itself on the CPU) at rounding ties.
"""

from __future__ import annotations

import torch

from ..numerics import dequantize_activation, e2m1_decode, quantize_activation, unpack_fp4
from ..numerics.formats import group_view
from .base import Backend


class EmulationBackend(Backend):
    name = "emulation"
    priority = -1  # never chosen automatically

    @staticmethod
    def _weight(layer, dtype):
        # Per output row: e2m1 * (s * (1/Gw[shard])) in fp32, rounded to the activation dtype.
        # vLLM's order (dequantize_to_dtype): the multiplier s/Gw is rounded first; the other
        # order, (e2m1*s) * (1/Gw), differs in fp32 and, rarely, after an fp16 cast.
        values = group_view(e2m1_decode(unpack_fp4(layer.weight_packed)))
        multiplier = layer.weight_scale.to(torch.float32) * layer.weight_global_scale_inv_per_row.unsqueeze(1)
        return (values * multiplier.unsqueeze(-1)).flatten(-2).to(dtype)

    def apply_w4a4(self, layer, x, bias):
        x_packed, x_scale = quantize_activation(x, layer.input_global_scale)
        x_dq = dequantize_activation(x_packed, x_scale, layer.input_global_scale, x.dtype)
        out = torch.matmul(x_dq, self._weight(layer, x.dtype).t())
        return out + bias if bias is not None else out

    def apply_w4a16(self, layer, x, bias):
        out = torch.matmul(x, self._weight(layer, x.dtype).t())
        return out + bias if bias is not None else out
