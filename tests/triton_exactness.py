"""Shared checks for the Triton kernels: what "equal up to fp32 summation order" means.

The kernels and the reference multiply the same exact operands (``e2m1 * e4m3`` values) and
accumulate in fp32, in different orders. For one output, with ``P = sum_k |a_k * w_k|``,
both fp32 sums are within ``K * 2^-24 * P`` of the exact sum (standard recursive-summation
bound, ``K`` terms), so they differ by at most ``2 * K * 2^-24 * P`` before ``alpha``; after
``* alpha`` (one more fp32 rounding each) and the cast to bf16/fp16 (+ bias, one more
rounding), the outputs may differ by that, times ``|alpha|``, plus one unit in the last place
of the output dtype. ``assert_close_to_exact`` checks exactly this bound against a float64
computation; where the orders coincide the outputs are simply equal.
"""

from __future__ import annotations

import torch

from nvfp4.numerics.activations import dequantize_activation_unscaled
from nvfp4.numerics.weights import dequantize_weight_unscaled


def _ulp(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    info = torch.finfo(dtype)
    mant = {torch.bfloat16: 7, torch.float16: 10, torch.float32: 23}[dtype]
    exponent = torch.floor(torch.log2(values.abs().clamp_min(info.tiny)))
    return torch.pow(2.0, exponent - mant).to(torch.float64)


def exact_and_bound(a_unscaled, w_packed, w_scale, alpha, bias, out_dtype):
    """(float64 exact output, allowed |difference|) for ``out = (A @ W^T) * alpha + bias``."""
    a = a_unscaled.to(torch.float64)
    w = dequantize_weight_unscaled(w_packed, w_scale).to(torch.float64)
    alpha64 = alpha.to(torch.float64)
    exact = (a @ w.t()) * alpha64
    k = a.shape[1]
    magnitude = (a.abs() @ w.abs().t()) * alpha64.abs()
    bound = 2.0 * k * 2.0**-24 * magnitude + 2.0**-23 * exact.abs()
    if bias is not None:
        exact = exact + bias.to(torch.float64)
    bound = bound + _ulp(exact.abs() + (0 if bias is None else bias.abs().to(torch.float64)), out_dtype)
    return exact, bound


def assert_close_to_exact(out, a_unscaled, w_packed, w_scale, alpha, bias=None, label=""):
    exact, bound = exact_and_bound(a_unscaled, w_packed, w_scale, alpha, bias, out.dtype)
    assert_within(out, exact, bound, label)


def assert_within(out, exact, bound, label=""):
    """Every output within ``bound`` of ``exact`` (``exact_and_bound``); NaN never passes."""
    diff = (out.to(torch.float64) - exact).abs()
    bad = ~(diff <= bound)
    assert not bool(bad.any()), (
        f"{label}: {int(bad.sum())} of {out.numel()} outputs outside the fp32-summation bound; "
        f"worst diff {diff[bad].max().item():.3e} vs bound {bound[bad].min().item():.3e}"
    )


def activation_operand(x_packed, x_scale):
    return dequantize_activation_unscaled(x_packed, x_scale)
