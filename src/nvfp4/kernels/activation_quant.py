"""Run-time activation quantization: bf16/fp16 ``x[M, K]`` -> NVFP4, as a kernel of its own.

Three outputs, chosen at compile time by ``OUT_MODE``:

* ``OUT_PACKED``: packed E2M1 codes ``uint8 [M, K/2]`` (even element in the low nibble) and
  E4M3 block-scale bytes ``uint8 [M, K/16]``, bit-identical to
  ``nvfp4.numerics.quantize_activation`` (vLLM's ``ref_nvfp4_quant`` operation order);
* ``OUT_DEQUANT``: the exact GEMM operand ``e2m1(q) * s`` (no global scale) in fp16 or
  bf16 ``[M, K]``; the GEMMs read it like a dense activation, which keeps their main loops
  free of activation decoding;
* ``OUT_INT8``: ``2 * e2m1(q)`` as int8 ``[M, K]`` (the integers -12..12) and the block
  scales as fp32 values ``[M, K/16]``: the operands of the integer-dot decode path
  (``kernels/gemv_dp4a.py``).

Each program handles ``BLOCK_R`` rows by ``BLOCK_K`` columns (groups of 16 never straddle a
block since ``K % 16 == 0`` and ``BLOCK_K % 16 == 0``). A group is loaded as its two halves
(elements 0-7 and 8-15: two ``[BLOCK_R, G, 8]`` tiles of the same layout), so one thread holds
a whole group: its amax, scale and reciprocal are computed once (a ``[.., 16]`` tile gives each
half group to a different thread, which then both compute them, after a shuffle), and its
packed codes are two 32-bit words stored together, no relayout. The rounding is the
magic-number E2M1 rounding of ``fp_bits`` (``e2m1_round`` / ``e2m1_twice`` / ``e2m1_code``:
a handful of instructions per element).
"""

import triton
import triton.language as tl

from .fp_bits import (
    e2m1_code, e2m1_round, e2m1_twice, e4m3_byte_from_value, group_amax, group_scales, nan_max, safe_reciprocal,
)

OUT_PACKED = 0
OUT_DEQUANT = 1
OUT_INT8 = 2


@triton.jit
def activation_quant_kernel(
    x_ptr,
    gx_ptr,
    values_ptr,  # OUT_PACKED: packed codes u8 [M, K/2]; OUT_DEQUANT: operand [M, K]; OUT_INT8: int8 [M, K]
    scale_ptr,  # OUT_PACKED: E4M3 bytes u8 [M, K/16]; OUT_INT8: fp32 [M, K/16]; else unused
    M,
    K,
    stride_xm,
    OUT_MODE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_k = tl.program_id(1)
    G: tl.constexpr = BLOCK_K // 16
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    groups = pid_k * G + tl.arange(0, G)
    rows64 = rows.to(tl.int64)
    group_mask = (rows[:, None] < M) & (groups[None, :] < K // 16)  # [BLOCK_R, G]
    mask = group_mask[:, :, None]
    e = tl.arange(0, 8)
    # Element offsets of the low halves [BLOCK_R, G, 8]; the high halves are 8 further.
    offs = (groups * 16)[None, :, None] + e[None, None, :]
    x_lo = tl.load(x_ptr + rows64[:, None, None] * stride_xm + offs, mask=mask, other=0.0).to(tl.float32)
    x_hi = tl.load(x_ptr + rows64[:, None, None] * stride_xm + offs + 8, mask=mask, other=0.0).to(tl.float32)

    gx = tl.load(gx_ptr)
    inv_gx = safe_reciprocal(gx)
    scale, output_scale = group_scales(nan_max(group_amax(x_lo, 2), group_amax(x_hi, 2)), gx, inv_gx)
    scaled_lo = x_lo * output_scale[:, :, None]
    scaled_hi = x_hi * output_scale[:, :, None]
    scale_offs = rows64[:, None] * (K // 16) + groups[None, :]
    if OUT_MODE == 1:
        out = values_ptr + rows64[:, None, None] * K + offs
        dtype = values_ptr.dtype.element_ty
        tl.store(out, (e2m1_round(scaled_lo) * scale[:, :, None]).to(dtype), mask=mask)
        tl.store(out + 8, (e2m1_round(scaled_hi) * scale[:, :, None]).to(dtype), mask=mask)
    elif OUT_MODE == 2:
        out = values_ptr + rows64[:, None, None] * K + offs
        tl.store(out, e2m1_twice(scaled_lo).to(tl.int8), mask=mask)
        tl.store(out + 8, e2m1_twice(scaled_hi).to(tl.int8), mask=mask)
        tl.store(scale_ptr + scale_offs, scale, mask=group_mask)
    else:
        # Element i of a half in nibble i of a little-endian word: the checkpoint's byte order
        # (element 2j in the low nibble of byte j). Disjoint nibbles: the sum is an OR.
        shifts = (e * 4)[None, None, :]
        word_lo = tl.sum(e2m1_code(scaled_lo) << shifts, axis=2)
        word_hi = tl.sum(e2m1_code(scaled_hi) << shifts, axis=2)
        words = tl.join(word_lo, word_hi)  # [BLOCK_R, G, 2]: the group's 8 bytes
        word_ptr = values_ptr.to(tl.pointer_type(tl.int32)) + rows64[:, None, None] * (K // 8)
        tl.store(word_ptr + (groups * 2)[None, :, None] + tl.arange(0, 2)[None, None, :], words, mask=mask)
        tl.store(scale_ptr + scale_offs, e4m3_byte_from_value(scale).to(tl.uint8), mask=group_mask)
