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
block since ``K % 16 == 0`` and ``BLOCK_K % 16 == 0``), with even and odd elements apart (the
low and high nibbles of a packed byte). ``BF16_WORDS`` reads bf16 ``x`` as int32 words, so
each element becomes fp32 in one integer op (``<< 16`` or ``& 0xFFFF0000``). Triton then
gives each thread 8 words, a whole group (its scale computed once, no shuffle, its 8 code
bytes stored without a layout change: sm_90 SASS of the packed output 23.3 instructions per
element at 16 rows x 4 warps against 28.3 for the bf16 read), loaded as two 16-byte vectors
whose lanes are 32 bytes apart, where the bf16 read's lanes are contiguous. That load pattern
is what made an earlier whole-group layout slower on the H100 (docs/performance.md, "Tried
2026-12-08"), so ``benchmarks/bench_act_quant.py`` times both. The rounding is the magic-number
E2M1 rounding of ``fp_bits`` (``e2m1_round`` / ``e2m1_twice`` / ``e2m1_code``: a handful of
instructions per element).
"""

import triton
import triton.language as tl

from .fp_bits import e2m1_code, e2m1_round, e2m1_twice, e4m3_byte_from_value, group_scales, nan_max, safe_reciprocal
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
    INTERPRET: tl.constexpr = False,  # the CPU interpreter (its max propagates NaN: fp_bits.e2m1_code)
    BF16_WORDS: tl.constexpr = False,  # bf16 x, 4-byte aligned, even row stride: read as int32 pairs
):
    wait_for_previous_grid(PDL)
    pid_r = tl.program_id(0)
    pid_k = tl.program_id(1)
    G: tl.constexpr = BLOCK_K // 16
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rows64 = rows.to(tl.int64)
    row_ok = rows[:, None] < M
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    # Even and odd elements apart, [R, G, 8] each: the low and high nibbles of the packed bytes.
    pair_cols = pid_k * (BLOCK_K // 2) + tl.arange(0, BLOCK_K // 2)
    pair_mask = row_ok & (pair_cols[None, :] < K // 2)
    if BF16_WORDS:
        # bf16 x read as 32-bit words (element 2j in the low half): each half becomes fp32 in
        # one integer op, where the bf16 -> fp32 conversion of a loaded pair took three.
        # (The [R, K/2] shape is the packed store's: Triton lays both out alike, 8 words per thread.)
        words = tl.load(x_ptr.to(tl.pointer_type(tl.int32)) + rows64[:, None] * (stride_xm // 2) + pair_cols[None, :],
                        mask=pair_mask, other=0)
        even = tl.reshape((words << 16).to(tl.float32, bitcast=True), (BLOCK_R, G, 8))
        odd = tl.reshape((words & -65536).to(tl.float32, bitcast=True), (BLOCK_R, G, 8))
    else:
        x = tl.load(x_ptr + rows64[:, None] * stride_xm + cols[None, :], mask=row_ok & (cols[None, :] < K), other=0.0)
        even, odd = tl.split(tl.reshape(x.to(tl.float32), (BLOCK_R, G, 8, 2)))

    gx = tl.load(gx_ptr)
    scale, output_scale = group_scales(tl.reduce(nan_max(tl.abs(even), tl.abs(odd)), 2, nan_max), gx,
                                       safe_reciprocal(gx))
    even = even * output_scale[:, :, None]
    odd = odd * output_scale[:, :, None]
    groups = pid_k * G + tl.arange(0, G)
    group_mask = row_ok & (groups[None, :] < K // 16)
    allow_dependents(PDL)  # NVFP4_TRITON_PDL=late: the next kernel may be scheduled
    if OUT_MODE == 0:
        packed = e2m1_code(even, INTERPRET) | (e2m1_code(odd, INTERPRET) << 4)
        tl.store(values_ptr + rows64[:, None] * (K // 2) + pair_cols[None, :],
                 tl.reshape(packed.to(tl.uint8), (BLOCK_R, BLOCK_K // 2)), mask=pair_mask)
        tl.store(scale_ptr + rows64[:, None] * (K // 16) + groups[None, :], e4m3_byte_from_value(scale).to(tl.uint8),
                 mask=group_mask)
    else:
        if OUT_MODE == 1:
            pairs = tl.join(e2m1_round(even) * scale[:, :, None], e2m1_round(odd) * scale[:, :, None])
        else:
            pairs = tl.join(e2m1_twice(even), e2m1_twice(odd))
        value = tl.reshape(pairs, (BLOCK_R, BLOCK_K))  # natural order again
        if PAIRED_K:  # within groups of 8, which a thread holds whole: no data leaves it
            value = pair_permute_k(value, BLOCK_K)
        tl.store(values_ptr + rows64[:, None] * K + cols[None, :], value.to(values_ptr.dtype.element_ty),
                 mask=row_ok & (cols[None, :] < K))
        if OUT_MODE == 2:
            tl.store(scale_ptr + rows64[:, None] * (K // 16) + groups[None, :], scale, mask=group_mask)
