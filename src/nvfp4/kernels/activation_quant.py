"""Run-time activation quantization: bf16/fp16 ``x[M, K]`` -> NVFP4, as a kernel of its own.

Three outputs, chosen at compile time by ``OUT_MODE``:

* ``OUT_PACKED``: packed E2M1 codes ``uint8 [M, K/2]`` (even element in the low nibble) and
  E4M3 block-scale bytes ``uint8 [M, K/16]``, bit-identical to
  ``nvfp4.numerics.quantize_activation`` (vLLM's ``ref_nvfp4_quant`` operation order);
* ``OUT_DEQUANT``: the exact GEMM operand ``e2m1(q) * s`` (no global scale) in fp16 or
  bf16 ``[M, K]``; the GEMMs read it like a dense activation, which keeps their main loops
  free of activation decoding. With ``PAIRED_K`` its columns come in the order of the
  GEMM's paired weight decode (``paired_decode.PAIRED_ORDER`` inside each group of 8);
* ``OUT_INT8``: ``2 * e2m1(q)`` as int8 ``[M, K]`` (the integers -12..12) and the block
  scales as fp32 values ``[M, K/16]``: the operands of the integer-dot decode path
  (``kernels/gemv_dp4a.py``).

Each program handles ``BLOCK_R`` rows by ``BLOCK_K`` columns (groups of 16 never straddle a
block since ``K % 16 == 0`` and ``BLOCK_K % 16 == 0``). The rounding is the magic-number
E2M1 rounding of ``fp_bits`` (``e2m1_round`` / ``e2m1_twice`` / ``e2m1_code``: a handful of
instructions per element).
"""

import triton
import triton.language as tl

from .fp_bits import e2m1_code, e2m1_round, e2m1_twice, e4m3_byte_from_value, quantize_groups, safe_reciprocal
from .grid_dependency import allow_dependents, wait_for_previous_grid
from .paired_decode import pair_permute_k

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
    PDL: tl.constexpr = False,  # programmatic dependent launch (grid_dependency.py)
    PAIRED_K: tl.constexpr = False,  # OUT_DEQUANT only: K in paired_decode.PAIRED_ORDER
):
    wait_for_previous_grid(PDL)
    pid_r = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rows64 = rows.to(tl.int64)
    row_ok = rows[:, None] < M
    mask = row_ok & (cols[None, :] < K)
    x = tl.load(x_ptr + rows64[:, None] * stride_xm + cols[None, :], mask=mask, other=0.0).to(tl.float32)

    gx = tl.load(gx_ptr)
    inv_gx = safe_reciprocal(gx)
    G: tl.constexpr = BLOCK_K // 16
    scale, scaled = quantize_groups(tl.reshape(x, (BLOCK_R, G, 16)), gx, inv_gx)
    groups = pid_k * G + tl.arange(0, G)
    group_mask = row_ok & (groups[None, :] < K // 16)
    allow_dependents(PDL)  # NVFP4_TRITON_PDL=late: the next kernel may be scheduled
    if OUT_MODE == 1:
        value = tl.reshape(e2m1_round(scaled) * scale[:, :, None], (BLOCK_R, BLOCK_K))
        if PAIRED_K:  # within groups of 8, which a thread holds whole: no data leaves it
            value = pair_permute_k(value, BLOCK_K)
        tl.store(values_ptr + rows64[:, None] * K + cols[None, :], value.to(values_ptr.dtype.element_ty), mask=mask)
    elif OUT_MODE == 2:
        twice = tl.reshape(e2m1_twice(scaled), (BLOCK_R, BLOCK_K)).to(tl.int8)
        tl.store(values_ptr + rows64[:, None] * K + cols[None, :], twice, mask=mask)
        tl.store(scale_ptr + rows64[:, None] * (K // 16) + groups[None, :], scale, mask=group_mask)
    else:
        # Pairs split inside the group view: each thread already holds them (no layout change).
        low, high = tl.split(tl.reshape(e2m1_code(scaled), (BLOCK_R, G, 8, 2)))
        packed = tl.reshape((low | (high << 4)).to(tl.uint8), (BLOCK_R, BLOCK_K // 2))
        half_cols = pid_k * (BLOCK_K // 2) + tl.arange(0, BLOCK_K // 2)
        tl.store(
            values_ptr + rows64[:, None] * (K // 2) + half_cols[None, :],
            packed,
            mask=row_ok & (half_cols[None, :] < K // 2),
        )
        tl.store(
            scale_ptr + rows64[:, None] * (K // 16) + groups[None, :],
            e4m3_byte_from_value(scale).to(tl.uint8),
            mask=group_mask,
        )
