"""Dequantize an NVFP4 weight to the exact fp16/bf16 operand ``e2m1(q) * s`` (no global scale).

Used by the large-M path only: for M in the thousands the GEMM is compute-bound, and
cuBLAS's bf16/fp16 tensor-core GEMM over a transient dequantized copy (written once per
call, freed after) beats an in-register-dequantizing Triton GEMM. The copy is exact
(``e2m1 * e4m3`` has at most 6 significant bits), so the result is still the exact NVFP4
GEMM up to fp32 summation order.
"""

import triton
import triton.language as tl

from .fp_bits import dequantize_fp4_tile


@triton.jit
def weight_dequant_kernel(
    w_ptr, w_scale_ptr, out_ptr, N, K, stride_wn, stride_ws,
    OP_DTYPE: tl.constexpr, USE_ASM: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    half = k0 // 2 + tl.arange(0, BLOCK_K // 2)
    groups = k0 // 16 + tl.arange(0, BLOCK_K // 16)
    cols = k0 + tl.arange(0, BLOCK_K)
    rows64 = rows.to(tl.int64)
    row_ok = rows[:, None] < N
    packed = tl.load(w_ptr + rows64[:, None] * stride_wn + half[None, :], mask=row_ok & (half[None, :] < K // 2), other=0)
    scale = tl.load(
        w_scale_ptr + rows64[:, None] * stride_ws + groups[None, :], mask=row_ok & (groups[None, :] < K // 16), other=0
    )
    values = dequantize_fp4_tile(packed, scale, BLOCK_K, OP_DTYPE, USE_ASM)
    tl.store(out_ptr + rows64[:, None] * K + cols[None, :], values.to(out_ptr.dtype.element_ty), mask=row_ok & (cols[None, :] < K))
