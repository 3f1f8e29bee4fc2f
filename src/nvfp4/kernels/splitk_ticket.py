"""The end of a kernel that reduces its own split-K (``gemv_dp4a.py``, ``gemv_half2.py``, and
the small-M GEMM with ``NVFP4_TRITON_SPLITK_REDUCE=kernel``): one launch per linear, no
``splitk_reduce`` launch after it.

``finish_rows`` takes a program's fp32 row sums (up to 4 activation rows, ``y0..y3``):

* ``SPLIT_K == 1``: the epilogue directly (``y * scale`` in fp32 -- ``scale`` the exact power
  of two the kernel's terms lack --, ``* alpha``, cast, ``+ bias``), rows past M not stored;
* otherwise: every program stores its partials (``[SPLIT_K, ROWS, N]`` fp32), then takes a
  ticket from a per-N-tile counter (``atomic_add``, acq_rel, gpu scope, after a CTA barrier so
  all its threads' stores come first); the program that arrives last sums the ``SPLIT_K``
  partials in split order (so the result does not depend on which program was last), applies
  the same epilogue and resets the counter to 0 for the next launch.

``finish_tile`` does the same for a GEMM tile ``acc[BLOCK_N, BLOCK_M]`` with one counter per
(N tile, M tile), summing in the order of ``splitk_reduce`` (partial 0, then 1, ...), so its
output is bit-identical to the separate launch.
"""

import triton
import triton.language as tl

from .fp_bits import linear_epilogue, store_output_tile


@triton.jit
def _arrives_last(counter, SPLIT_K):
    """Take a ticket (after a CTA barrier: every thread's partial stores come first); true for
    the program of the tile's ``SPLIT_K`` that arrives last."""
    tl.debug_barrier()
    return tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") == SPLIT_K - 1


@triton.jit
def _row(y0, y1, y2, y3, r: tl.constexpr):
    y = y0
    if r == 1:
        y = y1
    elif r == 2:
        y = y2
    elif r == 3:
        y = y3
    return y


@triton.jit
def _store_row(y, r: tl.constexpr, offs_n, n_mask, M, N, alpha_ptr, bias_ptr, out_ptr,
               HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    alpha = tl.load(alpha_ptr + offs_n, mask=n_mask, other=0.0)
    bias = tl.load(bias_ptr + offs_n, mask=n_mask & HAS_BIAS, other=0.0)
    o = linear_epilogue(y, alpha, bias, out_ptr.dtype.element_ty, HAS_BIAS, INTERPRET)
    tl.store(out_ptr + r * N + offs_n.to(tl.int64), o, mask=n_mask & (r < M))


@triton.jit
def finish_rows(y0, y1, y2, y3, scale, pid_n, pid_k, offs_n, M, N, SPLIT_K, alpha_ptr, bias_ptr, out_ptr,
                partial_ptr, counter_ptr, ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """Rows ``0..ROWS-1`` of ``y0..y3`` (fp32 ``[BLOCK_N]``, N tile ``offs_n``) to the output,
    through the split-K ticket when ``SPLIT_K > 1`` (module docstring)."""
    n_mask = offs_n < N
    if SPLIT_K == 1:
        for r in tl.static_range(ROWS):
            _store_row(_row(y0, y1, y2, y3, r) * scale, r, offs_n, n_mask, M, N, alpha_ptr, bias_ptr, out_ptr,
                       HAS_BIAS, INTERPRET)
    else:
        n64 = offs_n.to(tl.int64)
        for r in tl.static_range(ROWS):
            tl.store(partial_ptr + (pid_k.to(tl.int64) * ROWS + r) * N + n64, _row(y0, y1, y2, y3, r), mask=n_mask)
        if _arrives_last(counter_ptr + pid_n, SPLIT_K):
            for r in tl.static_range(ROWS):
                y = tl.zeros((offs_n.shape[0],), dtype=tl.float32)
                for s in range(0, SPLIT_K):  # fixed order: deterministic
                    y += tl.load(partial_ptr + (s * ROWS + r) * N + n64, mask=n_mask, other=0.0, cache_modifier=".cg")
                _store_row(y * scale, r, offs_n, n_mask, M, N, alpha_ptr, bias_ptr, out_ptr, HAS_BIAS, INTERPRET)
            tl.store(counter_ptr + pid_n, 0)  # ready for the next launch


@triton.jit
def finish_tile(acc, offs_n, offs_m, M, N, pid_k, SPLIT_K, out_ptr, partial_ptr, counter_ptr, alpha_ptr, bias_ptr,
                HAS_BIAS: tl.constexpr, INTERPRET: tl.constexpr):
    """A GEMM program's fp32 ``acc[BLOCK_N, BLOCK_M]`` (weight rows x activation rows) of
    ``out[M, N]``: stored as split ``pid_k``'s partial, then the last program of the tile sums
    the ``SPLIT_K`` partials in split order and applies the epilogue (module docstring)."""
    store_output_tile(acc, offs_n, offs_m, M, N, pid_k, out_ptr, partial_ptr, alpha_ptr, bias_ptr, True, HAS_BIAS,
                      INTERPRET)
    tile = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
    if _arrives_last(counter_ptr + tile, SPLIT_K):
        mask = (offs_n < N)[:, None] & (offs_m < M)[None, :]
        index = offs_m.to(tl.int64)[None, :] * N + offs_n.to(tl.int64)[:, None]
        ptrs = partial_ptr + index
        y = tl.load(ptrs, mask=mask, other=0.0, cache_modifier=".cg")
        for s in range(1, SPLIT_K):  # fixed order, as splitk_reduce: the same bits
            ptrs += M * N  # M * N < 2^31 on this path (M <= 128)
            y += tl.load(ptrs, mask=mask, other=0.0, cache_modifier=".cg")
        store_output_tile(y, offs_n, offs_m, M, N, pid_k, out_ptr, partial_ptr, alpha_ptr, bias_ptr, False, HAS_BIAS,
                          INTERPRET)
        tl.store(counter_ptr + tile, 0)  # ready for the next launch
