"""The exact NVFP4 GEMM in plain PyTorch: what an FP4 tensor core computes (reference sheet §4).

    Y[m, n] = alpha[n] * sum_k (e2m1(qx) * sx)[m, k] * (e2m1(qw) * sw)[n, k]     (fp32)
    out     = Y.to(out_dtype) + bias

Each operand element ``e2m1 * e4m3`` has at most 6 significant bits and lies in 2^-10..2688,
so it is exact in bf16 and fp16; the global scales stay out of the operands and live in
``alpha``. Any GEMM that accumulates these operands in fp32 (the CPU here, bf16 tensor cores
in the Triton kernels) computes the same numbers up to the order of the fp32 summation.
``alpha`` is a vector with one entry per output row so that fused shards with different
weight global scales stay exact.
"""

from __future__ import annotations

import torch

from .activations import dequantize_activation_unscaled
from .weights import dequantize_weight_unscaled


def scaled_matmul_reference(
    a: torch.Tensor,
    w_unscaled: torch.Tensor,
    alpha: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(a @ w.T) * alpha`` accumulated in float32 (float64 for float64 inputs), cast, + bias."""
    compute = torch.float64 if a.dtype == torch.float64 else torch.float32
    y = a.to(compute) @ w_unscaled.to(compute).t()
    y = y * alpha.to(device=y.device, dtype=compute)
    out = y.to(out_dtype)
    if bias is not None:
        out = out + bias.to(out_dtype)
    return out


def nvfp4_matmul_reference(
    x_packed: torch.Tensor,
    x_scale: torch.Tensor,
    w_packed: torch.Tensor,
    w_scale: torch.Tensor,
    alpha: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """W4A4: both operands FP4 with FP8 block scales."""
    a = dequantize_activation_unscaled(x_packed, x_scale)
    w = dequantize_weight_unscaled(w_packed, w_scale)
    return scaled_matmul_reference(a, w, alpha, out_dtype, bias)


def w4a16_matmul_reference(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    w_scale: torch.Tensor,
    alpha: torch.Tensor,
    out_dtype: torch.dtype,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """W4A16: activations stay in their float dtype; ``alpha = 1/Gw`` per output row."""
    w = dequantize_weight_unscaled(w_packed, w_scale)
    return scaled_matmul_reference(x, w, alpha, out_dtype, bias)
