"""W4A4 decode (M <= 4) with integer dot products: one kernel per linear layer.

The arithmetic is in ``int_dot.py``: per 16-element group an exact integer
``I = sum (2 e2m1(qw)) (2 e2m1(qx))`` from ``prmt`` + ``dp4a``, then ``acc += I * (sw * sx)``
in fp32 (exact terms; only the fp32 accumulation rounds, over K/16 terms instead of K).
About 2 instructions per weight element at M = 1, against 6-12 for the float decode paths,
so the weight stream, not instruction issue, sets the speed.

One program owns ``BLOCK_N`` weight rows and one K slice (split-K). Per K tile it loads the
``[BLOCK_N, BLOCK_K/16]`` groups as int64 (8 bytes = 16 codes, checkpoint layout as is) and
their E4M3 scale bytes, and the activation tile:

* ``FUSED_QUANT``: ``x`` (bf16/fp16) is quantized in registers exactly as the activation
  kernel does (vLLM's ``ref_nvfp4_quant``; each program re-quantizes only its K slice);
* otherwise: int8 ``2 * e2m1`` values and fp32 block scales written by
  ``activation_quant`` (``OUT_INT8``).

Split-K without a second launch (``SPLIT_K > 1``): the last program of each N tile sums the
partials in split order and applies the epilogue (``splitk_ticket.finish_rows``). Epilogue
as everywhere: ``acc * alpha`` in fp32, cast, ``+ bias``.
"""

import triton
import triton.language as tl

from .fp_bits import ASM_SM89, e2m1_twice, quantize_groups, safe_reciprocal
from .grid_dependency import allow_dependents, wait_for_previous_grid
from .splitk_ticket import finish_rows
from .int_dot import (
    e4m3_byte_to_f32_sm89, e4m3_byte_to_f32_times_2m8, fp4_word_to_int8, group_int_dot, group_int_dot_signed, load_lut,
    signed_int8_words,
)


@triton.jit
def _weight_scales(sbytes, USE_ASM: tl.constexpr):
    """The weight's E4M3 block scales as fp32: exact at ``ASM_SM89`` (one conversion each),
    else times 2^-8 (bit placement in an fp16; ``_term_correction`` undoes either)."""
    if USE_ASM == ASM_SM89:
        return e4m3_byte_to_f32_sm89(sbytes)
    else:
        return e4m3_byte_to_f32_times_2m8(sbytes)


@triton.jit
def _term_correction(USE_ASM: tl.constexpr):
    """What each term lacks: 1/4 for the two factors of 2 in I, times 2^8 where the scales
    carry 2^-8. A power of two either way, so every level gives the same bits."""
    if USE_ASM == ASM_SM89:
        return 0.25
    else:
        return 64.0


