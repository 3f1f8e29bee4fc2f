"""Run-time activation quantization, exactly as vLLM's ``ref_nvfp4_quant`` defines it.

Per token ``m`` and group of 16 (reference sheet §3), with ``Gx`` the checkpoint's
``input_global_scale`` (a divisor):

    a   = max|x[m, group]|                                  (float32)
    s   = fp32(fp8_rne(clamp(Gx * (a * fp32(1/6)), +-448)))
    q   = e2m1_rne(clamp(x * (1 / (s * (1/Gx))), -6, 6))    (float32, vLLM's operation order)

A zero block scale (every |x| in the group below ~2^-10/Gx) makes the group zero; vLLM's
``get_reciprocal`` then multiplies by 1e-8 instead of dividing by zero, reproduced here so
codes match bit for bit.

Non-finite activations (a decided policy, documented in the README): ``+-Inf`` saturates,
its group's scale becomes 448 and the Inf element the code +-6; ``NaN`` poisons its group: the
block scale becomes the E4M3 NaN, so the dequantized group, and every output that reads it,
is NaN (as in a float matmul).
"""

from __future__ import annotations

import torch

from .formats import FP4_MAX, FP8_DTYPE, e2m1_decode, e2m1_encode, group_view, pack_fp4, round_to_fp8_e4m3, unpack_fp4

# vLLM multiplies by the float32 rounding of 1/6 rather than dividing by 6.
FP4_MAX_RECIPROCAL = 1.0 / FP4_MAX


def _safe_reciprocal(t: torch.Tensor) -> torch.Tensor:
    # vLLM's get_reciprocal: 1 / (t + (t == 0) * 1e8), kept branch-free and bit-identical.
    return 1.0 / (t + (t == 0).to(t.dtype) * 1e8)


def quantize_activation(
    x: torch.Tensor, input_global_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x[M, K]`` (bf16/fp16/fp32) to ``(packed uint8 [M, K/2], scale e4m3 [M, K/16])``."""
    if x.dim() != 2:
        raise ValueError(f"quantize_activation expects a 2-D [M, K] tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"quantize_activation: x must be a floating-point tensor, got {x.dtype}")
    gx = input_global_scale.to(device=x.device, dtype=torch.float32).reshape(1)
    grouped = group_view(x)
    amax = grouped.abs().amax(dim=-1, keepdim=True).to(torch.float32) if x.shape[0] else grouped.new_zeros(
        (0, grouped.shape[1], 1), dtype=torch.float32
    )
    scale = round_to_fp8_e4m3(gx * (amax * FP4_MAX_RECIPROCAL))
    scale_f32 = scale.to(torch.float32)
    output_scale = _safe_reciprocal(scale_f32 * _safe_reciprocal(gx))
    scaled = (grouped.to(torch.float32) * output_scale).clamp(-FP4_MAX, FP4_MAX)
    codes = e2m1_encode(scaled).flatten(-2)
    return pack_fp4(codes), scale.squeeze(-1)


def dequantize_activation_unscaled(x_packed: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
    """``e2m1(q) * s`` in float32 ``[M, K]``, without the global scale: the exact GEMM operand."""
    values = group_view(e2m1_decode(unpack_fp4(x_packed)))
    return (values * x_scale.to(torch.float32).unsqueeze(-1)).flatten(-2)


def dequantize_activation(
    x_packed: torch.Tensor, x_scale: torch.Tensor, input_global_scale: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``e2m1(q) * s / Gx`` (the value the quantized activation stands for), cast to ``dtype``."""
    values = group_view(e2m1_decode(unpack_fp4(x_packed)))
    multiplier = x_scale.to(torch.float32) / input_global_scale.to(device=x_packed.device, dtype=torch.float32)
    return (values * multiplier.unsqueeze(-1)).flatten(-2).to(dtype)


__all__ = [
    "FP8_DTYPE",
    "quantize_activation",
    "dequantize_activation",
    "dequantize_activation_unscaled",
]
