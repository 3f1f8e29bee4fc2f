"""The NVFP4 GEMM: ``out[m, n] = alpha[n] * sum_k A[m, k] * W[n, k]`` (+ bias), exactly.

The weight is FP4 (packed ``uint8 [N, K/2]``) with E4M3 scales per 16 (``uint8 [N, K/16]``),
dequantized in registers to ``e2m1 * s`` in fp16 or bf16, which is exact (reference sheet
§4). The activation operand ``A`` comes in one of three forms (``A_MODE``):

* ``A_DENSE``    - an fp16/bf16 ``[M, K]`` tensor read as is: ``x`` itself for W4A16, or the
                   exact dequantized activation written by ``activation_quant`` (large M);
* ``A_QUANTIZE`` - ``x`` in bf16/fp16, quantized to NVFP4 *in registers* and turned into the
                   exact operand ``e2m1(q) * s`` (small M: the quantization is fused in);
* ``A_PACKED``   - packed FP4 codes + E4M3 scale bytes, decoded like the weight.

Layout: the MMA computes the transposed tile ``acc[n, m] = W_tile @ A_tile^T`` ("swap AB"):
the weight, the operand that is dequantized in registers, is the left MMA operand, which
Hopper's wgmma can read straight from registers, and tiny M (decode) fills the MMA's narrow
dimension (``BLOCK_M`` >= 16) instead of wasting a 64-row one.

Accumulation is fp32. With ``SPLIT_K == 1`` the epilogue is fused: ``acc * alpha[n]`` in
fp32, cast to the output dtype, then ``+ bias`` (bias added after the cast, as the
reference does). With ``SPLIT_K > 1`` each program sums a slice of K and writes fp32
partials; ``splitk_reduce`` sums them in a fixed order and applies the same epilogue.
"""

import triton
import triton.language as tl

from .fp_bits import cast_output, dequantize_fp4_tile, fake_quantize_groups, safe_reciprocal

A_DENSE = 0
A_QUANTIZE = 1
A_PACKED = 2


@triton.jit
def _load_activation_tile(
    a_ptr, a_scale_ptr, gx, inv_gx, offs_m, k0, M, K, stride_am,
    A_MODE: tl.constexpr, OP_DTYPE: tl.constexpr, USE_ASM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The activation operand ``[BLOCK_M, BLOCK_K]`` in ``OP_DTYPE`` (rows >= M are zero)."""
    rows64 = offs_m.to(tl.int64)
    if A_MODE == 2:
        half = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        packed = tl.load(
            a_ptr + rows64[:, None] * stride_am + half[None, :],
            mask=(offs_m[:, None] < M) & (half[None, :] < K // 2), other=0,
        )
        groups = k0 // 16 + tl.arange(0, BLOCK_K // 16)
        scale_bytes = tl.load(
            a_scale_ptr + rows64[:, None] * (K // 16) + groups[None, :],
            mask=(offs_m[:, None] < M) & (groups[None, :] < K // 16), other=0,
        )
        a = dequantize_fp4_tile(packed, scale_bytes, BLOCK_K, OP_DTYPE, USE_ASM)
    else:
        cols = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(
            a_ptr + rows64[:, None] * stride_am + cols[None, :],
            mask=(offs_m[:, None] < M) & (cols[None, :] < K), other=0.0,
        )
        if A_MODE == 1:
            xg = tl.reshape(x.to(tl.float32), (BLOCK_M, BLOCK_K // 16, 16))
            a = tl.reshape(fake_quantize_groups(xg, gx, inv_gx), (BLOCK_M, BLOCK_K)).to(OP_DTYPE)
        else:
            a = x.to(OP_DTYPE)
    return a


@triton.jit
def _gemm_body(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr,
    M, N, K, stride_am, TILES_PER_SPLIT,
    A_MODE: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n64 = offs_n.to(tl.int64)
    n_mask = offs_n < N

    if A_MODE == 1:
        gx = tl.load(gx_ptr)
        inv_gx = safe_reciprocal(gx)
    else:
        gx = 1.0
        inv_gx = 1.0

    # Split s owns K tiles [s*TILES_PER_SPLIT, (s+1)*TILES_PER_SPLIT); tiles past K are fully
    # masked (zero), so the last split may simply run short.
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for i in tl.range(0, TILES_PER_SPLIT):
        k0 = (pid_k * TILES_PER_SPLIT + i) * BLOCK_K
        half = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        w_packed = tl.load(
            w_ptr + n64[:, None] * (K // 2) + half[None, :],
            mask=n_mask[:, None] & (half[None, :] < K // 2), other=0,
        )
        groups = k0 // 16 + tl.arange(0, BLOCK_K // 16)
        w_scale = tl.load(
            w_scale_ptr + n64[:, None] * (K // 16) + groups[None, :],
            mask=n_mask[:, None] & (groups[None, :] < K // 16), other=0,
        )
        w = dequantize_fp4_tile(w_packed, w_scale, BLOCK_K, OP_DTYPE, USE_ASM)
        a = _load_activation_tile(
            a_ptr, a_scale_ptr, gx, inv_gx, offs_m, k0, M, K, stride_am,
            A_MODE, OP_DTYPE, USE_ASM, BLOCK_M, BLOCK_K,
        )
        if INTERPRET:
            # The interpreter's bf16 dot is not exact; fp32 operands are (they are exact values).
            acc += tl.dot(w.to(tl.float32), tl.trans(a.to(tl.float32)), input_precision="ieee")
        else:
            acc = tl.dot(w, tl.trans(a), acc)

    m_mask = offs_m < M
    out_mask = n_mask[:, None] & m_mask[None, :]
    m64 = offs_m.to(tl.int64)
    if WRITE_PARTIAL:
        base = partial_ptr + pid_k.to(tl.int64) * M * N
        tl.store(base + m64[None, :] * N + n64[:, None], acc, mask=out_mask)
    else:
        alpha = tl.load(alpha_ptr + offs_n, mask=n_mask, other=0.0)
        out_dtype: tl.constexpr = out_ptr.dtype.element_ty
        y = cast_output(acc * alpha[:, None], out_dtype, INTERPRET)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_n, mask=n_mask, other=0.0)
            y = cast_output(y.to(tl.float32) + bias[:, None].to(tl.float32), out_dtype, INTERPRET)
        tl.store(out_ptr + m64[None, :] * N + n64[:, None], y, mask=out_mask)


@triton.jit
def nvfp4_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr,
    M, N, K, stride_am,
    TILES_PER_SPLIT,  # K tiles per split (runtime: one compiled kernel serves every split)
    SPLIT_K,  # the grid's third dimension; only the autotuner's configs use it by name
    M_BUCKET,  # an autotuning key only (power of two >= M)
    A_MODE: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _gemm_body(
        a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr,
        M, N, K, stride_am, TILES_PER_SPLIT, A_MODE, HAS_BIAS, WRITE_PARTIAL, OP_DTYPE, USE_ASM, INTERPRET,
        BLOCK_N, BLOCK_M, BLOCK_K,
    )


@triton.jit
def nvfp4_gemm_kernel_interpreted(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr,
    M, N, K, stride_am,
    TILES_PER_SPLIT: tl.constexpr,  # the interpreter needs a Python int as loop bound
    SPLIT_K, M_BUCKET,
    A_MODE: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _gemm_body(
        a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr,
        M, N, K, stride_am, TILES_PER_SPLIT, A_MODE, HAS_BIAS, WRITE_PARTIAL, OP_DTYPE, USE_ASM, INTERPRET,
        BLOCK_N, BLOCK_M, BLOCK_K,
    )
