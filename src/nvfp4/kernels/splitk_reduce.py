"""Split-K epilogue: ``out = (sum_s partial[s]) * alpha[n]`` cast to the output dtype, + bias.

The partials are summed in a fixed order (s = 0, 1, ...), so results are deterministic run
to run (no atomics). Bias is added after the cast, as the reference does.
"""

import triton
import triton.language as tl

from .fp_bits import linear_epilogue
from .grid_dependency import allow_dependents, wait_for_previous_grid


@triton.jit
def splitk_reduce_kernel(
    partial_ptr, alpha_ptr, bias_ptr, out_ptr, M, N,
    SPLIT_K: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr, BLOCK: tl.constexpr,
    PDL: tl.constexpr = False,  # programmatic dependent launch (grid_dependency.py)
):
    wait_for_previous_grid(PDL)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M * N
    acc = tl.load(partial_ptr + offs, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLIT_K):
        acc += tl.load(partial_ptr + s * M * N + offs, mask=mask, other=0.0)
    allow_dependents(PDL)  # NVFP4_TRITON_PDL=late: the next kernel may be scheduled
    n = offs % N
    alpha = tl.load(alpha_ptr + n, mask=mask, other=0.0)
    bias = tl.load(bias_ptr + n, mask=mask & HAS_BIAS, other=0.0)
    y = linear_epilogue(acc, alpha, bias, out_ptr.dtype.element_ty, HAS_BIAS, INTERPRET)
    tl.store(out_ptr + offs, y, mask=mask)
