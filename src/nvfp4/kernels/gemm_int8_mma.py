"""W4A4 small-M GEMM on the int8 tensor cores, exact: block-diagonal activation tiles.

Why int8: ``2 * e2m1`` is an integer in -12..12 for weight and activation alike, so a 16-K
group contributes ``(sw * sx / 4) * I`` with ``I`` an exact integer sum (``int_dot.py``). The
float paths spend ~7-8 instructions per weight element on the fp16 decode (``fp_bits``); the
int8 decode is ``prmt`` byte lookups (~1.4 per element), and the tensor cores do the sums.

The catch is the per-16 scales: an int8 MMA step is at least 32 deep in K (two groups), and
each (row, group, column) sum needs its own ``sw[n, g] * sx[m, g]``. So the left operand is
*block-diagonal*: a K step of ``G = BLOCK_K / 16`` groups and ``R`` activation rows becomes
``G * R`` MMA rows, row ``g * R + r`` holding activation row ``r``'s values in group ``g``'s 16
columns and zeros elsewhere. One MMA ``[G*R, BLOCK_K] @ [BLOCK_K, BLOCK_N]`` then gives every
per-group sum ``I[g, r, n]`` separately (int32, exact), and the epilogue of the K step adds
``I * sx[r, g] * sw[n, g]`` to an fp32 accumulator (three operations per accumulator
element, i.e. ``3 R / 16`` per weight element; exact terms: 12 + 4 + 4 significant bits).
The zeros cost tensor-core work (``G`` times the useful MACs), which is idle at decode sizes
anyway; the rows are summed over ``g`` once, after the K loop. This is what the FP4 tensor
cores of Blackwell compute, in the same fp32 accumulation (over K/16 exact terms).

The weight's K order: ``prmt`` turns one 32-bit word (8 codes, element ``8j + i`` in nibble
``i``) into two int8x4 words, elements ``8j..8j+3`` and ``8j+4..8j+7``; the tile is assembled
from them in that natural order (``join`` + ``permute``: a relabelling, no data movement).

Activation: int8 ``2 * e2m1`` values ``[M, K]`` and fp32 block scales ``[M, K/16]`` from
``activation_quant`` (``OUT_INT8``, the operands of the integer GEMV too). Split-K: fp32
partials reduced by ``splitk_reduce`` (``SPLIT_K > 1``), otherwise the epilogue is fused.
"""

import triton
import triton.language as tl

from .fp_bits import linear_epilogue
from .int_dot import e4m3_byte_to_f32_times_2m8, fp4_word_to_int8, signed_int8_words

# Each term carries 2^-8 from the weight-scale decode and 1/4 from the two factors of 2 in I.
TERM_CORRECTION = tl.constexpr(64.0)


@triton.jit
def fp4_bytes_to_int8_asm(packed):
    """Packed FP4 bytes (uint8, 4 per register = 8 codes) -> two int8 tensors of the same
    shape: the signed ``2 * e2m1`` values of codes 0-3 and 4-7 of each 4-byte word (the
    ``int_dot`` algorithm: magnitudes of the positive / negative codes by ``prmt``, then one
    signed word each)."""
    return tl.inline_asm_elementwise(
        asm="""
        {
        .reg .b32 l0, l1, f, p, n, w2, f2, b;
        mov.b32 l0, 0x03020100;
        mov.b32 l1, 0x0C080604;
        mov.b32 b, 0x80808080;
        xor.b32 f, $2, 0x88888888;
        shr.u32 w2, $2, 16;
        shr.u32 f2, f, 16;
        prmt.b32 p, l0, l1, $2;
        prmt.b32 n, l0, l1, f;
        sub.u32 n, b, n;
        xor.b32 n, n, b;
        or.b32 $0, n, p;
        prmt.b32 p, l0, l1, w2;
        prmt.b32 n, l0, l1, f2;
        sub.u32 n, b, n;
        xor.b32 n, n, b;
        or.b32 $1, n, p;
        }
        """,
        constraints="=r,=r,r",
        args=[packed],
        dtype=(tl.int8, tl.int8),
        is_pure=True,
        pack=4,
    )


