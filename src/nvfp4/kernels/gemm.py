"""The NVFP4 GEMM: ``out[m, n] = alpha[n] * sum_k A[m, k] * W[n, k]`` (+ bias), exactly.

The weight is FP4 (packed ``uint8 [N, K/2]``) with E4M3 scales per 16 (``uint8 [N, K/16]``),
dequantized in registers to ``e2m1 * s`` in fp16 or bf16, which is exact (reference sheet
§4). The activation operand ``A`` comes in one of three forms (``A_MODE``):

* ``A_DENSE``    - an fp16/bf16 ``[M, K]`` tensor read as is: ``x`` itself for W4A16, or the
                   exact dequantized activation written by ``activation_quant`` (large M);
* ``A_QUANTIZE`` - ``x`` in bf16/fp16, quantized to NVFP4 *in registers* and turned into the
                   exact operand ``e2m1(q) * s`` (small M: the quantization is fused in);
* ``A_PACKED``   - packed FP4 codes + E4M3 scale bytes, decoded like the weight.

Operand orientation (``W_AS_B``):

* ``False`` ("swap AB"): the MMA computes the transposed tile ``acc[n, m] = W_tile @ A_tile^T``;
  the dequantized weight is the left operand, which Hopper's wgmma reads straight from
  registers, and tiny M fills the MMA's narrow dimension. But a register operand must be in
  wgmma's fragment layout: the compiled sm_90 K loop converts it slice by slice and waits for
  each of its 16 wgmma (12.5 SASS instructions per weight element at BLOCK_M = 16);
* ``True``: ``acc[m, n] = A_tile @ W_tile^T``; the dequantized weight is stored to shared
  memory as the right operand, the activation tile comes from shared memory too (cp.async
  pipelined), and one asynchronous wgmma per K step does the whole tile (6.7 instructions per
  element at BLOCK_M = 64; at BLOCK_M < 64 Triton emits mma.sync: ~8). The accumulator is
  transposed once, before the shared epilogue.

The small-M launcher times both orientations per shape (``ops.launch.small_m_candidates``).

``PAIRED_K`` (``paired_decode.py``, default; ``NVFP4_TRITON_PAIRED_K=off`` turns it off): the weight is
decoded as whole int32 words, pairs straight into fp16x2/bf16x2 registers with the block
scale in the same multiply, K permuted inside groups of 8 and the activation tile in the same
order (permuted here in registers, or written so by ``activation_quant``); sm_90 K loops of
3.8-7.0 SASS instructions per weight element instead of 5.3-8.5 for the natural decode with
``USE_ASM`` at the sm_89 level (block scales by one E4M3 conversion each), 4.2-7.0 instead of
6.1-13.2 at the sm_80 level (docs/performance.md).

Accumulation is fp32. With ``SPLIT_K == 1`` the epilogue is fused: ``acc * alpha[n]`` in
fp32, cast to the output dtype, then ``+ bias`` (bias added after the cast, as the
reference does). With ``SPLIT_K > 1`` each program sums a slice of K and writes fp32
partials; ``splitk_reduce`` sums them in a fixed order and applies the same epilogue, or,
with ``SPLITK_TICKET``, the last program of each output tile does (``splitk_ticket.finish_tile``:
one launch fewer, the same bits).
"""

import triton
import triton.language as tl

from .fp_bits import dequantize_fp4_tile, fake_quantize_groups, safe_reciprocal, store_output_tile
from .grid_dependency import allow_dependents, wait_for_previous_grid
from .paired_decode import PAIRED_IN_KERNEL, dequantize_fp4_words_paired, fold, pair_permute_k
from .splitk_ticket import finish_tile

A_DENSE = 0
A_QUANTIZE = 1
A_PACKED = 2


