"""The FP4 weight decode of the tensor-core GEMM in few instructions: pairs 16 bits apart,
the block scale folded into one packed multiply, and the K order of the tile permuted.

A 32-bit word of the checkpoint layout holds elements ``e0..e7`` (byte ``j``: ``e2j`` in the
low nibble, ``e2j+1`` in the high one), so ``(e0, e4), (e1, e5), (e2, e6), (e3, e7)`` sit
exactly 16 bits apart. For the pair in the top nibbles of the two halves,

* fp16: ``(w & 0x80008000) | ((w & 0x70007000) >> 3)`` is an fp16x2 word whose halves read
  ``e2m1 * 2^-14`` (code 1 lands on an fp16 subnormal); one ``mul.f16x2`` by ``(s, s)``
  (the E4M3 block scale as fp16, built once per group of 16) gives ``e2m1 * s * 2^-14``;
* bf16: the same with ``>> 6`` reads ``e2m1 * 2^-126`` (code 1: a bf16 subnormal); one
  ``fma.bf16x2`` by ``s * 2^118`` (and -0) gives ``e2m1 * s * 2^-8``;

and shifting ``w`` left by 4 brings up the next pair. The products are exact: at most 6
significant bits; in fp16 ``e2m1 * s`` is a multiple of 2^-10, so the product is a multiple
of 2^-24 (fp16's smallest subnormal) below 6 * 448 * 2^-14 = 0.164; in bf16 2^-18..2^3.4,
normal. The 2^-14 (2^-8) comes back as one exact multiply of the fp32 accumulator before
alpha (``fold``). About 2.4 instructions per weight element, against ~4.5 for
``fp_bits.dequantize_fp4_tile`` (byte shuffles, a separate scale multiply, and the repacking
of pairs into K order that the MMA operand needs): the compiled K loops take 3.8-7.0 SASS
instructions per weight element instead of 6.1-13.2 (``tests/test_triton_compile.py``).

The block scale: on sm_89+ (``USE_ASM == ASM_SM89``) one ``cvt.rn.f16x2.e4m3x2`` turns the
scale byte, duplicated into both bytes of a half word, into the fp16 pair ``(s, s)`` (bf16:
then through fp32 times 2^118); on sm_80 integer bit placement does it (7-8 instructions
against 2, NaN by an explicit test). At 16 rows a thread decodes each scale for only 4 of its
weight elements, so this was ~28% of the sm_90 K loop: 4.41 -> 3.84 instructions per weight
element (fp16, 16 x 128 x 128 tile), 4.53 -> 4.21 (bf16).

The price: the two values of a register are K positions ``j`` and ``j + 4`` of their word,
so the tile comes out with K permuted inside every group of 8 (position ``2j + h`` holds
element ``j + 4h``, ``PAIRED_ORDER``). A dot product does not care about the order of its
terms as long as both operands share it: the activation operand is either written in that
order by ``activation_quant`` (``PAIRED_OPERAND``) or permuted by the GEMM in registers
(``PAIRED_IN_KERNEL``, ``pair_permute_k``); the fp32 sum differs from the natural order's
only by summation order.

Range: the products carry 2^-7 (2^-8) in the fp32 sum, so a product ``|a * w|`` below 2^-119
(2^-118), possible only for bf16 activations under ~2^-108 (W4A16), is rounded as an fp32
subnormal where the reference keeps it normal, as in ``gemv_half2.py``; W4A4 operands (at
least 2^-10) and fp16 activations cannot get there.
"""

import triton
import triton.language as tl

from .fp_bits import ASM_SM80, ASM_SM89, e2m1_word_pairs_times, e4m3_byte_to_f32, e4m3_pair_ptx

# Position p of a group of 8 in the permuted order holds element PAIRED_ORDER[p].
PAIRED_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
# The GEMM's PAIRED_K: natural order; the activation operand arrives permuted (written so by
# activation_quant); or it arrives in natural order and the GEMM permutes its tile.
PAIRED_OFF = tl.constexpr(0)
PAIRED_OPERAND = tl.constexpr(1)
PAIRED_IN_KERNEL = tl.constexpr(2)


@triton.jit
def fold(OP_DTYPE: tl.constexpr):
    """The power of two the decoded weight lacks: 2^8 for bf16 operands, else 2^14."""
    if OP_DTYPE == tl.bfloat16:
        return 256.0
    else:
        return 16384.0