@triton.jit
def _fp4_words_to_int8_portable(packed):
    """The same values as ``fp4_bytes_to_int8_asm`` for the interpreter (int32 arithmetic):
    ``packed [R, C]`` uint8 -> ``(codes 0-3, codes 4-7)`` of each 4-byte word, int8 ``[R, C]``."""
    R: tl.constexpr = packed.shape[0]
    C: tl.constexpr = packed.shape[1]
    b = tl.reshape(packed.to(tl.int32), (R, C // 4, 4))
    word = tl.sum(b << (tl.arange(0, 4) * 8)[None, None, :], axis=2)  # disjoint bytes: sum = or
    lut_low = tl.full(word.shape, 0x03020100, tl.int32)
    lut_high = tl.full(word.shape, 0x0C080604, tl.int32)
    p0, p1, n0, n1 = fp4_word_to_int8(word, lut_low, lut_high, False)
    s0 = signed_int8_words(p0, n0)
    s1 = signed_int8_words(p1, n1)
    shifts = (tl.arange(0, 4) * 8)[None, None, :]
    lo = tl.reshape(((s0[:, :, None] << (24 - shifts)) >> 24), (R, C))  # sign-extended bytes
    hi = tl.reshape(((s1[:, :, None] << (24 - shifts)) >> 24), (R, C))
    return lo.to(tl.int8), hi.to(tl.int8)


@triton.jit
def _weight_int8_tile(packed, USE_ASM: tl.constexpr):
    """``packed [BN, BK/2]`` -> int8 ``2 * e2m1`` values ``[BN, BK]`` in natural K order."""
    BN: tl.constexpr = packed.shape[0]
    HALF: tl.constexpr = packed.shape[1]
    if USE_ASM:
        lo, hi = fp4_bytes_to_int8_asm(packed)
    else:
        lo, hi = _fp4_words_to_int8_portable(packed)
    # lo[n, 4j + i] = element 8j + i, hi[n, 4j + i] = element 8j + 4 + i.
    both = tl.join(tl.reshape(lo, (BN, HALF // 4, 4)), tl.reshape(hi, (BN, HALF // 4, 4)))  # [.., 4, 2]
    return tl.reshape(tl.permute(both, (0, 1, 3, 2)), (BN, 2 * HALF))


@triton.jit
def _gemm_int8_body(
    xq_ptr, xs_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, USE_ASM: tl.constexpr,
    INTERPRET: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    G: tl.constexpr = BLOCK_K // 16
    GR: tl.constexpr = G * ROWS
    HALF_K: tl.constexpr = BLOCK_K // 2
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows_w = (offs_n % N).to(tl.int64)  # clamped, never stored: unmasked 16-byte loads
    # Block-diagonal row i of the left operand: activation row r = i % ROWS, group g = i // ROWS.
    i = tl.arange(0, GR)
    g_of_i = i // ROWS
    rows_x = ((pid_m * ROWS + i % ROWS) % M).to(tl.int64)
    k_first = pid_k * TILES_PER_SPLIT * BLOCK_K
    kk = tl.max_contiguous(tl.multiple_of(tl.arange(0, BLOCK_K), BLOCK_K), BLOCK_K)
    kh = tl.max_contiguous(tl.multiple_of(tl.arange(0, HALF_K), HALF_K), HALF_K)
    kg = tl.arange(0, G)
    in_block = (kk // 16)[None, :] == g_of_i[:, None]  # [GR, BLOCK_K]
    x_ptrs = xq_ptr + rows_x[:, None] * stride_xm + (k_first + kk)[None, :]
    xs_ptrs = xs_ptr + rows_x * stride_ws + k_first // 16 + g_of_i
    w_ptrs = w_ptr + rows_w[:, None] * stride_wn + (k_first // 2 + kh)[None, :]
    ws_ptrs = ws_ptr + rows_w[None, :] * stride_ws + (k_first // 16 + kg)[:, None]  # [G, BLOCK_N]

    acc = tl.zeros((GR, BLOCK_N), dtype=tl.float32)
    for t in tl.range(0, TILES_PER_SPLIT):
        k0 = k_first + t * BLOCK_K
        if EVEN_K:
            a = tl.load(x_ptrs, mask=in_block, other=0)
            sx = tl.load(xs_ptrs)
            w_packed = tl.load(w_ptrs)
            sw_bytes = tl.load(ws_ptrs)
        else:
            k_ok = (k0 + kk)[None, :] < K
            a = tl.load(x_ptrs, mask=in_block & k_ok, other=0)
            g_ok = k0 // 16 + g_of_i < K // 16
            sx = tl.load(xs_ptrs, mask=g_ok, other=0.0)
            w_packed = tl.load(w_ptrs, mask=(k0 // 2 + kh)[None, :] < K // 2, other=0)
            sw_bytes = tl.load(ws_ptrs, mask=(k0 // 16 + kg)[:, None] < K // 16, other=0)
        w = _weight_int8_tile(w_packed, USE_ASM)
        if INTERPRET:
            # The interpreter's int8 dot could overflow int8; fp32 holds these sums exactly.
            d = tl.dot(a.to(tl.float32), tl.trans(w.to(tl.float32)), input_precision="ieee")
        else:
            d = tl.dot(a, tl.trans(w), out_dtype=tl.int32).to(tl.float32)
        sw = e4m3_byte_to_f32_times_2m8(sw_bytes.to(tl.int32))  # [G, BLOCK_N]
        sw_rows = tl.reshape(tl.broadcast_to(sw[:, None, :], (G, ROWS, BLOCK_N)), (GR, BLOCK_N))
        acc += (d * sx[:, None]) * sw_rows
        x_ptrs += BLOCK_K
        xs_ptrs += G
        w_ptrs += HALF_K
        ws_ptrs += G

    y = tl.sum(tl.reshape(acc, (G, ROWS, BLOCK_N)), axis=0) * TERM_CORRECTION  # [ROWS, BLOCK_N]
    offs_m = pid_m * ROWS + tl.arange(0, ROWS)
    n_mask = offs_n < N
    out_mask = (offs_m < M)[:, None] & n_mask[None, :]
    m64 = offs_m.to(tl.int64)
    n64 = offs_n.to(tl.int64)
    if WRITE_PARTIAL:
        base = partial_ptr + pid_k.to(tl.int64) * M * N
        tl.store(base + m64[:, None] * N + n64[None, :], y, mask=out_mask)
    else:
        alpha = tl.load(alpha_ptr + offs_n, mask=n_mask, other=0.0)
        bias = tl.load(bias_ptr + offs_n, mask=n_mask & HAS_BIAS, other=0.0)
        o = linear_epilogue(y, alpha[None, :], bias[None, :], out_ptr.dtype.element_ty, HAS_BIAS, INTERPRET)
        tl.store(out_ptr + m64[:, None] * N + n64[None, :], o, mask=out_mask)


@triton.jit
def gemm_int8_mma_kernel(
    xq_ptr, xs_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm,
    stride_wn,  # K/2: passed alone so Triton sees its divisibility
    stride_ws,  # K/16 (also the row stride of the activation scales)
    TILES_PER_SPLIT,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, USE_ASM: tl.constexpr,
    INTERPRET: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _gemm_int8_body(
        xq_ptr, xs_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
        M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT,
        ROWS, HAS_BIAS, WRITE_PARTIAL, USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_K,
    )


@triton.jit
def gemm_int8_mma_kernel_interpreted(
    xq_ptr, xs_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws,
    TILES_PER_SPLIT: tl.constexpr,  # the interpreter needs a Python int as loop bound
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, USE_ASM: tl.constexpr,
    INTERPRET: tl.constexpr, EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _gemm_int8_body(
        xq_ptr, xs_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
        M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT,
        ROWS, HAS_BIAS, WRITE_PARTIAL, USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_K,
    )
