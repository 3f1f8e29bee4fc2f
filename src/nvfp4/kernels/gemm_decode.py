"""Decode GEMM v2 (small M): tensor cores over a *repacked* weight, no interleave, no join.

Why a second small-M kernel: in ``gemm.py`` a packed byte holds elements ``2j`` and
``2j+1`` of one 16-group, so after decoding the two nibbles must be interleaved back into a
``[BLOCK_N, BLOCK_K]`` tile; on the H100 that tile then reaches the MMA register layout only
through 16 ``convert_layout``s per K step (docs/performance.md), and the kernel is
issue-bound at ~1x bf16.

Weight layout (built once by ``ops.launch_decode_v2.repack_weight_for_decode``, 4.5 bits/element
as before; K padded to a multiple of 32 with zero codes and zero scales): for each 32-wide
K block ``b`` of a row, byte ``j`` (0..15) holds ``code[32b + j]`` in its low nibble and
``code[32b + 16 + j]`` in its high nibble. So ``BLOCK_K/2`` contiguous bytes of a row are
``BLOCK_K/32`` blocks of 16 bytes, whose low nibbles are the even 16-groups and whose high
nibbles are the odd 16-groups: two ready ``[BLOCK_N, BLOCK_K/2]`` operands per K step
(``W_lo``, ``W_hi``), each multiplied by its own activation columns ``X_lo``, ``X_hi``
(a strided gather of the tiny activation): ``acc += W_lo @ X_lo^T + W_hi @ X_hi^T``.

Exact decode by bit placement: for a code ``c`` the fp16 with bits
``((c & 7) << 9) | ((c & 8) << 12)`` is exactly ``e2m1(c) * 2^-14`` (code 1 lands on the
fp16 subnormal 2^-15, 2..7 on normals; the sign bit moves to bit 15; fp16 arithmetic keeps
subnormals on NVIDIA GPUs and in the interpreter). Times the E4M3
scale in fp16 the product is a multiple of 2^-24 with at most 6 significant bits, at most
6 * 448 * 2^-14 = 0.164, hence exact in fp16 (tests/triton_decode_v2_cases.py checks all
16 codes x all E4M3 scales). The factor 2^14 is put back exactly:

* fp16 operands (W4A4's activation operand ``e2m1(q)*s`` is always exact in fp16; W4A16
  with fp16 ``x``): in the fp32 epilogue, ``(acc * 2^14) * alpha`` (the first product is a
  power-of-two scaling of an fp32 whose products are >= 2^-48: exact);
* bf16 operands (W4A16 with bf16 ``x``): the fp16 weight value is converted to bf16 (exact,
  6 significant bits) and multiplied by 2^14 in bf16 (exact), so tiny bf16 activations
  cannot underflow in fp32 products.

Swap-AB as in ``gemm.py``: ``acc[n, m]``, the dequantized weight is the left (register)
MMA operand, M fills the narrow MMA dimension (``BLOCK_M`` >= 16). Split-K writes fp32
partials (already multiplied by 2^14 where folded) reduced by ``splitk_reduce``;
``SPLIT_K == 1`` fuses the epilogue (``acc * alpha`` -> cast -> ``+ bias``).

``USE_ASM`` (GPU only; benchmarked against the portable decode) does the decode and the scale
multiply in packed PTX: 4 bytes per 32-bit register, ``prmt`` spreads bytes to 16-bit lanes,
shifts/masks place each nibble as above, one ``mul.rn.f16x2`` by the scale pair gives two
exact operand values (~3 instructions per element instead of ~10 for the element-wise int32
code Triton generates).

``PREFETCH_SCALES`` loads the next K step's scale bytes one iteration ahead (they are too
narrow for Triton's cp.async pipeline, which only stages the weight bytes and activation).

``SCALE_GATHER`` picks how the E4M3 scale meets its 16 elements: False multiplies a
``[BLOCK_N, BLOCK_K/32, 16]`` view by a ``[BLOCK_N, BLOCK_K/32]`` scale (broadcast, then a
merge of the two minor dims), True loads the scale per element (addresses repeat, L1 hits),
which keeps the whole weight expression element-wise from loads of the operand's shape;
the benchmark measures both.
"""

import triton
import triton.language as tl

from .fp_bits import store_output_tile