@triton.jit
def _activation_words(x_ptr, xs_ptr, gx, inv_gx, r, k0, M, K, stride_xm, FUSED_QUANT: tl.constexpr, BLOCK_K: tl.constexpr):
    """Row ``r``'s activation for the K tile at ``k0``: four int32 words per group (int8x4
    ``2*e2m1`` values of elements 0-3, 4-7, 8-11, 12-15) as ``[G]`` tensors, and the fp32
    block scales ``[G]``. Rows past M read as zero."""
    G: tl.constexpr = BLOCK_K // 16
    if FUSED_QUANT:
        cols = k0 + tl.arange(0, BLOCK_K)
        mask = (cols < K) & (r < M)
        x = tl.load(x_ptr + r * stride_xm + cols, mask=mask, other=0.0).to(tl.float32)
        scale, scaled = quantize_groups(tl.reshape(x, (1, G, 16)), gx, inv_gx)
        sx = tl.reshape(scale, (G,))
        twice = e2m1_twice(scaled)
        b = tl.reshape(twice.to(tl.int32) & 0xFF, (G, 4, 4))
        words = tl.sum(b << (tl.arange(0, 4) * 8)[None, None, :], axis=2)  # disjoint bytes: sum = or
    else:
        g = k0 // 16 + tl.arange(0, G)
        q = tl.arange(0, 4)
        gmask = (g < K // 16) & (r < M)
        word_ptr = x_ptr.to(tl.pointer_type(tl.int32)) + r * (stride_xm // 4)
        words = tl.load(word_ptr + (g * 4)[:, None] + q[None, :], mask=gmask[:, None], other=0)
        sx = tl.load(xs_ptr + r * (K // 16) + g, mask=gmask, other=0.0)
    even, odd = tl.split(tl.reshape(words, (G, 2, 2)))  # words (0, 2) and (1, 3)
    x0, x2 = tl.split(even)
    x1, x3 = tl.split(odd)
    return x0, x1, x2, x3, sx


@triton.jit
def _row_terms(p0, p1, p2, p3, n0, n1, n2, n3, sw, x0, x1, x2, x3, sx, SIGNED: tl.constexpr, USE_ASM: tl.constexpr):
    """fp32 ``I * sw * sx * 2^-8`` per (row n, group) of one activation row: exact.
    ``SIGNED``: ``p*`` are signed weight words (``signed_int8_words``) and ``n*`` unused."""
    if SIGNED:
        i = group_int_dot_signed(p0, p1, p2, p3, x0[None, :], x1[None, :], x2[None, :], x3[None, :], USE_ASM)
    else:
        i = group_int_dot(p0, p1, p2, p3, n0, n1, n2, n3, x0[None, :], x1[None, :], x2[None, :], x3[None, :], USE_ASM)
    return i.to(tl.float32) * (sw * sx[None, :])


@triton.jit
def _gemv_dp4a_body(
    x_ptr, xs_ptr, gx_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr, lut_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K,
    ROWS: tl.constexpr, FUSED_QUANT: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr,
    INTERPRET: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    NUM_STAGES: tl.constexpr, PDL: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    G: tl.constexpr = BLOCK_K // 16
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Rows past N are clamped to valid rows (never stored): unmasked, vectorizable loads.
    rows_w = (offs_n % N).to(tl.int64)
    g = tl.max_contiguous(tl.multiple_of(tl.arange(0, G), G), G)
    k_first = pid_k * TILES_PER_SPLIT * BLOCK_K
    # One int64 = the 8 bytes (16 codes) of a group; stride_wn = K/2 is a multiple of 8.
    w_ptrs = w_ptr.to(tl.pointer_type(tl.int64)) + rows_w[:, None] * (stride_wn // 8) + (k_first // 16 + g)[None, :]
    # The scale bytes are read 2 per thread (g written so that Triton proves only 2-element
    # contiguity): that gives their load the weight words' layout (2 int64 per thread).
    # With 8-byte scale loads the layouts differ and Triton moved every row's accumulator
    # through shared memory in every K step to match them.
    g_pairs = (g // 2) * 2 + g % 2
    ws_ptrs = ws_ptr + rows_w[:, None] * stride_ws + (k_first // 16 + g_pairs)[None, :]
    lut_low, lut_high = load_lut(lut_ptr)
    gx = 1.0
    inv_gx = 1.0
    if FUSED_QUANT:
        gx = tl.load(gx_ptr)
        inv_gx = safe_reciprocal(gx)

    # Several activation rows: sign the weight words once per group (2 ops per word) and
    # run 4 dp4a per row instead of 8 (one row: the 8 dp4a are cheaper than the signing).
    SIGNED: tl.constexpr = ROWS > 1
    acc0 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    acc3 = tl.zeros((BLOCK_N, G), dtype=tl.float32)
    # NUM_STAGES > 1: Triton's pipeliner stages the weight/scale tiles through shared memory
    # with cp.async (NUM_STAGES - 1 tiles in flight besides the one being computed).
    for i in tl.range(0, TILES_PER_SPLIT, num_stages=NUM_STAGES):
        k0 = k_first + i * BLOCK_K
        if EVEN_K:
            w = tl.load(w_ptrs)
            sbytes = tl.load(ws_ptrs)
        else:
            gmask = (k0 // 16 + g)[None, :] < K // 16
            w = tl.load(w_ptrs, mask=gmask, other=0)
            sbytes = tl.load(ws_ptrs, mask=gmask, other=0)
        sw = _weight_scales(sbytes.to(tl.int32), USE_ASM)
        p0, p1, n0, n1 = fp4_word_to_int8((w & 0xFFFFFFFF).to(tl.int32), lut_low, lut_high, USE_ASM)
        p2, p3, n2, n3 = fp4_word_to_int8((w >> 32).to(tl.int32), lut_low, lut_high, USE_ASM)
        if SIGNED:
            p0 = signed_int8_words(p0, n0)
            p1 = signed_int8_words(p1, n1)
            p2 = signed_int8_words(p2, n2)
            p3 = signed_int8_words(p3, n3)
        x0, x1, x2, x3, sx = _activation_words(x_ptr, xs_ptr, gx, inv_gx, 0, k0, M, K, stride_xm, FUSED_QUANT, BLOCK_K)
        acc0 += _row_terms(p0, p1, p2, p3, n0, n1, n2, n3, sw, x0, x1, x2, x3, sx, SIGNED, USE_ASM)
        if ROWS > 1:
            x0, x1, x2, x3, sx = _activation_words(x_ptr, xs_ptr, gx, inv_gx, 1, k0, M, K, stride_xm, FUSED_QUANT, BLOCK_K)
            acc1 += _row_terms(p0, p1, p2, p3, n0, n1, n2, n3, sw, x0, x1, x2, x3, sx, SIGNED, USE_ASM)
        if ROWS > 2:
            x0, x1, x2, x3, sx = _activation_words(x_ptr, xs_ptr, gx, inv_gx, 2, k0, M, K, stride_xm, FUSED_QUANT, BLOCK_K)
            acc2 += _row_terms(p0, p1, p2, p3, n0, n1, n2, n3, sw, x0, x1, x2, x3, sx, SIGNED, USE_ASM)
            x0, x1, x2, x3, sx = _activation_words(x_ptr, xs_ptr, gx, inv_gx, 3, k0, M, K, stride_xm, FUSED_QUANT, BLOCK_K)
            acc3 += _row_terms(p0, p1, p2, p3, n0, n1, n2, n3, sw, x0, x1, x2, x3, sx, SIGNED, USE_ASM)
        w_ptrs += G
        ws_ptrs += G

    allow_dependents(PDL)  # NVFP4_TRITON_PDL=late: the next kernel may be scheduled
    finish_rows(tl.sum(acc0, axis=1), tl.sum(acc1, axis=1), tl.sum(acc2, axis=1), tl.sum(acc3, axis=1), _term_correction(USE_ASM),
                pid_n, pid_k, offs_n, M, N, SPLIT_K, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr, ROWS,
                HAS_BIAS, INTERPRET)


@triton.jit
def gemv_dp4a_kernel(
    x_ptr, xs_ptr, gx_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr, lut_ptr,
    M, N, K, stride_xm,
    stride_wn,  # K/2: passed alone so Triton sees its divisibility
    stride_ws,  # K/16
    TILES_PER_SPLIT,
    SPLIT_K,  # the grid's second dimension (1 is specialised by Triton: no reduction code)
    ROWS: tl.constexpr, FUSED_QUANT: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr,
    INTERPRET: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    NUM_STAGES: tl.constexpr,
    PDL: tl.constexpr = False,  # programmatic dependent launch (grid_dependency.py)
):
    wait_for_previous_grid(PDL)
    _gemv_dp4a_body(
        x_ptr, xs_ptr, gx_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr, lut_ptr,
        M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K,
        ROWS, FUSED_QUANT, HAS_BIAS, USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_K, NUM_STAGES, PDL,
    )


@triton.jit
def gemv_dp4a_kernel_interpreted(
    x_ptr, xs_ptr, gx_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr, lut_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws,
    TILES_PER_SPLIT: tl.constexpr,  # the interpreter needs Python ints as loop bounds
    SPLIT_K: tl.constexpr,
    ROWS: tl.constexpr, FUSED_QUANT: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr,
    INTERPRET: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    NUM_STAGES: tl.constexpr,
):
    _gemv_dp4a_body(
        x_ptr, xs_ptr, gx_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr, lut_ptr,
        M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K,
        ROWS, FUSED_QUANT, HAS_BIAS, USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_K, NUM_STAGES, 0,
    )