_SCALE_F16 = tl.constexpr("""
{
.reg .b32 t, sgn, c, two8;
.reg .pred nan;
mov.b32 two8, 0x5C005C00;
and.b32 t, $1, 0x7F; and.b32 sgn, $1, 0x80;
mul.lo.u32 c, t, 0x00800080; mad.lo.u32 c, sgn, 0x01000100, c;
mul.rn.f16x2 c, c, two8;
setp.eq.u32 nan, t, 0x7F; selp.b32 $0, 0x7E007E00, c, nan;
}
""")
_SCALE_BF16 = tl.constexpr("""
{
.reg .b32 t, sgn, c, two119, nz;
.reg .pred nan;
mov.b32 two119, 0x7B007B00; mov.b32 nz, 0x80008000;
and.b32 t, $1, 0x7F; and.b32 sgn, $1, 0x80;
mul.lo.u32 c, t, 0x00100010; mad.lo.u32 c, sgn, 0x01000100, c;
fma.rn.bf16x2 c, c, two119, nz; fma.rn.bf16x2 c, c, two119, nz;
setp.eq.u32 nan, t, 0x7F; selp.b32 $0, 0x7FC07FC0, c, nan;
}
""")

# sm_89+: the pair (s, s) from the byte's E4M3 conversion as is (fp16), or (bf16, which has no
# E4M3 conversion on sm_89/sm_90) through fp32 times 2^118 (exact: at most 448 * 2^118 < 2^127).
_SCALE_F16_SM89 = tl.constexpr(e4m3_pair_ptx("mov.b32 $0, t;"))
_SCALE_BF16_SM89 = tl.constexpr(e4m3_pair_ptx(
    "mov.b32 {lo, hi}, t;\ncvt.f32.f16 f, lo;\nmul.rn.f32 f, f, 0f7A800000;\ncvt.rn.bf16x2.f32 $0, f, f;",
    regs=".reg .f32 f;\n"))