E2M1_TIMES_2M14 = tl.constexpr(16384.0)  # 2^14: what the bit-placement decode leaves out


@triton.jit
def fp16_e2m1_times_2m14(codes):
    """int32 E2M1 codes (0..15) -> fp16 ``e2m1(code) * 2^-14``, exact, by bit placement."""
    bits = ((codes & 7) << 9) | ((codes & 8) << 12)
    return bits.to(tl.uint16).to(tl.float16, bitcast=True)


@triton.jit
def fp16_from_e4m3_byte(b):
    """int32 E4M3FN bytes -> fp16, exactly (every E4M3 value is an fp16); 0x7F/0xFF -> NaN.

    Placing the E4M3 exponent/mantissa bits in fp16's gives the value times 2^-8 for
    normals and subnormals alike (fp16 has 8 more exponent bias); 256 puts it back.
    """
    bits = ((b & 0x7F) << 7) | ((b & 0x80) << 8)
    value = bits.to(tl.uint16).to(tl.float16, bitcast=True) * 256.0
    return tl.where((b & 0x7F) == 0x7F, float("nan"), value.to(tl.float32)).to(tl.float16)


@triton.jit
def decode_scaled_fp16_asm(byte_tile, scale_lo, scale_hi):
    """uint8 bytes + fp16 scales of the low/high nibbles (same shape) -> fp16
    ``(e2m1(lo) * 2^-14 * scale_lo, e2m1(hi) * 2^-14 * scale_hi)``, exact, in packed PTX."""
    return tl.inline_asm_elementwise(
        asm="""
        {
        .reg .b32 t0, t1, m, s, z;
        mov.b32 z, 0;
        prmt.b32 t0, $4, z, 0x4140;
        prmt.b32 t1, $4, z, 0x4342;
        shl.b32 m, t0, 9;  and.b32 m, m, 0x0E000E00; shl.b32 s, t0, 12; and.b32 s, s, 0x80008000; or.b32 m, m, s;
        mul.rn.f16x2 $0, m, $5;
        shl.b32 m, t1, 9;  and.b32 m, m, 0x0E000E00; shl.b32 s, t1, 12; and.b32 s, s, 0x80008000; or.b32 m, m, s;
        mul.rn.f16x2 $1, m, $6;
        shl.b32 m, t0, 5;  and.b32 m, m, 0x0E000E00; shl.b32 s, t0, 8;  and.b32 s, s, 0x80008000; or.b32 m, m, s;
        mul.rn.f16x2 $2, m, $7;
        shl.b32 m, t1, 5;  and.b32 m, m, 0x0E000E00; shl.b32 s, t1, 8;  and.b32 s, s, 0x80008000; or.b32 m, m, s;
        mul.rn.f16x2 $3, m, $8;
        }
        """,
        constraints="=r,=r,=r,=r,r,r,r,r,r",
        args=[byte_tile, scale_lo, scale_hi],
        dtype=(tl.float16, tl.float16),
        is_pure=True,
        pack=4,
    )


@triton.jit
def _weight_half(byte_tile, scale_bytes, CODES_SHIFT: tl.constexpr, SCALE_GATHER: tl.constexpr,
                 BLOCK_N: tl.constexpr, HALF: tl.constexpr):
    """One nibble half of a repacked byte tile + its E4M3 scale bytes -> fp16
    ``e2m1 * s * 2^-14`` ``[BLOCK_N, HALF]``, exact."""
    codes = (byte_tile.to(tl.int32) >> CODES_SHIFT) & 0xF
    w = fp16_e2m1_times_2m14(codes)
    scale = fp16_from_e4m3_byte(scale_bytes.to(tl.int32))
    if SCALE_GATHER:
        value = w * scale  # same shape [BLOCK_N, HALF]: purely element-wise
    else:
        value = tl.reshape(w * scale[:, :, None], (BLOCK_N, HALF))
    return value  # one return: an early return under a constexpr if does not compile


