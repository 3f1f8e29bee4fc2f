"""Integer building blocks of the W4A4 decode path: FP4 codes -> int8 by byte permutation,
and 4-way int8 dot products.

Why integers: ``2 * e2m1`` is an integer in -12..12 for every FP4 code, for the weight *and*
for the quantized activation. So one 16-element group contributes

    sum_k e2m1(qw_k) * sw * e2m1(qx_k) * sx  =  (sw * sx / 4) * I,   I = sum_k (2 e2m1(qw_k)) (2 e2m1(qx_k))

where ``I`` is an exact integer (|I| <= 16 * 144) computed with ``dp4a`` (4 products and
an add per instruction) and ``sw * sx * I`` is exact in fp32 (4 + 4 + 12 significant bits).
That is the FP4 tensor core's arithmetic, on the CUDA cores, with no float decode at all.

FP4 -> int8 with ``prmt``: ``prmt.b32 d, a, b, c`` builds each byte of ``d`` from a 4-bit
selector in ``c[15:0]``: bits 2..0 pick one of the 8 bytes of ``{b, a}``, bit 3 set means
"replicate the sign bit of that byte". With ``{b, a}`` holding the 8 magnitudes
``2 * [0, .5, 1, 1.5, 2, 3, 4, 6]`` (all < 0x80), an FP4 code *is* a selector: positive codes
give their magnitude and negative codes (bit 3) give 0. Flipping every sign bit
(``xor 0x8888``) gives the magnitudes of the negative elements and 0 for the positive ones,
so ``I = dp4a(P, x) - dp4a(N, x)``. The checkpoint's byte order (element 2j in the low nibble
of byte j) is exactly the selector order: the low 16 bits of a little-endian word are the
codes of 4 consecutive elements, no repacking needed.

``USE_ASM`` selects the PTX instructions (any CUDA GPU from sm_61); otherwise bit-exact
emulations in Triton integer arithmetic run the same algorithm (the CPU interpreter, where
inline PTX cannot run). At ``fp_bits.ASM_SM89`` the block scales are decoded by sm_89's E4M3
conversion (``e4m3_byte_to_f32_sm89``).
"""

import triton
import triton.language as tl

from .fp_bits import e4m3_byte_to_f16_sm89

# The 8 int8 magnitudes 2 * e2m1(code), codes 0..3 in LUT_LOW, 4..7 in LUT_HIGH (little endian).
LUT_LOW = tl.constexpr(0x03020100)
LUT_HIGH = tl.constexpr(0x0C080604)
SIGN_BITS = tl.constexpr(-0x77777778)  # 0x88888888 as int32: the sign bit of 8 nibbles


@triton.jit
def _prmt_byte_emulated(a, b, selector):
    index = selector & 7
    word = tl.where(index < 4, a, b)
    byte = (word >> ((index & 3) * 8)) & 0xFF
    return tl.where((selector & 8) != 0, tl.where((byte & 0x80) != 0, 0xFF, 0), byte)


@triton.jit
def prmt(a, b, c, USE_ASM: tl.constexpr):
    """PTX ``prmt.b32`` (default mode) on int32 tensors: bytes of ``{b, a}`` selected by ``c[15:0]``."""
    if USE_ASM:
        d = tl.inline_asm_elementwise(
            "prmt.b32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c], dtype=tl.int32, is_pure=True, pack=1,
        )
    else:
        d = (
            _prmt_byte_emulated(a, b, c & 0xF)
            | (_prmt_byte_emulated(a, b, (c >> 4) & 0xF) << 8)
            | (_prmt_byte_emulated(a, b, (c >> 8) & 0xF) << 16)
            | (_prmt_byte_emulated(a, b, (c >> 12) & 0xF) << 24)
        )
    return d


@triton.jit
def _sbyte(word, i: tl.constexpr):
    """Byte ``i`` of an int32 word as a signed int8 value (int32)."""
    return (word << (24 - 8 * i)) >> 24  # arithmetic shift: sign extension


@triton.jit
def dp4a(a, b, c, USE_ASM: tl.constexpr):
    """PTX ``dp4a.s32.s32``: ``c + sum_i int8(a[i]) * int8(b[i])`` on int32 tensors."""
    if USE_ASM:
        d = tl.inline_asm_elementwise(
            "dp4a.s32.s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c], dtype=tl.int32, is_pure=True, pack=1,
        )
    else:
        d = (
            c
            + _sbyte(a, 0) * _sbyte(b, 0)
            + _sbyte(a, 1) * _sbyte(b, 1)
            + _sbyte(a, 2) * _sbyte(b, 2)
            + _sbyte(a, 3) * _sbyte(b, 3)
        )
    return d


