"""Launcher of the activation-quantization kernel (``kernels/activation_quant.py``) in its
three output formats: packed codes + E4M3 bytes (the checkpoint format), the exact dense GEMM
operand (optionally in the paired decode's K order), and int8 values + fp32 scales (the
integer-dot decode). Re-exported by ``launch``, whose helpers it uses at call time."""

from __future__ import annotations

import os

import torch

from ..kernels.activation_quant import OUT_DEQUANT, OUT_INT8, OUT_PACKED, activation_quant_kernel
from . import fast_launch

# Rows per activation-quantization program (x 256 columns) and its warps, read at each launch:
# benchmarks/bench_act_quant.py sweeps them (the rows also through an env knob).
ACT_QUANT_BLOCK_R = int(os.environ.get("NVFP4_TRITON_ACT_QUANT_ROWS", "16"))
ACT_QUANT_WARPS = 4
# bf16 x read as int32 pairs (kernels/activation_quant.py BF16_WORDS) where x allows it, for the
# packed and operand outputs (sm_90 SASS per element at 16 rows x 4 warps: packed 28.3 -> 23.3,
# operand 22.0 -> 21.8; the int8 output would go 24.3 -> 27.5, so it keeps the bf16 load).
# Read at each launch: benchmarks/bench_act_quant.py times both.
ACT_QUANT_BF16_WORDS = True


def _bf16_words(x: torch.Tensor) -> bool:
    """bf16 rows that start on 4-byte boundaries: the kernel may read them as int32 pairs."""
    return ACT_QUANT_BF16_WORDS and x.dtype == torch.bfloat16 and x.stride(0) % 2 == 0 and x.data_ptr() % 4 == 0


def _activation_quant_launch(x, gx, values, scale, out_mode, paired_k=False):
    from . import launch  # imports this module at its top: bound at call time

    m, k = x.shape
    if not m:
        return
    block_k = 64 if launch.interpreting() else 256
    block_r = 16 if launch.interpreting() else ACT_QUANT_BLOCK_R
    grid = (launch.cdiv(m, block_r), launch.cdiv(k, block_k))
    fast_launch.launch(
        activation_quant_kernel, grid, x, gx, values, scale, m, k, x.stride(0), OUT_MODE=out_mode, BLOCK_R=block_r,
        BLOCK_K=block_k, num_warps=ACT_QUANT_WARPS, PAIRED_K=paired_k, INTERPRET=launch.interpreting(),
        BF16_WORDS=out_mode != OUT_INT8 and _bf16_words(x), **launch.pdl_options(x.device, w4a4=True),
    )
    launch.KERNEL_LAUNCHES["activation_quant"] += 1


def quantize_activation(x: torch.Tensor, gx: torch.Tensor, dequant_dtype: torch.dtype | None = None,
                        paired_k: bool = False):
    """``x[M, K]`` -> ``(packed u8 [M, K/2], scale e4m3 [M, K/16])``, or the exact dequantized
    operand ``[M, K]`` in ``dequant_dtype`` when that is given (with ``paired_k``, its
    columns in the paired-decode GEMM's order, ``kernels/paired_decode.py``)."""
    m, k = x.shape
    if dequant_dtype is not None:
        out = torch.empty((m, k), dtype=dequant_dtype, device=x.device)
        _activation_quant_launch(x, gx, out, out, OUT_DEQUANT, paired_k)
        return out
    if paired_k:
        raise ValueError("quantize_activation: paired_k applies to the dequantized operand only (give dequant_dtype)")
    packed = torch.empty((m, k // 2), dtype=torch.uint8, device=x.device)
    scale = torch.empty((m, k // 16), dtype=torch.float8_e4m3fn, device=x.device)
    _activation_quant_launch(x, gx, packed, scale.view(torch.uint8), OUT_PACKED)
    return packed, scale


def quantize_activation_int8(x: torch.Tensor, gx: torch.Tensor):
    """``x[M, K]`` -> ``(2 * e2m1(q) as int8 [M, K], block scales as fp32 [M, K/16])``: the
    operands of the integer-dot decode path (exactly the reference's codes and scales)."""
    m, k = x.shape
    values = torch.empty((m, k), dtype=torch.int8, device=x.device)
    scale = torch.empty((m, k // 16), dtype=torch.float32, device=x.device)
    _activation_quant_launch(x, gx, values, scale, OUT_INT8)
    return values, scale