@triton.jit
def _decode_gemm_body(
    x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws, TILES_PER_SPLIT,
    HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, X_BF16: tl.constexpr, SCALE_GATHER: tl.constexpr,
    USE_ASM: tl.constexpr, PREFETCH_SCALES: tl.constexpr, INTERPRET: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    HALF: tl.constexpr = BLOCK_K // 2  # bytes per row per K step = elements per nibble half
    SB: tl.constexpr = BLOCK_K // 32  # 32-wide blocks per K step
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    # Rows past N (M) are clamped to valid rows (never stored): unmasked, vectorizable loads.
    rows_w = (offs_n % N).to(tl.int64)
    rows_x = (offs_m % M).to(tl.int64)
    k_first = pid_k * TILES_PER_SPLIT * BLOCK_K
    c = tl.max_contiguous(tl.multiple_of(tl.arange(0, HALF), HALF), HALF)
    # Activation column of nibble-half element c: block c // 16, position c % 16 (+16: high).
    x_cols_lo = (c // 16) * 32 + (c % 16)
    x_ptrs = x_ptr + rows_x[:, None] * stride_xm + (k_first + x_cols_lo)[None, :]
    sb = tl.arange(0, SB)
    j = tl.arange(0, 16)
    if SCALE_GATHER:
        w_ptrs = w_ptr + rows_w[:, None] * stride_wn + (k_first // 2 + c)[None, :]
        ws_ptrs = ws_ptr + rows_w[:, None] * stride_ws + (k_first // 16 + 2 * (c // 16))[None, :]
    else:
        w_ptrs = w_ptr + rows_w[:, None, None] * stride_wn + (k_first // 2 + sb[:, None] * 16 + j[None, :])[None, :, :]
        ws_ptrs = ws_ptr + rows_w[:, None] * stride_ws + (k_first // 16 + 2 * sb)[None, :]

    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    if PREFETCH_SCALES:
        # The 1-byte scale loads are too narrow for the cp.async pipeline: load the next
        # tile's scales one iteration ahead in registers instead (masked past the split).
        s_mask = ((k_first // 16 + 2 * sb)[None, :] < stride_ws) & (TILES_PER_SPLIT > 0)
        s_lo_next = tl.load(ws_ptrs, mask=s_mask, other=0)
        s_hi_next = tl.load(ws_ptrs + 1, mask=s_mask, other=0)
    for i in tl.range(0, TILES_PER_SPLIT):
        k0 = k_first + i * BLOCK_K
        if PREFETCH_SCALES:
            s_lo = s_lo_next
            s_hi = s_hi_next
            s_mask = (((k0 + BLOCK_K) // 16 + 2 * sb)[None, :] < stride_ws) & (i + 1 < TILES_PER_SPLIT)
            s_lo_next = tl.load(ws_ptrs + BLOCK_K // 16, mask=s_mask, other=0)
            s_hi_next = tl.load(ws_ptrs + BLOCK_K // 16 + 1, mask=s_mask, other=0)
        if EVEN_K:
            w_bytes = tl.load(w_ptrs)
            if not PREFETCH_SCALES:
                s_lo = tl.load(ws_ptrs)
                s_hi = tl.load(ws_ptrs + 1)
            x_lo = tl.load(x_ptrs)
            x_hi = tl.load(x_ptrs + 16)
        else:
            # K is padded to 32 in the repacked weight (zeros); only tiles past it are masked.
            # stride_ws = Kp/16 is even, so the odd scale 2b+1 is in range iff 2b is.
            if SCALE_GATHER:
                w_bytes = tl.load(w_ptrs, mask=(k0 // 2 + c)[None, :] < stride_wn, other=0)
                mask_s = (k0 // 16 + 2 * (c // 16))[None, :] < stride_ws
            else:
                w_bytes = tl.load(w_ptrs, mask=(k0 // 2 + sb[:, None] * 16 + j[None, :])[None, :, :] < stride_wn, other=0)
                mask_s = (k0 // 16 + 2 * sb)[None, :] < stride_ws
            if not PREFETCH_SCALES:
                s_lo = tl.load(ws_ptrs, mask=mask_s, other=0)
                s_hi = tl.load(ws_ptrs + 1, mask=mask_s, other=0)
            x_lo = tl.load(x_ptrs, mask=(k0 + x_cols_lo)[None, :] < K, other=0.0)
            x_hi = tl.load(x_ptrs + 16, mask=(k0 + 16 + x_cols_lo)[None, :] < K, other=0.0)
        if USE_ASM:
            # [BLOCK_N, SB, 16] bytes with the scales broadcast over the 16 (SCALE_GATHER off).
            scale_lo = tl.broadcast_to(fp16_from_e4m3_byte(s_lo.to(tl.int32))[:, :, None], (BLOCK_N, SB, 16))
            scale_hi = tl.broadcast_to(fp16_from_e4m3_byte(s_hi.to(tl.int32))[:, :, None], (BLOCK_N, SB, 16))
            w_lo3, w_hi3 = decode_scaled_fp16_asm(w_bytes, scale_lo, scale_hi)
            w_lo = tl.reshape(w_lo3, (BLOCK_N, HALF))
            w_hi = tl.reshape(w_hi3, (BLOCK_N, HALF))
        else:
            w_lo = _weight_half(w_bytes, s_lo, 0, SCALE_GATHER, BLOCK_N, HALF)
            w_hi = _weight_half(w_bytes, s_hi, 4, SCALE_GATHER, BLOCK_N, HALF)
        if INTERPRET:
            # The interpreter's half-precision dot is not exact; fp32 holds the same exact values.
            w_lo = w_lo.to(tl.float32)
            w_hi = w_hi.to(tl.float32)
            if X_BF16:
                w_lo = w_lo * E2M1_TIMES_2M14
                w_hi = w_hi * E2M1_TIMES_2M14
            acc += tl.dot(w_lo, tl.trans(x_lo.to(tl.float32)), input_precision="ieee")
            acc += tl.dot(w_hi, tl.trans(x_hi.to(tl.float32)), input_precision="ieee")
        else:
            if X_BF16:
                w_lo = w_lo.to(tl.bfloat16) * E2M1_TIMES_2M14
                w_hi = w_hi.to(tl.bfloat16) * E2M1_TIMES_2M14
                acc = tl.dot(w_lo.to(tl.bfloat16), tl.trans(x_lo), acc)
                acc = tl.dot(w_hi.to(tl.bfloat16), tl.trans(x_hi), acc)
            else:
                acc = tl.dot(w_lo, tl.trans(x_lo.to(tl.float16)), acc)
                acc = tl.dot(w_hi, tl.trans(x_hi.to(tl.float16)), acc)
        w_ptrs += HALF
        ws_ptrs += BLOCK_K // 16
        x_ptrs += BLOCK_K

    if not X_BF16:
        acc = acc * E2M1_TIMES_2M14  # exact: a power of two on normal fp32 values
    store_output_tile(acc, offs_n, offs_m, M, N, pid_k, out_ptr, partial_ptr, alpha_ptr, bias_ptr,
                      WRITE_PARTIAL, HAS_BIAS, INTERPRET)


@triton.jit
def decode_gemm_kernel(
    x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm,
    stride_wn,  # padded K / 2 (bytes per repacked row): passed alone so Triton sees its divisibility
    stride_ws,  # padded K / 16
    TILES_PER_SPLIT,
    HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, X_BF16: tl.constexpr, SCALE_GATHER: tl.constexpr,
    USE_ASM: tl.constexpr, PREFETCH_SCALES: tl.constexpr, INTERPRET: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _decode_gemm_body(
        x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, M, N, K, stride_xm, stride_wn, stride_ws,
        TILES_PER_SPLIT, HAS_BIAS, WRITE_PARTIAL, X_BF16, SCALE_GATHER, USE_ASM, PREFETCH_SCALES, INTERPRET, EVEN_K, BLOCK_N, BLOCK_M, BLOCK_K,
    )


@triton.jit
def decode_gemm_kernel_interpreted(
    x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr,
    M, N, K, stride_xm, stride_wn, stride_ws,
    TILES_PER_SPLIT: tl.constexpr,  # the interpreter needs a Python int as loop bound
    HAS_BIAS: tl.constexpr, WRITE_PARTIAL: tl.constexpr, X_BF16: tl.constexpr, SCALE_GATHER: tl.constexpr,
    USE_ASM: tl.constexpr, PREFETCH_SCALES: tl.constexpr, INTERPRET: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    _decode_gemm_body(
        x_ptr, w_ptr, ws_ptr, alpha_ptr, bias_ptr, out_ptr, partial_ptr, M, N, K, stride_xm, stride_wn, stride_ws,
        TILES_PER_SPLIT, HAS_BIAS, WRITE_PARTIAL, X_BF16, SCALE_GATHER, USE_ASM, PREFETCH_SCALES, INTERPRET, EVEN_K, BLOCK_N, BLOCK_M, BLOCK_K,
    )
