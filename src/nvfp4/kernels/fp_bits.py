"""Bit-exact number-format helpers used inside the Triton kernels.

Everything is done with integer bit arithmetic and exact float operations so that the
compiled GPU kernel and the CPU interpreter (``TRITON_INTERPRET=1``) compute the same bits
as ``nvfp4.numerics`` (torch's float8 cast rounds half to even; Triton's in-kernel fp8 casts
do not match it in the interpreter, so we never use them).

Why no fused multiply-add can creep in: every rounding step below starts from a value that
went through ``minimum``/``abs``/a comparison, or multiplies by a power of two, so LLVM's
FMA contraction cannot merge a product into a later add and change a rounding.
"""

import triton
import triton.language as tl

# float32 bit patterns of constants that must be exact (Python floats could be rounded
# differently by the compiler and the interpreter).
ONE_SIXTH_F32_BITS = tl.constexpr(0x3E2AAAAB)  # fp32(1/6): vLLM multiplies by it instead of dividing by 6
F32_NAN_BITS = tl.constexpr(0x7FC00000)
# (22 << 23) + (1 << 22): added to an exponent field of 127..129 it gives 1.5 * 2^(22..24).
E2M1_MAGIC_OFFSET = tl.constexpr(0x0B400000)
E4M3_NAN_BYTE = tl.constexpr(0x7F)
# The kernels' USE_ASM levels (ops.launch.use_asm_decode picks one per GPU): the portable
# Triton decoders; the PTX decoders (any sm_80+ GPU); the same plus sm_89's conversion of
# E4M3 byte pairs (``cvt.rn.f16x2.e4m3x2``: Ada, Hopper and later), which decodes a block
# scale in one instruction. Any non-zero level reads as true where only PTX or not matters.
ASM_OFF = tl.constexpr(0)
ASM_SM80 = tl.constexpr(1)
ASM_SM89 = tl.constexpr(2)


@triton.jit
def f32_from_bits(bits):
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def safe_reciprocal(t):
    """vLLM's ``get_reciprocal``: ``1 / (t + (t == 0) * 1e8)`` with IEEE division."""
    return tl.div_rn(tl.full(t.shape, 1.0, tl.float32), tl.where(t == 0, 1.0e8, t))


@triton.jit
def round_to_e4m3(v):
    """Round fp32 ``v`` in ``[0, 448]`` (or NaN) to the nearest E4M3 value, ties to even.

    Adding ``2^(e+20)`` (``e`` = v's exponent, at least -6, the E4M3 subnormal binade) puts
    v's bits below the E4M3 quantum ``2^(e-3)`` out of the fp32 mantissa, so the fp32 adder's
    round-half-even does the E4M3 rounding; subtracting gives the rounded value back exactly.
    NaN stays NaN.
    """
    bits = v.to(tl.int32, bitcast=True)
    exponent = ((bits >> 23) & 0xFF) - 127
    exponent = tl.minimum(tl.maximum(exponent, -6), 8)
    magic = f32_from_bits((exponent + 20 + 127) << 23)
    return (v + magic) - magic


@triton.jit
def e4m3_byte_from_value(s):
    """The E4M3FN byte of an fp32 ``s`` that is already an E4M3 value >= 0 (or NaN -> 0x7F)."""
    bits = s.to(tl.int32, bitcast=True)
    exponent = ((bits >> 23) & 0xFF) - 127
    normal = ((exponent + 7) << 3) | ((bits >> 20) & 7)
    subnormal = (s * 512.0).to(tl.int32)  # s = m * 2^-9 exactly, m in 0..7
    byte = tl.where(s >= 0.015625, normal, subnormal)
    return tl.where(s != s, E4M3_NAN_BYTE, byte)


@triton.jit
def e4m3_byte_to_f32(b):
    """Decode E4M3FN bytes (int32 0..255) to fp32, exactly; 0x7F/0xFF -> NaN."""
    sign = (b & 0x80) << 24
    exponent = (b >> 3) & 0xF
    mantissa = b & 7
    normal = ((exponent + 120) << 23) | (mantissa << 20)
    subnormal = (mantissa.to(tl.float32) * 0.001953125).to(tl.int32, bitcast=True)
    bits = tl.where(exponent == 0, subnormal, normal)
    bits = tl.where((b & 0x7F) == 0x7F, F32_NAN_BITS, bits)
    return f32_from_bits(bits | sign)


