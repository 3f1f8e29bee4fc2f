"""Global scales: ``G = 448*6 / amax``, stored as float32 ``[1]``, always a *divisor*.

compressed-tensors' ``generate_gparam`` divides a Python float by the observed ``amax`` in
the observed tensor's own dtype, so a bf16 model gets a bf16-rounded ``G`` (e.g. 9600.0),
and turns NaN/Inf (``amax = 0``, or overflow of the dtype) into 1.0. Both weight and
activation (calibration) global scales are made here, the same way.
"""

from __future__ import annotations

import warnings

import torch

from .formats import FP4_FP8_RANGE


def global_scale_from_amax(amax: torch.Tensor, what: str = "tensor") -> torch.Tensor:
    """``448*6 / amax`` in ``amax``'s dtype, NaN/Inf -> 1.0, as float32 ``[1]``."""
    amax = amax.reshape(()).abs()
    tiny = torch.finfo(amax.dtype).tiny
    gs = FP4_FP8_RANGE / amax.clamp(min=tiny)
    gs = torch.nan_to_num(gs, nan=1.0, posinf=1.0, neginf=1.0).to(torch.float32).reshape(1)
    value = float(amax)
    if gs.item() == 1.0 and value > tiny and FP4_FP8_RANGE / value > 1.5:
        warnings.warn(
            f"the {what} global scale overflowed {amax.dtype} (amax = {value:.3g}) and fell back to 1.0, "
            "as compressed-tensors does; block scales will underflow. Quantize from float32 or bfloat16 "
            "tensors for usable accuracy.",
            stacklevel=3,
        )
    return gs


def weight_global_scale(*weights: torch.Tensor) -> torch.Tensor:
    """``Gw`` over all given tensors (the shards of one fused layer share one, as in llm-compressor)."""
    if not weights:
        raise ValueError("weight_global_scale needs at least one tensor")
    dtypes = {w.dtype for w in weights}
    if len(dtypes) != 1:
        raise TypeError(f"weight_global_scale: shards have different dtypes {sorted(map(str, dtypes))}")
    amax = torch.stack([w.abs().amax() if w.numel() else w.new_zeros(()) for w in weights]).amax()
    return global_scale_from_amax(amax, "weight")


def activation_global_scale(activations) -> torch.Tensor:
    """``Gx`` from calibration activations (a tensor or an iterable of tensors): static min-max.

    The maximum of ``|x|`` over every sample, in the samples' dtype, as llm-compressor's
    ``static_minmax`` observer tracks it. All-zero calibration gives 1.0 (not Inf).
    """
    if isinstance(activations, torch.Tensor):
        activations = [activations]
    amax = None
    for x in activations:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("calibration activations must be floating-point tensors")
        if x.numel() == 0:
            continue
        if not bool(torch.isfinite(x).all()):
            raise ValueError("calibration activations contain NaN or Inf")
        m = x.detach().abs().amax()
        amax = m if amax is None else torch.maximum(amax, m.to(amax.dtype))
    if amax is None:
        raise ValueError("calibration needs at least one non-empty activation tensor")
    return global_scale_from_amax(amax, "input")