@triton.jit
def scale_x2_asm(scale_bytes, OP_DTYPE: tl.constexpr, USE_ASM: tl.constexpr = ASM_SM80):
    """E4M3 scale bytes (int32) -> the packed pair ``(s * F, s * F)`` as int32 bits, with
    ``F = 1`` in fp16 or ``2^118`` in bf16 (``fold``).

    ``USE_ASM == ASM_SM89``: ``cvt.rn.f16x2.e4m3x2`` (above). Otherwise (sm_80) by bit
    placement: fp16: ``(b & 0x7F) << 7`` read as fp16 is ``|s| * 2^-8`` (E4M3 subnormals land
    on fp16 subnormals), times 2^8; bf16: ``(b & 0x7F) << 4`` is ``|s| * 2^-120``, times 2^119
    twice; one integer multiply puts the bits in both halves, a multiply-add the sign bit.
    Bytes 0x7F / 0xFF (NaN) give NaN either way, so a NaN block decodes to NaN as in the
    reference."""
    # The same dtype either way (int32 bits): the PTX is the only difference.
    if USE_ASM == ASM_SM89:
        return tl.inline_asm_elementwise(asm=_SCALE_BF16_SM89 if OP_DTYPE == tl.bfloat16 else _SCALE_F16_SM89,
                                         constraints="=r,r", args=[scale_bytes], dtype=tl.int32, is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise(asm=_SCALE_BF16 if OP_DTYPE == tl.bfloat16 else _SCALE_F16,
                                         constraints="=r,r", args=[scale_bytes], dtype=tl.int32, is_pure=True, pack=1)


def _decode_asm(shift: int, multiply: str) -> str:
    """PTX of ``decode_words_asm``: the pair in the top nibbles of each half, then ``w << 4``,
    ``<< 8``, ``<< 12`` for the next three; ``shift`` places the magnitude bits in the
    format's exponent/mantissa, ``multiply`` applies the packed scale ``$9``."""
    pairs = []
    for step, outs in ((0, "$6, $7"), (4, "$4, $5"), (8, "$2, $3"), (12, "$0, $1")):
        src = "$8" if step == 0 else "q"
        pairs.append(
            (f"shl.b32 q, $8, {step};\n" if step else "")
            + f"and.b32 t, {src}, 0x70007000; shr.b32 t, t, {shift}; and.b32 h, {src}, 0x80008000; or.b32 h, h, t;\n"
            + f"{multiply}; mov.b32 {{{outs}}}, h;\n"
        )
    return "{\n.reg .b32 q, t, h, nz;\nmov.b32 nz, 0x80008000;\n" + "".join(pairs) + "}\n"


# fp16: magnitude to bits 11..9 (e2m1 * 2^-14), times (s, s).
_DECODE_F16 = tl.constexpr(_decode_asm(3, "mul.rn.f16x2 h, h, $9"))
# bf16: magnitude to bits 8..6 (e2m1 * 2^-126), times (s * 2^118, s * 2^118), plus -0.
_DECODE_BF16 = tl.constexpr(_decode_asm(6, "fma.rn.bf16x2 h, h, $9, nz"))
_DECODE_CONSTRAINTS = tl.constexpr("=h,=h,=h,=h,=h,=h,=h,=h,r,r")  # 8 halves out; the word, the scale pair in


@triton.jit
def decode_words_asm(words, scale_x2, OP_DTYPE: tl.constexpr):
    """Words (int32, 8 codes each) and their groups' ``scale_x2_asm`` words -> the 8 values
    ``e2m1 * s / fold`` in ``OP_DTYPE`` (fp16 or bf16), in the order e0, e4, e1, e5, e2, e6,
    e3, e7."""
    if OP_DTYPE == tl.bfloat16:
        return tl.inline_asm_elementwise(asm=_DECODE_BF16, constraints=_DECODE_CONSTRAINTS, args=[words, scale_x2],
                                         dtype=(tl.bfloat16,) * 8, is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise(asm=_DECODE_F16, constraints=_DECODE_CONSTRAINTS, args=[words, scale_x2],
                                         dtype=(tl.float16,) * 8, is_pure=True, pack=1)


@triton.jit
def decode_words_portable(words, scale_bytes, OP_DTYPE: tl.constexpr):
    """``decode_words_asm`` in plain Triton (interpreter, GPUs without the PTX): the same
    values ``e2m1 * s / fold(OP_DTYPE)`` (exact), same order, in ``OP_DTYPE``."""
    d0, d4, d1, d5, d2, d6, d3, d7 = e2m1_word_pairs_times(words, e4m3_byte_to_f32(scale_bytes) * (1.0 / fold(OP_DTYPE)))
    return (d0.to(OP_DTYPE), d4.to(OP_DTYPE), d1.to(OP_DTYPE), d5.to(OP_DTYPE), d2.to(OP_DTYPE), d6.to(OP_DTYPE),
            d3.to(OP_DTYPE), d7.to(OP_DTYPE))


@triton.jit
def dequantize_fp4_words_paired(words, scale_bytes, BLOCK_K: tl.constexpr, OP_DTYPE: tl.constexpr,
                                USE_ASM: tl.constexpr):
    """Packed FP4 words ``int32 [R, BLOCK_K/8]`` + E4M3 scale bytes ``[R, BLOCK_K/16]`` ->
    ``e2m1 * s / fold(OP_DTYPE)`` as ``OP_DTYPE [R, BLOCK_K]`` with K in ``PAIRED_ORDER``
    inside every group of 8 (``USE_ASM``, an ``fp_bits`` level, needs ``OP_DTYPE`` fp16 or bf16)."""
    R: tl.constexpr = words.shape[0]
    GROUPS: tl.constexpr = BLOCK_K // 16
    # [R, GROUPS, 2]: the two words of a group beside its scale, broadcast (no data movement).
    group_words = tl.reshape(words, (R, GROUPS, 2))
    if USE_ASM:
        scale_x2 = tl.broadcast_to(scale_x2_asm(scale_bytes.to(tl.int32), OP_DTYPE, USE_ASM)[:, :, None], (R, GROUPS, 2))
        d0, d4, d1, d5, d2, d6, d3, d7 = decode_words_asm(group_words, scale_x2, OP_DTYPE)
    else:
        scale = tl.broadcast_to(scale_bytes.to(tl.int32)[:, :, None], (R, GROUPS, 2))
        d0, d4, d1, d5, d2, d6, d3, d7 = decode_words_portable(group_words, scale, OP_DTYPE)
    # join(u, v) appends a minor axis that selects u or v, so in join(join(join(d0, d2), ...),
    # join(...)) the outermost call picks position bit 0, the innermost bit 2: flattened,
    # positions 0..7 of each word hold d0, d4, d1, d5, d2, d6, d3, d7, the order the
    # registers hold them in (each pair one 32-bit register, stored as is).
    low = tl.join(tl.join(d0, d2), tl.join(d1, d3))
    high = tl.join(tl.join(d4, d6), tl.join(d5, d7))
    return tl.reshape(tl.join(low, high), (R, BLOCK_K))


@triton.jit
def pair_permute_k(tile, BLOCK_K: tl.constexpr):
    """A ``[R, BLOCK_K]`` tile in natural K order -> ``PAIRED_ORDER`` inside each group of 8
    (position ``2j + h`` <- element ``j + 4h``), the order ``dequantize_fp4_words_paired``
    gives the weight."""
    R: tl.constexpr = tile.shape[0]
    grouped = tl.reshape(tile, (R, BLOCK_K // 8, 2, 4))
    return tl.reshape(tl.permute(grouped, (0, 1, 3, 2)), (R, BLOCK_K))
