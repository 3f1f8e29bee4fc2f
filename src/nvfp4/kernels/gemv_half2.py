"""Decode-sized GEMV over a dense fp16/bf16 activation (M <= 4): W4A16, and the W4A4 float path.

``out[m, n] = alpha[n] * sum_k a[m, k] * e2m1(q[n, k]) * s[n, k // 16]`` with the
products exact and the sums fp32, as in ``gemv.py``, in fewer instructions per weight
element (the CUDA-core GEMV is bound by instruction issue, not by the weight stream):

* **Pairs 16 bits apart, no byte shuffle.** A 32-bit word of the checkpoint layout holds
  elements ``e0..e7`` (byte ``j``: ``e2j`` in the low nibble, ``e2j+1`` in the high one), so
  ``(e0, e4), (e1, e5), (e2, e6), (e3, e7)`` sit exactly 16 bits apart: one shift and mask
  moves both magnitudes of a pair into the exponent/mantissa bits of an fp16x2 word, one
  more its two signs, with no ``prmt``. Read as fp16 that is ``e2m1 * 2^-14`` (code 1 lands
  on a subnormal, which half-precision arithmetic keeps).
* **The block scale folded into the one packed multiply.** ``e2m1 * 2^-14`` times
  ``s * 2^7`` (fp16: at most 448 * 128 = 57344) is ``e2m1 * s * 2^-7``, exact in fp16
  (6 significant bits, magnitude 2^-17..21). Converted to fp32 and multiplied by the fp32
  activation, each product is ``a * w * 2^-7``, exact; the ``2^7`` comes back as one exact
  multiply of the fp32 sum before ``alpha``. A scale byte 0x7F (NaN) gives NaN, like the
  reference.
* **Element-wise fp32 accumulators**, summed across K once after the loop, and **split-K
  reduced in the kernel** by the last program of each N tile (``atomic_add`` ticket, as in
  ``gemv_dp4a.py``): one launch per linear.

The compiled sm_90 K loop (``benchmarks/sass_loop_stats.py``, bf16) takes 6.0-6.8
instructions per weight element at M = 1 (``gemv.py``: 9.8; the tensor-core path ~7.5-8):
about 2 for the decode, 1 for the fp16 -> fp32 conversion, 1 FMA per activation row, the
rest addresses, activation loads and the scale. Measured on an H100 it is nevertheless not
faster than the tensor-core path (docs/performance.md, "the half2-decode GEMV": the weight
stream's bytes in flight, not instruction issue, limit it), so the tuner offers it only on
request (``ops/launch_gemv_half2.py``).

Range: the products are scaled by 2^-7 before the fp32 sum, so a product ``|a * w|`` below
2^-119 (possible only for bf16 activations under ~2^-109) is rounded as an fp32 subnormal,
where the reference keeps it normal; fp16 activations cannot get there. Everything else
equals the reference up to fp32 summation order.
"""

import triton
import triton.language as tl

from .fp_bits import e2m1_word_pairs_times, e4m3_byte_to_f32
from .grid_dependency import allow_dependents, wait_for_previous_grid
from .splitk_ticket import finish_rows

# The weight products carry 2^-7 (see the module docstring); the sum gets it back exactly.
SCALE_FOLD = tl.constexpr(128.0)


