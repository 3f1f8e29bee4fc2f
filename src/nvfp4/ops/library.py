"""The public NVFP4 ops as PyTorch custom ops (``torch.ops.nvfp4.*``) with fake impls.

Being custom ops makes them opaque, shape-known nodes for ``torch.compile`` (no graph
break: dynamo never traces into Triton's launcher) and keeps CUDA-graph capture working
(the launches allocate through PyTorch's caching allocator only).

* ``nvfp4::quantize_activation(x, input_global_scale) -> (packed u8 [M,K/2], scale e4m3 [M,K/16])``
* ``nvfp4::linear_w4a4(x, weight_packed, weight_scale, input_global_scale, alpha, bias?, alpha_scalar?) -> out``
* ``nvfp4::linear_w4a16(x, weight_packed, weight_scale, alpha, bias?, alpha_scalar?) -> out``

``alpha_scalar`` is the common value of ``alpha`` when all rows share it (a Python float
fixed at load time, so no device sync): it enables the cuBLAS path at large M, whose GEMM
epilogue applies one scalar alpha. Leave it ``None`` for per-row alphas.
* ``nvfp4::gemm_w4a4_packed(x_packed, x_scale, weight_packed, weight_scale, alpha, bias?, out_dtype) -> out``

Inputs are validated here (clear errors instead of a crash inside a kernel); ``x`` must be
2-D bf16/fp16, made contiguous if it is not.
"""

from __future__ import annotations

import torch

from . import launch

_X_DTYPES = (torch.bfloat16, torch.float16)


