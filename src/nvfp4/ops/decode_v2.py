"""The decode GEMM v2 as a custom op (``torch.ops.nvfp4.linear_decode_v2``), opt-in.

Selected by the triton backend when ``NVFP4_TRITON_SMALL_M=v2`` is set at ``prepare`` time
(it then repacks each weight once into the v2 layout: ``layer.weight_packed_decode`` /
``layer.weight_scale_decode``, +4.5 bits per element while both layouts are kept). The op
takes both layouts: M <= ``launch_decode_v2.DECODE_V2_M_MAX`` runs v2 (``kernels/gemm_decode.py``),
larger M the usual v1 paths, so one opaque node serves every M under torch.compile and
CUDA graphs. ``input_global_scale`` None means W4A16.

* ``nvfp4::linear_decode_v2(x, weight_packed, weight_scale, weight_packed_decode,
  weight_scale_decode, input_global_scale?, alpha, bias?, alpha_scalar?) -> out``
"""

from __future__ import annotations

import torch

from . import launch, launch_decode_v2
from .library import _bias_for, _check_gx, _check_weight, _check_x


@torch.library.custom_op("nvfp4::linear_decode_v2", mutates_args=())
def linear_decode_v2(
    x: torch.Tensor,
    weight_packed: torch.Tensor,
    weight_scale: torch.Tensor,
    weight_packed_decode: torch.Tensor,
    weight_scale_decode: torch.Tensor,
    input_global_scale: torch.Tensor | None,
    alpha: torch.Tensor,
    bias: torch.Tensor | None = None,
    alpha_scalar: float | None = None,
) -> torch.Tensor:
    x = _check_x("linear_decode_v2", x)
    k = x.shape[1]
    _check_weight("linear_decode_v2", k, weight_packed, weight_scale, alpha, bias)
    bias = _bias_for(x, bias)
    small = x.shape[0] <= launch_decode_v2.DECODE_V2_M_MAX
    if input_global_scale is None:
        if small:
            return launch_decode_v2.linear_w4a16_decode_v2(x, weight_packed_decode, weight_scale_decode, k, alpha, bias)
        return launch.linear_w4a16(x, weight_packed, weight_scale, alpha, bias, alpha_scalar)
    gx = _check_gx("linear_decode_v2", input_global_scale)
    if small:
        return launch_decode_v2.linear_w4a4_decode_v2(x, weight_packed_decode, weight_scale_decode, k, gx, alpha, bias)
    return launch.linear_w4a4(x, weight_packed, weight_scale, gx, alpha, bias, alpha_scalar)


@linear_decode_v2.register_fake
def _(x, weight_packed, weight_scale, weight_packed_decode, weight_scale_decode, input_global_scale, alpha,
      bias=None, alpha_scalar=None):
    return x.new_empty((x.shape[0], weight_packed.shape[0]))