@triton.jit
def _decode_word_asm(words, scale_bytes):
    """One int32 word (8 FP4 codes) and its E4M3 block-scale byte (int32) -> the 8 exact fp32
    values ``e2m1 * s * 2^-7`` in the order e0, e4, e1, e5, e2, e6, e3, e7.

    The scale: ``(b & 0x7F) << 7`` is the fp16 ``|s| * 2^-8`` (E4M3 subnormals land on fp16
    subnormals), put in both halves by one multiply by ``2^7 + 2^23``, the sign bit added to
    both by one multiply-add, then times ``2^15``: ``s * 2^7``; bytes 0x7F / 0xFF (NaN) give the
    fp16 NaN. (Quantizers write non-negative scales; any byte decodes as the reference does.)"""
    return tl.inline_asm_elementwise(
        asm="""
        {
        .reg .b32 m, s, h, t, c, two15, sgn;
        .reg .b16 lo, hi;
        .reg .pred nan;
        mov.b32 two15, 0x78007800;
        and.b32 t, $9, 0x7F; and.b32 sgn, $9, 0x80; mul.lo.u32 c, t, 0x00800080; mad.lo.u32 c, sgn, 0x01000100, c;
        mul.rn.f16x2 c, c, two15;
        setp.eq.u32 nan, t, 0x7F; selp.b32 c, 0x7E007E00, c, nan;
        shl.b32 m, $8, 9;  and.b32 m, m, 0x0E000E00; shl.b32 s, $8, 12; and.b32 s, s, 0x80008000; or.b32 h, m, s;
        mul.rn.f16x2 h, h, c; mov.b32 {lo, hi}, h; cvt.f32.f16 $0, lo; cvt.f32.f16 $1, hi;
        shl.b32 m, $8, 5;  and.b32 m, m, 0x0E000E00; shl.b32 s, $8, 8;  and.b32 s, s, 0x80008000; or.b32 h, m, s;
        mul.rn.f16x2 h, h, c; mov.b32 {lo, hi}, h; cvt.f32.f16 $2, lo; cvt.f32.f16 $3, hi;
        shl.b32 m, $8, 1;  and.b32 m, m, 0x0E000E00; shl.b32 s, $8, 4;  and.b32 s, s, 0x80008000; or.b32 h, m, s;
        mul.rn.f16x2 h, h, c; mov.b32 {lo, hi}, h; cvt.f32.f16 $4, lo; cvt.f32.f16 $5, hi;
        shr.b32 m, $8, 3;  and.b32 m, m, 0x0E000E00; and.b32 s, $8, 0x80008000; or.b32 h, m, s;
        mul.rn.f16x2 h, h, c; mov.b32 {lo, hi}, h; cvt.f32.f16 $6, lo; cvt.f32.f16 $7, hi;
        }
        """,
        constraints="=r,=r,=r,=r,=r,=r,=r,=r,r,r",
        args=[words, scale_bytes],
        dtype=(tl.float32,) * 8,
        is_pure=True,
        pack=1,
    )


@triton.jit
def _decode_word_portable(words, scale_bytes):
    """``_decode_word_asm`` in plain Triton (interpreter, GPUs without the PTX): the same
    8 fp32 values, from the E2M1 table and the fp32 scale times 2^-7 (exact)."""
    return e2m1_word_pairs_times(words, e4m3_byte_to_f32(scale_bytes) * (1.0 / 128.0))


@triton.jit
def _row_products(acc, x_ptr, r, k0, M, K, stride_xm, words_idx, d0, d4, d1, d5, d2, d6, d3, d7,
                  EVEN_K: tl.constexpr):
    """``acc += sum_e d_e * a[r, k0 + 8 word + e]`` element-wise (rows past M, columns past K
    read zeros)."""
    cols = k0 + words_idx[:, None] * 8 + tl.arange(0, 8)[None, :]
    mask = r < M
    if not EVEN_K:
        mask = mask & (cols < K)
    x8 = tl.load(x_ptr + r * stride_xm + cols, mask=mask, other=0.0).to(tl.float32)
    # column e = 4a + 2b + c of the word: split off c, then b, then a
    c0, c1 = tl.split(tl.reshape(x8, (x8.shape[0], 2, 2, 2)))
    e0_e4, e2_e6 = tl.split(c0)
    e1_e5, e3_e7 = tl.split(c1)
    x0, x4 = tl.split(e0_e4)
    x2, x6 = tl.split(e2_e6)
    x1, x5 = tl.split(e1_e5)
    x3, x7 = tl.split(e3_e7)
    # one FMA per element into the element-wise accumulator
    acc = acc + d0 * x0[None, :]
    acc = acc + d4 * x4[None, :]
    acc = acc + d1 * x1[None, :]
    acc = acc + d5 * x5[None, :]
    acc = acc + d2 * x2[None, :]
    acc = acc + d6 * x6[None, :]
    acc = acc + d3 * x3[None, :]
    acc = acc + d7 * x7[None, :]
    return acc