@triton.jit
def fp4_word_to_int8(word, lut_low, lut_high, USE_ASM: tl.constexpr):
    """8 FP4 codes (one int32 word, element 0 in the low nibble) -> four int8x4 words:
    ``(pos_lo, pos_hi, neg_lo, neg_hi)``: magnitudes ``2*e2m1`` of the positive (negative)
    elements 0..3 (lo) and 4..7 (hi), 0 elsewhere.

    ``lut_low``/``lut_high`` are ``LUT_LOW``/``LUT_HIGH``, best *loaded* from memory by the
    caller (``load_lut``): ptxas re-materialises a literal constant before every ``prmt``
    (one extra instruction each), a loaded value it keeps in a register.
    """
    lut_low = lut_low + tl.zeros(word.shape, tl.int32)
    lut_high = lut_high + tl.zeros(word.shape, tl.int32)
    flipped = word ^ SIGN_BITS
    pos_lo = prmt(lut_low, lut_high, word, USE_ASM)
    pos_hi = prmt(lut_low, lut_high, word >> 16, USE_ASM)  # prmt reads c[15:0] only
    neg_lo = prmt(lut_low, lut_high, flipped, USE_ASM)
    neg_hi = prmt(lut_low, lut_high, flipped >> 16, USE_ASM)
    return pos_lo, pos_hi, neg_lo, neg_hi


@triton.jit
def load_lut(lut_ptr):
    """``(LUT_LOW, LUT_HIGH)`` from an int32[2] tensor holding them (``ops.launch_dp4a.lut``)."""
    return tl.load(lut_ptr), tl.load(lut_ptr + 1)


@triton.jit
def group_int_dot(p0, p1, p2, p3, n0, n1, n2, n3, x0, x1, x2, x3, USE_ASM: tl.constexpr):
    """``I = sum_k (2 e2m1(w_k)) * x_k`` over one 16-group: ``p*``/``n*`` from
    ``fp4_word_to_int8`` of the group's two words, ``x0..x3`` its 16 int8 activation values."""
    zero = tl.zeros(p0.shape, tl.int32)
    pos = dp4a(p3, x3, dp4a(p2, x2, dp4a(p1, x1, dp4a(p0, x0, zero, USE_ASM), USE_ASM), USE_ASM), USE_ASM)
    neg = dp4a(n3, x3, dp4a(n2, x2, dp4a(n1, x1, dp4a(n0, x0, zero, USE_ASM), USE_ASM), USE_ASM), USE_ASM)
    return pos - neg


@triton.jit
def signed_int8_words(pos, neg):
    """One signed int8x4 word ``pos - neg`` from ``fp4_word_to_int8``'s magnitude words (each
    byte is non-zero in at most one of them, magnitudes <= 12 < 0x80).

    Per byte ``(0x80 - n) ^ 0x80`` is ``-n`` in two's complement and ``0x80808080 - neg``
    never borrows across bytes (every byte of ``neg`` is < 0x80), so the whole word takes one
    subtraction and one 3-input logic op. Worth it when a weight group meets several
    activation rows: 4 ``dp4a`` per row and group instead of 8.
    """
    bias = tl.full(pos.shape, 0x80808080, tl.uint32)
    negated = (bias - neg.to(tl.uint32, bitcast=True)) ^ bias
    return (negated | pos.to(tl.uint32, bitcast=True)).to(tl.int32, bitcast=True)


@triton.jit
def group_int_dot_signed(s0, s1, s2, s3, x0, x1, x2, x3, USE_ASM: tl.constexpr):
    """``group_int_dot`` over signed weight words (``signed_int8_words``): 4 ``dp4a``."""
    zero = tl.zeros(s0.shape, tl.int32)
    return dp4a(s3, x3, dp4a(s2, x2, dp4a(s1, x1, dp4a(s0, x0, zero, USE_ASM), USE_ASM), USE_ASM), USE_ASM)


@triton.jit
def e4m3_byte_to_f32_sm89(b):
    """E4M3FN bytes (int32 0..255) -> fp32 values, exactly (NaN -> NaN): sm_89's conversion
    (``fp_bits.e4m3_byte_to_f16_sm89``) and fp16 -> fp32, 3 instructions where
    ``e4m3_byte_to_f32_times_2m8`` takes ~6. No 2^-8 here: callers correct by 1/4, not 64."""
    return e4m3_byte_to_f16_sm89(b).to(tl.float32)


@triton.jit
def e4m3_byte_to_f32_times_2m8(b):
    """E4M3FN bytes (int32 0..255) -> fp32 value * 2^-8, exactly; 0x7F/0xFF -> NaN.

    Placing the E4M3 bits in an fp16 (exponent bias 15 vs 7) gives the value times 2^-8 for
    normals and subnormals alike; fp16 -> fp32 is exact. Callers fold the 2^8 back in.
    """
    bits = ((b & 0x7F) << 7) | ((b & 0x80) << 8)
    value = bits.to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    return tl.where((b & 0x7F) == 0x7F, float("nan"), value)