@triton.jit
def e2m1_round(scaled):
    """The nearest E2M1 value of ``clamp(scaled, -6, 6)`` (fp32), ties to even.

    The E2M1 grid has spacing 0.5 on [0, 2), 1 on [2, 4) and 2 on [4, 6]. Adding
    ``C = 1.5 * 2^22`` (``2^23``, ``2^24``), whose fp32 binade has exactly that spacing for
    every ``v`` of the range, makes the fp32 adder's round-half-even do the E2M1 rounding,
    for either sign; subtracting ``C`` gives the rounded value back exactly. ``C`` comes from
    v's exponent bits (3 integer instructions). The ties land where ``numerics.e2m1_encode``
    puts them (0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4): "even" on each grid
    is the E2M1 value with a zero mantissa bit, and C is an even multiple of every spacing.

    A zero result is +0.0 (the reference's code 0x8 for a small negative decodes to -0.0: the
    same value in any sum). NaN gives +-6 on the GPU (its min/max drop NaN) and NaN in the
    interpreter: callers carry NaN in the group's block scale, or mask it. No product feeds
    the additions, so no FMA contraction can change a rounding.
    """
    v = tl.minimum(tl.maximum(scaled, -6.0), 6.0)
    exponent = v.to(tl.int32, bitcast=True) & 0x7F800000
    c = f32_from_bits(tl.maximum(exponent, 0x3F800000) + E2M1_MAGIC_OFFSET)
    return (v + c) - c


@triton.jit
def e2m1_twice(scaled):
    """``2 * e2m1_round(scaled)`` as fp32 (an integer in -12..12), NaN elements -> 0: the int8
    operand of the integer-dot decode path (a NaN group is carried by its NaN block scale)."""
    return tl.where(scaled == scaled, e2m1_round(scaled), 0.0) * 2.0


@triton.jit
def e2m1_code(scaled, INTERPRET: tl.constexpr = False):
    """The E2M1 code (int32 0..15) of ``clamp(scaled, -6, 6)`` rounded to nearest, ties to even,
    as ``numerics.e2m1_encode`` gives it: sign bit for ``scaled < 0`` (so -0.0 -> 0, a small
    negative -> 0x8), NaN -> 0. On the GPU ``max(|scaled|, 0)`` turns NaN into 0 by itself
    (PTX ``max.f32`` returns the non-NaN operand): one instruction where a NaN test and a
    select took two; the interpreter's max propagates NaN, so it keeps the explicit test.

    The magnitude code falls out of the same magic-number rounding as ``e2m1_round``: after
    ``y = |v| + C``, ``bits(y) - bits(C)`` is ``|v|`` rounded, counted in units of the grid
    spacing of v's binade (0.5 below 2, then 1, then 2), and the code is that count plus
    ``0, 2, 4`` for those binades, i.e. plus ``(exponent field >> 1) - 254``. No compare
    ladder: ~10 instructions per element.
    """
    if INTERPRET:
        magnitude = tl.where(scaled == scaled, tl.minimum(tl.abs(scaled), 6.0), 0.0)
    else:
        magnitude = tl.minimum(tl.maximum(tl.abs(scaled), 0.0), 6.0)
    exponent = tl.maximum(magnitude.to(tl.int32, bitcast=True) & 0x7F800000, 0x3F800000)
    c_bits = exponent + E2M1_MAGIC_OFFSET
    rounded = magnitude + f32_from_bits(c_bits)
    code = rounded.to(tl.int32, bitcast=True) - c_bits + ((exponent >> 22) - 254)
    return code | ((scaled < 0).to(tl.int32) << 3)