@triton.jit
def _gemv_half2_body(
    x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr, INTERPRET: tl.constexpr,
    EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, NUM_STAGES: tl.constexpr,
    PDL: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    W: tl.constexpr = BLOCK_K // 8  # int32 words per row per K tile
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Rows past N are clamped to valid rows (never stored): unmasked, vectorizable loads.
    rows_w = (offs_n % N).to(tl.int64)
    words_idx = tl.max_contiguous(tl.multiple_of(tl.arange(0, W), W), W)
    k_first = pid_k * TILES_PER_SPLIT * BLOCK_K
    w_ptrs = w_ptr.to(tl.pointer_type(tl.int32)) + rows_w[:, None] * (stride_wn // 4) + (k_first // 8 + words_idx)[None, :]
    # Each word's scale byte (two words per 16-group): same [BLOCK_N, W] shape as the words,
    # repeated addresses served by L1.
    ws_ptrs = ws_ptr + rows_w[:, None] * stride_ws + (k_first // 16 + words_idx // 2)[None, :]

    acc0 = tl.zeros((BLOCK_N, W), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_N, W), dtype=tl.float32)
    acc2 = tl.zeros((BLOCK_N, W), dtype=tl.float32)
    acc3 = tl.zeros((BLOCK_N, W), dtype=tl.float32)
    for i in tl.range(0, TILES_PER_SPLIT, num_stages=NUM_STAGES):
        k0 = k_first + i * BLOCK_K
        if EVEN_K:
            words = tl.load(w_ptrs)
            scale_bytes = tl.load(ws_ptrs)
        else:  # words past K read as code 0 with scale 0: zero products
            in_k = (k0 // 8 + words_idx)[None, :] < K // 8
            words = tl.load(w_ptrs, mask=in_k, other=0)
            scale_bytes = tl.load(ws_ptrs, mask=in_k, other=0)
        if USE_ASM:
            d0, d4, d1, d5, d2, d6, d3, d7 = _decode_word_asm(words, scale_bytes.to(tl.int32))
        else:
            d0, d4, d1, d5, d2, d6, d3, d7 = _decode_word_portable(words, scale_bytes.to(tl.int32))
        acc0 = _row_products(acc0, x_ptr, 0, k0, M, K, stride_xm, words_idx, d0, d4, d1, d5, d2, d6, d3, d7, EVEN_K)
        if ROWS > 1:
            acc1 = _row_products(acc1, x_ptr, 1, k0, M, K, stride_xm, words_idx, d0, d4, d1, d5, d2, d6, d3, d7, EVEN_K)
        if ROWS > 2:
            acc2 = _row_products(acc2, x_ptr, 2, k0, M, K, stride_xm, words_idx, d0, d4, d1, d5, d2, d6, d3, d7, EVEN_K)
            acc3 = _row_products(acc3, x_ptr, 3, k0, M, K, stride_xm, words_idx, d0, d4, d1, d5, d2, d6, d3, d7, EVEN_K)
        w_ptrs += W
        ws_ptrs += BLOCK_K // 16

    allow_dependents(PDL)  # NVFP4_TRITON_PDL=late: the next kernel may be scheduled
    finish_rows(tl.sum(acc0, axis=1), tl.sum(acc1, axis=1), tl.sum(acc2, axis=1), tl.sum(acc3, axis=1), SCALE_FOLD,
                pid_n, pid_k, offs_n, M, N, SPLIT_K, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr, ROWS,
                HAS_BIAS, INTERPRET)


@triton.jit
def gemv_half2_kernel(
    x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr,
    M, N, K, stride_xm,
    stride_wn,  # K/2: passed alone so Triton sees its divisibility (16-byte loads)
    stride_ws,  # K/16
    TILES_PER_SPLIT,
    SPLIT_K,  # the grid's second dimension (1 is specialised by Triton: no reduction code)
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr, INTERPRET: tl.constexpr,
    EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, NUM_STAGES: tl.constexpr,
    PDL: tl.constexpr = False,  # programmatic dependent launch (grid_dependency.py)
):
    wait_for_previous_grid(PDL)
    _gemv_half2_body(
        x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr,
        M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K,
        ROWS, HAS_BIAS, USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_K, NUM_STAGES, PDL,
    )


@triton.jit
def gemv_half2_kernel_interpreted(
    x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws,
    TILES_PER_SPLIT: tl.constexpr,  # the interpreter needs Python ints as loop bounds
    SPLIT_K: tl.constexpr,
    ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, USE_ASM: tl.constexpr, INTERPRET: tl.constexpr,
    EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, NUM_STAGES: tl.constexpr,
):
    _gemv_half2_body(
        x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, counter_ptr,
        M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT, SPLIT_K,
        ROWS, HAS_BIAS, USE_ASM, INTERPRET, EVEN_K, BLOCK_N, BLOCK_K, NUM_STAGES, 0,
    )
