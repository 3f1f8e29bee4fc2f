"""Run-time activation quantization: bf16/fp16 ``x[M, K]`` -> NVFP4, as a kernel of its own.

Two outputs, chosen at compile time:

* ``DEQUANT_OUT=False``: packed E2M1 codes ``uint8 [M, K/2]`` (even element in the low
  nibble) and E4M3 block-scale bytes ``uint8 [M, K/16]``, bit-identical to
  ``nvfp4.numerics.quantize_activation`` (vLLM's ``ref_nvfp4_quant`` operation order);
* ``DEQUANT_OUT=True``: the exact GEMM operand ``e2m1(q) * s`` (no global scale) in fp16 or
  bf16 ``[M, K]``; the large-M GEMM reads it like a dense activation, which keeps the
  tensor-core main loop free of activation decoding.

Each program handles ``BLOCK_R`` rows by ``BLOCK_K`` columns (groups of 16 never straddle a
block since ``K % 16 == 0`` and ``BLOCK_K % 16 == 0``).
"""

import triton
import triton.language as tl

from .fp_bits import e2m1_decode_f32, e2m1_magnitude_code, e4m3_byte_from_value, quantize_groups, safe_reciprocal


@triton.jit
def activation_quant_kernel(
    x_ptr,
    gx_ptr,
    packed_ptr,
    scale_ptr,
    dequant_ptr,
    M,
    K,
    stride_xm,
    DEQUANT_OUT: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_r = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rows64 = rows.to(tl.int64)
    mask = (rows[:, None] < M) & (cols[None, :] < K)
    x = tl.load(x_ptr + rows64[:, None] * stride_xm + cols[None, :], mask=mask, other=0.0).to(tl.float32)

    gx = tl.load(gx_ptr)
    inv_gx = safe_reciprocal(gx)
    G: tl.constexpr = BLOCK_K // 16
    scale, scaled = quantize_groups(tl.reshape(x, (BLOCK_R, G, 16)), gx, inv_gx)
    magnitude = e2m1_magnitude_code(tl.abs(scaled))
    if DEQUANT_OUT:
        value = e2m1_decode_f32(magnitude)
        value = tl.where(scaled < 0, -value, value) * scale[:, :, None]
        value = tl.reshape(value, (BLOCK_R, BLOCK_K))
        tl.store(
            dequant_ptr + rows64[:, None] * K + cols[None, :],
            value.to(dequant_ptr.dtype.element_ty),
            mask=mask,
        )
    else:
        codes = magnitude | ((scaled < 0).to(tl.int32) << 3)
        low, high = tl.split(tl.reshape(codes, (BLOCK_R, BLOCK_K // 2, 2)))
        packed = (low | (high << 4)).to(tl.uint8)
        half_cols = pid_k * (BLOCK_K // 2) + tl.arange(0, BLOCK_K // 2)
        tl.store(
            packed_ptr + rows64[:, None] * (K // 2) + half_cols[None, :],
            packed,
            mask=(rows[:, None] < M) & (half_cols[None, :] < K // 2),
        )
        groups = pid_k * G + tl.arange(0, G)
        tl.store(
            scale_ptr + rows64[:, None] * (K // 16) + groups[None, :],
            e4m3_byte_from_value(scale).to(tl.uint8),
            mask=(rows[:, None] < M) & (groups[None, :] < K // 16),
        )
