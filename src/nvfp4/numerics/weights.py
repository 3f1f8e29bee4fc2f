"""Weight quantization with the semantics of compressed-tensors / llm-compressor, bit for bit.

The steps (reference sheet §2), for a weight ``W[N, K]`` in its model dtype:

1. ``amax = max|W|`` over the tensor (over every shard of a fused group, see
   ``weight_global_scale``).
2. ``Gw = 448*6 / amax`` computed **in the weight's dtype** (a Python float divided by a
   tensor), then stored as float32; NaN/Inf (amax = 0, or overflow in fp16) becomes 1.0.
3. Per group of 16: ``s = fp8_rne(clamp(Gw * (a/6), +-448))`` with ``a/6`` in the weight
   dtype and the product in float32; a zero scale becomes 0.125.
4. ``q = e2m1_rne(clamp(W / (s/Gw), -6, 6))`` in float32 (note: ``s/Gw`` is rounded first).

``Gw`` is a *divisor*: the dequantized weight is ``e2m1(q) * s / Gw``.
"""

from __future__ import annotations

import torch

from .formats import (
    FP4_MAX,
    FP8_DTYPE,
    GROUP_SIZE,
    e2m1_decode,
    e2m1_encode,
    group_view,
    pack_fp4,
    round_to_fp8_e4m3,
    unpack_fp4,
)
from .global_scales import weight_global_scale

_WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# compressed-tensors replaces a zero block scale by the smallest "safe" E4M3 value (its eps).
ZERO_SCALE_REPLACEMENT = 0.125


def _check_weight(w: torch.Tensor, name: str) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in _WEIGHT_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {w.dtype}")
    if w.dim() != 2:
        raise ValueError(f"{name} must be 2-D [out_features, in_features], got shape {tuple(w.shape)}")
    if w.shape[1] % GROUP_SIZE:
        raise ValueError(
            f"{name}: in_features = {w.shape[1]} is not a multiple of the NVFP4 group size {GROUP_SIZE}"
        )
    if w.numel() and not bool(torch.isfinite(w).all()):
        bad = "NaN" if bool(torch.isnan(w).any()) else "Inf"
        raise ValueError(f"{name} contains {bad}: NVFP4 cannot quantize non-finite weights")


def check_global_scale(global_scale: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(global_scale, torch.Tensor):
        global_scale = torch.tensor([float(global_scale)], dtype=torch.float32)
    if global_scale.numel() != 1:
        raise ValueError(f"{name} must hold one value, got shape {tuple(global_scale.shape)}")
    value = float(global_scale.reshape(()))
    if not (value > 0.0 and value != float("inf")):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return global_scale.to(torch.float32).reshape(1)


def weight_block_scales(w: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """Per-group FP8 scales ``[N, K/16]`` (float8_e4m3fn), compressed-tensors semantics."""
    grouped = group_view(w)
    # max(|min|, |max|) with 0 always in range is simply max|w|, in the weight dtype.
    amax = grouped.abs().amax(dim=-1)
    local = amax / torch.tensor(FP4_MAX, dtype=w.dtype)  # a/6 rounded in the weight dtype
    scales = round_to_fp8_e4m3(global_scale.to(w.device) * local).to(torch.float32)
    scales = torch.where(scales == 0, torch.full_like(scales, ZERO_SCALE_REPLACEMENT), scales)
    return scales.to(FP8_DTYPE)


def quantize_weight(
    w: torch.Tensor, global_scale: torch.Tensor | float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize a float weight ``[N, K]`` to NVFP4, bit-exact with compressed-tensors.

    Returns ``(weight_packed uint8 [N, K/2], weight_scale float8_e4m3fn [N, K/16],
    weight_global_scale float32 [1])``. ``global_scale`` (a divisor) may be given to share
    one ``Gw`` between fused shards (q/k/v, gate/up) as llm-compressor does; by default it is
    ``weight_global_scale(w)``.
    """
    _check_weight(w, "weight")
    if global_scale is None:
        global_scale = weight_global_scale(w)
    global_scale = check_global_scale(global_scale, "global_scale").to(w.device)
    scales = weight_block_scales(w, global_scale)
    # compressed-tensors divides by the *rounded* quotient s/Gw, in float32.
    divisor = scales.to(torch.float32) / global_scale
    scaled = group_view(w) / divisor.unsqueeze(-1)
    codes = e2m1_encode(scaled.clamp(-FP4_MAX, FP4_MAX)).flatten(-2)
    return pack_fp4(codes), scales, global_scale


def dequantize_weight(
    weight_packed: torch.Tensor,
    weight_scale: torch.Tensor,
    weight_global_scale: torch.Tensor | float,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """``e2m1(q) * (s / Gw)`` computed in float32, then cast to ``dtype`` ``[N, K]``.

    Identical to compressed-tensors' ``decompress`` (which rounds the same float32 product
    to bf16).
    """
    if weight_packed.dtype != torch.uint8:
        raise TypeError(f"weight_packed must be uint8, got {weight_packed.dtype}")
    if not weight_scale.is_floating_point():
        # Raw E4M3 bytes read as uint8 would be taken as integers 0..255: silently wrong.
        raise TypeError(
            f"weight_scale must be float8_e4m3fn (or a float tensor of E4M3 values), got {weight_scale.dtype}; "
            "view raw bytes with .view(torch.float8_e4m3fn)"
        )
    if weight_packed.dim() != 2 or weight_scale.dim() != 2:
        raise ValueError(
            f"weight_packed and weight_scale must be 2-D, got {tuple(weight_packed.shape)} "
            f"and {tuple(weight_scale.shape)}"
        )
    n, half_k = weight_packed.shape
    if tuple(weight_scale.shape) != (n, 2 * half_k // GROUP_SIZE) or (2 * half_k) % GROUP_SIZE:
        raise ValueError(
            f"weight_scale shape {tuple(weight_scale.shape)} does not match weight_packed "
            f"{tuple(weight_packed.shape)} (expected [{n}, {2 * half_k // GROUP_SIZE}])"
        )
    gs = check_global_scale(
        weight_global_scale if isinstance(weight_global_scale, torch.Tensor) else torch.tensor([weight_global_scale]),
        "weight_global_scale",
    ).to(weight_packed.device)
    values = group_view(e2m1_decode(unpack_fp4(weight_packed)))
    multiplier = weight_scale.to(torch.float32) / gs
    return (values * multiplier.unsqueeze(-1)).flatten(-2).to(dtype)


def dequantize_weight_unscaled(weight_packed: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """``e2m1(q) * s`` in float32, without the global scale: the exact GEMM operand."""
    values = group_view(e2m1_decode(unpack_fp4(weight_packed)))
    return (values * weight_scale.to(torch.float32).unsqueeze(-1)).flatten(-2)
