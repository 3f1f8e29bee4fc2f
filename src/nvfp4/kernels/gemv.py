"""Decode-sized NVFP4 GEMM (M <= 4) on the CUDA cores: no tensor cores, no layout shuffles.

For one to four tokens the weight stream is everything and the MMA path spends its time
moving decoded weights into tensor-core register layouts. Here each program streams a
``[BLOCK_N, BLOCK_K]`` weight tile viewed as ``[BLOCK_N, G, 8]`` bytes (G groups of 16
elements, 8 bytes each), so the per-group E4M3 scale broadcasts without any reshape; the
low nibble of byte j is element 2j, the high nibble element 2j+1, so the activation is read
as its even and odd columns ``[G, 8]`` (tiny, cached). Products of an exact ``e2m1 * s``
weight (6 significant bits) and a bf16/fp16 activation (at most 11) are exact in fp32; the
sums are fp32 (the same bound as the MMA path).

Split-K and the epilogue are shared with ``gemm.py`` (fp32 partials + ``splitk_reduce``).
"""

import triton
import triton.language as tl

from .fp_bits import e4m3_bytes_as, fp4x2_decode_asm, fp4x2_decode_portable, linear_epilogue
from .grid_dependency import allow_dependents, wait_for_previous_grid


@triton.jit
def _gemv_body(
    x_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PDL: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(2)
    G: tl.constexpr = BLOCK_K // 16
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows_w = (offs_n % N).to(tl.int64)
    g = tl.arange(0, G)
    j = tl.arange(0, 8)
    k_first = pid_k * TILES_PER_SPLIT * BLOCK_K
    # bytes [BLOCK_N, G, 8]: row n, group g, byte j -> element 16g + 2j (+1 for the high nibble)
    w_ptrs = w_ptr + rows_w[:, None, None] * stride_wn + (k_first // 2 + g[:, None] * 8 + j[None, :])[None, :, :]
    ws_ptrs = w_scale_ptr + rows_w[:, None] * stride_ws + (k_first // 16 + g)[None, :]
    x_cols = k_first + g[:, None] * 16 + j[None, :] * 2  # even columns [G, 8]

    acc0 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    acc3 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    for i in tl.range(0, TILES_PER_SPLIT):
        packed = tl.load(w_ptrs)
        scale = e4m3_bytes_as(tl.load(ws_ptrs).to(tl.int32), OP_DTYPE, USE_ASM)
        if USE_ASM:
            lo, hi = fp4x2_decode_asm(packed, OP_DTYPE)
        else:
            lo, hi = fp4x2_decode_portable(packed, OP_DTYPE)
        w_even = (lo * scale[:, :, None]).to(tl.float32)
        w_odd = (hi * scale[:, :, None]).to(tl.float32)
        cols = x_cols + i * BLOCK_K
        x_even = tl.load(x_ptr + cols).to(tl.float32)
        x_odd = tl.load(x_ptr + cols + 1).to(tl.float32)
        acc0 += tl.sum(w_even * x_even[None, :, :] + w_odd * x_odd[None, :, :], axis=2)
        if ROWS > 1:
            xe = tl.load(x_ptr + stride_xm + cols, mask=M > 1, other=0.0).to(tl.float32)
            xo = tl.load(x_ptr + stride_xm + cols + 1, mask=M > 1, other=0.0).to(tl.float32)
            acc1 += tl.sum(w_even * xe[None, :, :] + w_odd * xo[None, :, :], axis=2)
        if ROWS > 2:
            xe = tl.load(x_ptr + 2 * stride_xm + cols, mask=M > 2, other=0.0).to(tl.float32)
            xo = tl.load(x_ptr + 2 * stride_xm + cols + 1, mask=M > 2, other=0.0).to(tl.float32)
            acc2 += tl.sum(w_even * xe[None, :, :] + w_odd * xo[None, :, :], axis=2)
            xe = tl.load(x_ptr + 3 * stride_xm + cols, mask=M > 3, other=0.0).to(tl.float32)
            xo = tl.load(x_ptr + 3 * stride_xm + cols + 1, mask=M > 3, other=0.0).to(tl.float32)
            acc3 += tl.sum(w_even * xe[None, :, :] + w_odd * xo[None, :, :], axis=2)
        w_ptrs += BLOCK_K // 2
        ws_ptrs += G

    allow_dependents(PDL)  # NVFP4_TRITON_PDL=late: the next kernel may be scheduled
    n_mask = offs_n < N
    n64 = offs_n.to(tl.int64)
    # A constexpr may be assigned once per function: not inside the unrolled loop below.
    out_dtype: tl.constexpr = out_ptr.dtype.element_ty
    for r in tl.static_range(ROWS):
        if r == 0:
            y = tl.sum(acc0, axis=1)
        elif r == 1:
            y = tl.sum(acc1, axis=1)
        elif r == 2:
            y = tl.sum(acc2, axis=1)
        else:
            y = tl.sum(acc3, axis=1)
        mask = n_mask & (r < M)
        if WRITE_PARTIAL:
            tl.store(partial_ptr + (pid_k.to(tl.int64) * M + r) * N + n64, y, mask=mask)
        else:
            alpha = tl.load(alpha_ptr + offs_n, mask=n_mask, other=0.0)
            bias = tl.load(bias_ptr + offs_n, mask=n_mask & HAS_BIAS, other=0.0)
            o = linear_epilogue(y, alpha, bias, out_dtype, HAS_BIAS, INTERPRET)
            tl.store(out_ptr + r * N + n64, o, mask=mask)


@triton.jit
def gemv_kernel(
    x_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PDL: tl.constexpr = False,  # programmatic dependent launch (grid_dependency.py)
):
    wait_for_previous_grid(PDL)
    _gemv_body(
        x_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, M, N, K, stride_xm, stride_wn,
        stride_ws, TILES_PER_SPLIT, ROWS, HAS_BIAS, WRITE_PARTIAL, OP_DTYPE, USE_ASM, INTERPRET, BLOCK_N, BLOCK_K, PDL,
    )


@triton.jit
def gemv_kernel_interpreted(
    x_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT: tl.constexpr,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _gemv_body(
        x_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, M, N, K, stride_xm, stride_wn,
        stride_ws, TILES_PER_SPLIT, ROWS, HAS_BIAS, WRITE_PARTIAL, OP_DTYPE, USE_ASM, INTERPRET, BLOCK_N, BLOCK_K, 0,
    )