def _check_x(op: str, x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 2:
        raise ValueError(f"nvfp4::{op}: x must be 2-D [M, K], got shape {tuple(x.shape)}")
    if x.dtype not in _X_DTYPES:
        raise TypeError(f"nvfp4::{op}: x must be bfloat16 or float16 for the Triton kernels, got {x.dtype}")
    if x.shape[1] % 16:
        raise ValueError(f"nvfp4::{op}: K = {x.shape[1]} is not a multiple of 16")
    return x if x.is_contiguous() else x.contiguous()


def _check_weight(op: str, k: int, w_packed: torch.Tensor, w_scale: torch.Tensor, alpha: torch.Tensor, bias):
    if w_packed.dtype != torch.uint8 or w_packed.dim() != 2 or w_packed.shape[1] * 2 != k:
        raise ValueError(
            f"nvfp4::{op}: weight_packed must be uint8 [N, K/2] = [*, {k // 2}], got {w_packed.dtype} "
            f"{tuple(w_packed.shape)}"
        )
    n = w_packed.shape[0]
    if w_scale.dtype != torch.float8_e4m3fn or tuple(w_scale.shape) != (n, k // 16):
        raise ValueError(
            f"nvfp4::{op}: weight_scale must be float8_e4m3fn [{n}, {k // 16}], got {w_scale.dtype} "
            f"{tuple(w_scale.shape)}"
        )
    if alpha.dtype != torch.float32 or tuple(alpha.shape) != (n,):
        raise ValueError(f"nvfp4::{op}: alpha must be float32 [{n}], got {alpha.dtype} {tuple(alpha.shape)}")
    if not (w_packed.is_contiguous() and w_scale.is_contiguous() and alpha.is_contiguous()):
        raise ValueError(f"nvfp4::{op}: weight_packed, weight_scale and alpha must be contiguous (prepare() makes them so)")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != n):
        raise ValueError(f"nvfp4::{op}: bias must have shape [{n}], got {tuple(bias.shape)}")
    return n


def _check_gx(op: str, gx: torch.Tensor) -> torch.Tensor:
    if gx.numel() != 1:
        raise ValueError(f"nvfp4::{op}: input_global_scale must have one element, got shape {tuple(gx.shape)}")
    if gx.dim() == 1 and gx.dtype == torch.float32:  # the usual case: nothing to view or convert
        return gx
    return gx.reshape(1).to(torch.float32)


def _bias_for(x: torch.Tensor, bias):
    if bias is None:
        return None
    return bias.to(x.dtype).contiguous()


@torch.library.custom_op("nvfp4::quantize_activation", mutates_args=())
def quantize_activation(x: torch.Tensor, input_global_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = _check_x("quantize_activation", x)
    return launch.quantize_activation(x, _check_gx("quantize_activation", input_global_scale))


@quantize_activation.register_fake
def _(x, input_global_scale):
    m, k = x.shape
    return x.new_empty((m, k // 2), dtype=torch.uint8), x.new_empty((m, k // 16), dtype=torch.float8_e4m3fn)


def linear_w4a4_impl(x, weight_packed, weight_scale, input_global_scale, alpha, bias=None, alpha_scalar=None):
    """What ``nvfp4::linear_w4a4`` runs: validation, then the launcher. Called directly by
    the triton backend for eager calls (see ``direct_call_ok``)."""
    x = _check_x("linear_w4a4", x)
    _check_weight("linear_w4a4", x.shape[1], weight_packed, weight_scale, alpha, bias)
    gx = _check_gx("linear_w4a4", input_global_scale)
    return launch.linear_w4a4(x, weight_packed, weight_scale, gx, alpha, _bias_for(x, bias), alpha_scalar)


def linear_w4a16_impl(x, weight_packed, weight_scale, alpha, bias=None, alpha_scalar=None):
    """What ``nvfp4::linear_w4a16`` runs (see ``linear_w4a4_impl``)."""
    x = _check_x("linear_w4a16", x)
    _check_weight("linear_w4a16", x.shape[1], weight_packed, weight_scale, alpha, bias)
    return launch.linear_w4a16(x, weight_packed, weight_scale, alpha, _bias_for(x, bias), alpha_scalar)


def direct_call_ok(x: torch.Tensor) -> bool:
    """Whether an eager caller may skip the dispatcher and call ``*_impl`` directly.

    Going through ``torch.ops`` costs ~50 us of host time per call (H200, 8B ``o`` at M = 1:
    164 vs 114 us per eager W4A4 call, ``benchmarks/results/raw/h200_profile_eager.log``),
    as much as the GPU time of a decode-sized linear. The op is needed when something traces
    the call: ``torch.compile`` / ``torch.export`` (dynamo), fake or meta tensors, tensor
    subclasses (DTensor, FX proxies are not tensors at all). A plain CUDA tensor outside any
    compilation is none of those; CUDA-graph capture works either way."""
    return type(x) is torch.Tensor and x.is_cuda and not torch.compiler.is_compiling()


@torch.library.custom_op("nvfp4::linear_w4a4", mutates_args=())
def linear_w4a4(
    x: torch.Tensor,
    weight_packed: torch.Tensor,
    weight_scale: torch.Tensor,
    input_global_scale: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None = None,
    alpha_scalar: float | None = None,
) -> torch.Tensor:
    return linear_w4a4_impl(x, weight_packed, weight_scale, input_global_scale, alpha, bias, alpha_scalar)


@linear_w4a4.register_fake
def _(x, weight_packed, weight_scale, input_global_scale, alpha, bias=None, alpha_scalar=None):
    return x.new_empty((x.shape[0], weight_packed.shape[0]))


@torch.library.custom_op("nvfp4::linear_w4a16", mutates_args=())
def linear_w4a16(
    x: torch.Tensor,
    weight_packed: torch.Tensor,
    weight_scale: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None = None,
    alpha_scalar: float | None = None,
) -> torch.Tensor:
    return linear_w4a16_impl(x, weight_packed, weight_scale, alpha, bias, alpha_scalar)


@linear_w4a16.register_fake
def _(x, weight_packed, weight_scale, alpha, bias=None, alpha_scalar=None):
    return x.new_empty((x.shape[0], weight_packed.shape[0]))


@torch.library.custom_op("nvfp4::gemm_w4a4_packed", mutates_args=())
def gemm_w4a4_packed(
    x_packed: torch.Tensor,
    x_scale: torch.Tensor,
    weight_packed: torch.Tensor,
    weight_scale: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    if out_dtype not in _X_DTYPES:
        raise TypeError(f"nvfp4::gemm_w4a4_packed: out_dtype must be bfloat16 or float16, got {out_dtype}")
    if x_packed.dtype != torch.uint8 or x_packed.dim() != 2:
        raise ValueError(f"nvfp4::gemm_w4a4_packed: x_packed must be uint8 [M, K/2], got {x_packed.dtype} {tuple(x_packed.shape)}")
    k = x_packed.shape[1] * 2
    if x_scale.dtype != torch.float8_e4m3fn or tuple(x_scale.shape) != (x_packed.shape[0], k // 16):
        raise ValueError(
            f"nvfp4::gemm_w4a4_packed: x_scale must be float8_e4m3fn [{x_packed.shape[0]}, {k // 16}], got "
            f"{x_scale.dtype} {tuple(x_scale.shape)}"
        )
    _check_weight("gemm_w4a4_packed", k, weight_packed, weight_scale, alpha, bias)
    bias = None if bias is None else bias.to(out_dtype).contiguous()
    return launch.gemm_w4a4_packed(
        x_packed.contiguous(), x_scale.contiguous(), weight_packed, weight_scale, alpha, bias, out_dtype
    )


@gemm_w4a4_packed.register_fake
def _(x_packed, x_scale, weight_packed, weight_scale, alpha, bias, out_dtype):
    return x_packed.new_empty((x_packed.shape[0], weight_packed.shape[0]), dtype=out_dtype)