@triton.jit
def nan_max(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def e2m1_decode_f32(code):
    """Decode E2M1 codes (int32 0..15) to fp32 exactly (portable: no subnormals involved).

    Magnitude codes 2..7 are 2^((c>>1)-1) * (1 + (c&1)/2): their fp32 bits are
    ``(c << 22) + (126 << 23)``; codes 0 and 1 are 0 and 0.5.
    """
    magnitude = code & 7
    normal = f32_from_bits((magnitude << 22) + 0x3F000000)
    value = tl.where(magnitude >= 2, normal, magnitude.to(tl.float32) * 0.5)
    return tl.where((code & 8) != 0, -value, value)


@triton.jit
def e2m1_word_pairs_times(words, s):
    """The 8 E2M1 codes of int32 checkpoint-layout words (byte j: element 2j low nibble, 2j+1
    high) decoded and times fp32 ``s``, in the order e0, e4, e1, e5, e2, e6, e3, e7: the pairs
    16 bits apart that the half2 decoders (``gemv_half2.py``, ``paired_decode.py``) produce
    together. Portable Triton, exact for power-of-two-scaled E4M3 ``s``."""
    d0 = e2m1_decode_f32(words & 0xF) * s
    d4 = e2m1_decode_f32((words >> 16) & 0xF) * s
    d1 = e2m1_decode_f32((words >> 4) & 0xF) * s
    d5 = e2m1_decode_f32((words >> 20) & 0xF) * s
    d2 = e2m1_decode_f32((words >> 8) & 0xF) * s
    d6 = e2m1_decode_f32((words >> 24) & 0xF) * s
    d3 = e2m1_decode_f32((words >> 12) & 0xF) * s
    d7 = e2m1_decode_f32((words >> 28) & 0xF) * s
    return d0, d4, d1, d5, d2, d6, d3, d7


@triton.jit
def quantize_groups(xg, gx, inv_gx):
    """Quantize fp32 groups ``xg[R, G, 16]`` as ``numerics.quantize_activation`` does.

    Returns ``(scale fp32 [R, G] (an E4M3 value or NaN), scaled fp32 [R, G, 16])`` where
    ``scaled = x * (1 / (s * (1/Gx)))`` is what the E2M1 rounding is applied to. A NaN in a
    group propagates through its amax (NaN-propagating max and min) into the block scale.
    """
    scale, output_scale = group_scales(tl.reduce(tl.abs(xg), 2, nan_max), gx, inv_gx)
    return scale, xg * output_scale[:, :, None]


@triton.jit
def group_scales(amax, gx, inv_gx):
    """From each group's ``amax`` (NaN if the group holds a NaN): its E4M3 block scale ``s``
    (as an fp32 value) and the multiplier ``1 / (s * (1/Gx))`` its elements are scaled by
    before the E2M1 rounding (vLLM's operation order)."""
    one_sixth = f32_from_bits(tl.full(amax.shape, ONE_SIXTH_F32_BITS, tl.int32))
    v = tl.minimum(gx * (amax * one_sixth), 448.0, propagate_nan=tl.PropagateNan.ALL)
    scale = round_to_e4m3(v)
    return scale, safe_reciprocal(scale * inv_gx)


@triton.jit
def fake_quantize_groups(xg, gx, inv_gx):
    """``e2m1(q) * s`` (fp32, exact) for fp32 groups ``xg[R, G, 16]``: the GEMM operand of
    the quantized activation, without its global scale."""
    scale, scaled = quantize_groups(xg, gx, inv_gx)
    return e2m1_round(scaled) * scale[:, :, None]


@triton.jit
def fp4x2_decode_portable(packed, OP_DTYPE: tl.constexpr):
    """Bytes (uint8) -> (low-nibble values, high-nibble values) in ``OP_DTYPE``, exact."""
    b = packed.to(tl.int32)
    lo = e2m1_decode_f32(b & 0xF)
    hi = e2m1_decode_f32(b >> 4)
    return lo.to(OP_DTYPE), hi.to(OP_DTYPE)


@triton.jit
def fp4x2_decode_asm(packed, OP_DTYPE: tl.constexpr):
    """The same decode as ``fp4x2_decode_portable`` in a few packed PTX instructions.

    For 4 bytes in one register, ``prmt`` spreads bytes 0/1 (and 2/3) into the two 16-bit
    halves; masks and shifts move each nibble's magnitude bits into the exponent/mantissa
    of an fp16 (bf16) and its sign bit to bit 15. Read as fp16 (bf16) that is the E2M1
    value times 2^-14 (2^-126), code 1 landing exactly on a subnormal; one packed multiply
    by 2^14 (2^126) gives the exact value. Half-precision arithmetic keeps subnormals.
    """
    if OP_DTYPE == tl.float16:
        lo, hi = tl.inline_asm_elementwise(
            asm="""
            {
            .reg .b32 t0, t1, m, s, z, c;
            mov.b32 z, 0;
            mov.b32 c, 0x74007400;
            prmt.b32 t0, $4, z, 0x4140;
            prmt.b32 t1, $4, z, 0x4342;
            shl.b32 m, t0, 9;  and.b32 m, m, 0x0E000E00; shl.b32 s, t0, 12; and.b32 s, s, 0x80008000; or.b32 m, m, s;
            mul.rn.f16x2 $0, m, c;
            shl.b32 m, t1, 9;  and.b32 m, m, 0x0E000E00; shl.b32 s, t1, 12; and.b32 s, s, 0x80008000; or.b32 m, m, s;
            mul.rn.f16x2 $1, m, c;
            shl.b32 m, t0, 5;  and.b32 m, m, 0x0E000E00; shl.b32 s, t0, 8;  and.b32 s, s, 0x80008000; or.b32 m, m, s;
            mul.rn.f16x2 $2, m, c;
            shl.b32 m, t1, 5;  and.b32 m, m, 0x0E000E00; shl.b32 s, t1, 8;  and.b32 s, s, 0x80008000; or.b32 m, m, s;
            mul.rn.f16x2 $3, m, c;
            }
            """,
            constraints="=r,=r,=r,=r,r",
            args=[packed],
            dtype=(tl.float16, tl.float16),
            is_pure=True,
            pack=4,
        )
    else:
        lo, hi = tl.inline_asm_elementwise(
            asm="""
            {
            .reg .b32 t0, t1, m, s, z, c, nz;
            mov.b32 z, 0;
            mov.b32 c, 0x7E807E80;
            mov.b32 nz, 0x80008000;
            prmt.b32 t0, $4, z, 0x4140;
            prmt.b32 t1, $4, z, 0x4342;
            shl.b32 m, t0, 6;  and.b32 m, m, 0x01C001C0; shl.b32 s, t0, 12; and.b32 s, s, 0x80008000; or.b32 m, m, s;
            fma.rn.bf16x2 $0, m, c, nz;
            shl.b32 m, t1, 6;  and.b32 m, m, 0x01C001C0; shl.b32 s, t1, 12; and.b32 s, s, 0x80008000; or.b32 m, m, s;
            fma.rn.bf16x2 $1, m, c, nz;
            shl.b32 m, t0, 2;  and.b32 m, m, 0x01C001C0; shl.b32 s, t0, 8;  and.b32 s, s, 0x80008000; or.b32 m, m, s;
            fma.rn.bf16x2 $2, m, c, nz;
            shl.b32 m, t1, 2;  and.b32 m, m, 0x01C001C0; shl.b32 s, t1, 8;  and.b32 s, s, 0x80008000; or.b32 m, m, s;
            fma.rn.bf16x2 $3, m, c, nz;
            }
            """,
            constraints="=r,=r,=r,=r,r",
            args=[packed],
            dtype=(tl.bfloat16, tl.bfloat16),
            is_pure=True,
            pack=4,
        )
    return lo, hi


def e4m3_pair_ptx(tail: str, regs: str = "") -> str:
    """PTX (sm_89+) that turns the E4M3 byte in ``$1`` into the fp16 pair ``(s, s)`` in register
    ``t``, then runs ``tail`` (which writes ``$0``; ``regs`` declares its extra registers). The
    byte goes into both bytes of the converted half word first (``prmt``), so either half of the
    result holds its value, whatever byte order ``cvt.rn.f16x2.e4m3x2`` has. Every E4M3 value,
    NaN included, is an fp16 value: exact."""
    return ("{\n.reg .b32 t;\n.reg .b16 lo, hi;\n" + regs + "prmt.b32 t, $1, $1, 0x0000;\nmov.b32 {lo, hi}, t;\n"
            "cvt.rn.f16x2.e4m3x2 t, lo;\n" + tail + "\n}\n")


_E4M3_TO_F16_SM89 = tl.constexpr(e4m3_pair_ptx("mov.b32 {$0, hi}, t;"))


@triton.jit
def e4m3_byte_to_f16_sm89(b):
    """E4M3FN bytes (int32) -> their fp16 values (exact, NaN -> NaN) by sm_89's conversion:
    2 instructions where ``e4m3_byte_to_f32`` takes ~10."""
    return tl.inline_asm_elementwise(asm=_E4M3_TO_F16_SM89, constraints="=h,r", args=[b], dtype=tl.float16,
                                     is_pure=True, pack=1)


@triton.jit
def e4m3_bytes_as(b, OP_DTYPE: tl.constexpr, USE_ASM: tl.constexpr):
    """E4M3FN bytes (int32) -> their values in ``OP_DTYPE`` (exact), by sm_89's conversion at
    ``USE_ASM == ASM_SM89`` (fp16/bf16), else through ``e4m3_byte_to_f32``."""
    if USE_ASM == ASM_SM89 and OP_DTYPE != tl.float32:
        return e4m3_byte_to_f16_sm89(b).to(OP_DTYPE)  # exact in bf16 too
    else:
        return e4m3_byte_to_f32(b).to(OP_DTYPE)


@triton.jit
def dequantize_fp4_tile(packed, scale_bytes, BLOCK_K: tl.constexpr, OP_DTYPE: tl.constexpr, USE_ASM: tl.constexpr):
    """Packed FP4 tile ``[R, BLOCK_K/2]`` + E4M3 scale bytes ``[R, BLOCK_K/16]`` ->
    ``e2m1 * s`` as ``OP_DTYPE [R, BLOCK_K]`` (exact: at most 6 significant bits)."""
    R: tl.constexpr = packed.shape[0]
    if USE_ASM:
        lo, hi = fp4x2_decode_asm(packed, OP_DTYPE)
    else:
        lo, hi = fp4x2_decode_portable(packed, OP_DTYPE)
    values = tl.interleave(lo, hi)  # even element = low nibble
    scale = e4m3_bytes_as(scale_bytes.to(tl.int32), OP_DTYPE, USE_ASM)
    grouped = tl.reshape(values, (R, BLOCK_K // 16, 16)) * scale[:, :, None]
    return tl.reshape(grouped, (R, BLOCK_K))


@triton.jit
def round_to_bf16_bits_f32(y):
    """fp32 -> the fp32 value of its bf16 rounding (nearest, ties to even), via bits.

    Only used under ``TRITON_INTERPRET=1``, whose fp32 -> bf16 cast truncates; the compiled
    cast on the GPU rounds to nearest even already. NaN and Inf pass through.
    """
    bits = y.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    rounded = tl.where(y != y, bits, rounded)
    return rounded.to(tl.float32, bitcast=True)


@triton.jit
def cast_output(y, OUT_DTYPE: tl.constexpr, INTERPRET: tl.constexpr):
    """Cast fp32 ``y`` to the output dtype with round-to-nearest-even on every backend."""
    if INTERPRET and OUT_DTYPE == tl.bfloat16:
        y = round_to_bf16_bits_f32(y)
    return y.to(OUT_DTYPE)


@triton.jit
def linear_epilogue(acc, alpha, bias, OUT_DTYPE: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """The output of every NVFP4 GEMM, in the reference's order: ``acc * alpha`` in fp32, one
    round-to-nearest-even cast to ``OUT_DTYPE``, then ``+ bias`` (in fp32) and a second cast,
    as vLLM adds the bias after the GEMM's cast. ``bias`` is ignored unless ``HAS_BIAS``."""
    y = cast_output(acc * alpha, OUT_DTYPE, INTERPRET)
    if HAS_BIAS:
        y = cast_output(y.to(tl.float32) + bias.to(tl.float32), OUT_DTYPE, INTERPRET)
    return y


@triton.jit
def store_output_tile(acc, offs_n, offs_m, M, N, pid_k, out_ptr, partial_ptr, alpha_ptr, bias_ptr,
                      WRITE_PARTIAL: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """Store an fp32 ``acc[BLOCK_N, BLOCK_M]`` (weight rows by activation rows) of ``out[M, N]``:
    raw into split ``pid_k``'s slice of ``partial[SPLIT_K, M, N]`` when ``WRITE_PARTIAL`` (the
    split-K reduction applies the epilogue later), else through ``linear_epilogue``."""
    n_mask = offs_n < N
    m_mask = offs_m < M
    out_mask = n_mask[:, None] & m_mask[None, :]
    m64 = offs_m.to(tl.int64)
    n64 = offs_n.to(tl.int64)
    if WRITE_PARTIAL:
        base = partial_ptr + pid_k.to(tl.int64) * M * N
        tl.store(base + m64[None, :] * N + n64[:, None], acc, mask=out_mask)
    else:
        alpha = tl.load(alpha_ptr + offs_n, mask=n_mask, other=0.0)
        bias = tl.load(bias_ptr + offs_n, mask=n_mask & HAS_BIAS, other=0.0)
        y = linear_epilogue(acc, alpha[:, None], bias[:, None], out_ptr.dtype.element_ty, HAS_BIAS, INTERPRET)
        tl.store(out_ptr + m64[None, :] * N + n64[:, None], y, mask=out_mask)