@triton.jit
def _gemm_body(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr, counter_ptr,
    M, N, K, stride_am, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K,
    A_MODE: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, W_AS_B: tl.constexpr,
    PAIRED_K: tl.constexpr, PDL: tl.constexpr, SPLITK_TICKET: tl.constexpr,
):
    # PAIRED_K (paired_decode.py): the weight is decoded as whole int32 words with K in
    # PAIRED_ORDER inside each group of 8, lacking a power of two (fold) that the accumulator
    # gets back before the epilogue; the dense activation operand comes in that order (PAIRED_OPERAND: the
    # activation kernel wrote it so) or is put in it here, in registers (PAIRED_IN_KERNEL).
    tl.static_assert(not PAIRED_K or A_MODE == 0, "PAIRED_K needs the dense activation operand")
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    # Rows past N (M) are clamped to valid rows instead of masked, so every load in the main
    # loop is an unmasked, 16-byte vectorizable load; those rows are never stored.
    rows_w = (offs_n % N).to(tl.int64)
    rows_a = (offs_m % M).to(tl.int64)
    HALF_K: tl.constexpr = BLOCK_K // 2
    GROUPS: tl.constexpr = BLOCK_K // 16
    k_first = pid_k * TILES_PER_SPLIT * BLOCK_K
    kh = tl.max_contiguous(tl.multiple_of(tl.arange(0, HALF_K), HALF_K), HALF_K)
    kg = tl.arange(0, GROUPS)
    kf = tl.max_contiguous(tl.multiple_of(tl.arange(0, BLOCK_K), BLOCK_K), BLOCK_K)
    if PAIRED_K:
        WORDS: tl.constexpr = BLOCK_K // 8
        kw = tl.max_contiguous(tl.multiple_of(tl.arange(0, WORDS), WORDS), WORDS)
        w_ptrs = w_ptr.to(tl.pointer_type(tl.int32)) + rows_w[:, None] * (stride_wn // 4) + (k_first // 8 + kw)[None, :]
        w_step = WORDS
    else:
        w_ptrs = w_ptr + rows_w[:, None] * stride_wn + (k_first // 2 + kh)[None, :]
        w_step = HALF_K
    ws_ptrs = w_scale_ptr + rows_w[:, None] * stride_ws + (k_first // 16 + kg)[None, :]
    if A_MODE == 2:
        a_ptrs = a_ptr + rows_a[:, None] * stride_am + (k_first // 2 + kh)[None, :]
        as_ptrs = a_scale_ptr + rows_a[:, None] * stride_ws + (k_first // 16 + kg)[None, :]
        a_step = HALF_K
    else:
        a_ptrs = a_ptr + rows_a[:, None] * stride_am + (k_first + kf)[None, :]
        as_ptrs = a_scale_ptr
        a_step = BLOCK_K

    if A_MODE == 1:
        gx = tl.load(gx_ptr)
        inv_gx = safe_reciprocal(gx)

    # Split s owns K tiles [s*TILES_PER_SPLIT, (s+1)*TILES_PER_SPLIT). With EVEN_K every tile
    # is inside K (no masks); otherwise tiles past K are masked to zero.
    if W_AS_B:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    for i in tl.range(0, TILES_PER_SPLIT):
        if EVEN_K:
            w_packed = tl.load(w_ptrs)
            w_scale = tl.load(ws_ptrs)
        else:
            k0 = k_first + i * BLOCK_K
            if PAIRED_K:
                w_packed = tl.load(w_ptrs, mask=(k0 // 8 + kw)[None, :] < K // 8, other=0)
            else:
                w_packed = tl.load(w_ptrs, mask=(k0 // 2 + kh)[None, :] < K // 2, other=0)
            w_scale = tl.load(ws_ptrs, mask=(k0 // 16 + kg)[None, :] < K // 16, other=0)
        if PAIRED_K:
            w = dequantize_fp4_words_paired(w_packed, w_scale, BLOCK_K, OP_DTYPE, USE_ASM)
        else:
            w = dequantize_fp4_tile(w_packed, w_scale, BLOCK_K, OP_DTYPE, USE_ASM)
        if A_MODE == 2:
            if EVEN_K:
                a_packed = tl.load(a_ptrs)
                a_scale = tl.load(as_ptrs)
            else:
                a_packed = tl.load(a_ptrs, mask=(k0 // 2 + kh)[None, :] < K // 2, other=0)
                a_scale = tl.load(as_ptrs, mask=(k0 // 16 + kg)[None, :] < K // 16, other=0)
            a = dequantize_fp4_tile(a_packed, a_scale, BLOCK_K, OP_DTYPE, USE_ASM)
            as_ptrs += GROUPS
        else:
            if EVEN_K:
                x = tl.load(a_ptrs)
            else:
                x = tl.load(a_ptrs, mask=(k0 + kf)[None, :] < K, other=0.0)
            if A_MODE == 1:
                xg = tl.reshape(x.to(tl.float32), (BLOCK_M, GROUPS, 16))
                a = tl.reshape(fake_quantize_groups(xg, gx, inv_gx), (BLOCK_M, BLOCK_K)).to(OP_DTYPE)
            else:
                a = x.to(OP_DTYPE)
                if PAIRED_K == PAIRED_IN_KERNEL:
                    a = pair_permute_k(a, BLOCK_K)
        if INTERPRET:
            # The interpreter's bf16 dot is not exact; fp32 operands are (they are exact values).
            if W_AS_B:
                acc += tl.dot(a.to(tl.float32), tl.trans(w.to(tl.float32)), input_precision="ieee")
            else:
                acc += tl.dot(w.to(tl.float32), tl.trans(a.to(tl.float32)), input_precision="ieee")
        elif W_AS_B:
            acc = tl.dot(a, tl.trans(w), acc)
        else:
            acc = tl.dot(w, tl.trans(a), acc)
        w_ptrs += w_step
        ws_ptrs += GROUPS
        a_ptrs += a_step

    allow_dependents(PDL)  # NVFP4_TRITON_PDL=late: the next kernel may be scheduled
    if W_AS_B:
        acc = tl.trans(acc)  # [BLOCK_N, BLOCK_M] for the shared epilogue (once per program)
    if PAIRED_K:
        acc = acc * fold(OP_DTYPE)  # exact: a power of two
    if SPLITK_TICKET and WRITE_PARTIAL:
        finish_tile(acc, offs_n, offs_m, M, N, pid_k, SPLIT_K, out_ptr, partial_ptr, counter_ptr, alpha_ptr, bias_ptr,
                    HAS_BIAS, INTERPRET)
    else:
        store_output_tile(acc, offs_n, offs_m, M, N, pid_k, out_ptr, partial_ptr, alpha_ptr, bias_ptr,
                          WRITE_PARTIAL, HAS_BIAS, INTERPRET)


@triton.jit
def nvfp4_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr,
    counter_ptr,  # int32, one per output tile, zero between launches (SPLITK_TICKET only)
    M, N, K, stride_am,
    stride_wn,  # K/2: passed separately so Triton sees its divisibility (16-byte loads)
    stride_ws,  # K/16
    TILES_PER_SPLIT,  # K tiles per split (runtime: one compiled kernel serves every split)
    SPLIT_K,  # the grid's third dimension; only the autotuner's configs use it by name
    M_BUCKET,  # an autotuning key only (power of two >= M)
    A_MODE: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, W_AS_B: tl.constexpr = False,
    PAIRED_K: tl.constexpr = 0,  # paired_decode.PAIRED_OFF / PAIRED_OPERAND / PAIRED_IN_KERNEL
    PDL: tl.constexpr = False,  # programmatic dependent launch (grid_dependency.py)
    SPLITK_TICKET: tl.constexpr = False,  # the last program of a tile reduces the split-K partials
):
    wait_for_previous_grid(PDL)
    _gemm_body(
        a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr, counter_ptr,
        M, N, K, stride_am, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K, A_MODE, HAS_BIAS, WRITE_PARTIAL, OP_DTYPE,
        USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_M, BLOCK_K, W_AS_B, PAIRED_K, PDL, SPLITK_TICKET,
    )


@triton.jit
def nvfp4_gemm_kernel_interpreted(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr, counter_ptr,
    M, N, K, stride_am, stride_wn, stride_ws,
    TILES_PER_SPLIT: tl.constexpr,  # the interpreter needs Python ints as loop bounds
    SPLIT_K: tl.constexpr, M_BUCKET,
    A_MODE: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, OP_DTYPE: tl.constexpr,
    USE_ASM: tl.constexpr, INTERPRET: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, W_AS_B: tl.constexpr = False,
    PAIRED_K: tl.constexpr = 0,
    SPLITK_TICKET: tl.constexpr = False,
):
    _gemm_body(
        a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, alpha_ptr, bias_ptr, gx_ptr, out_ptr, partial_ptr, counter_ptr,
        M, N, K, stride_am, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K, A_MODE, HAS_BIAS, WRITE_PARTIAL, OP_DTYPE,
        USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_M, BLOCK_K, W_AS_B, PAIRED_K, 0, SPLITK_TICKET,
    )
