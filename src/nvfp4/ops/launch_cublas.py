"""The large-M path: cuBLAS over a transient exact fp16/bf16 copy of the weight.

At ``M >= launch.CUBLAS_MIN_M`` with one alpha for every row the GEMM is compute-bound and
cuBLAS is faster than any Triton GEMM here (docs/performance.md): the activation operand
(W4A4) or ``x`` (W4A16) times the dequantized weight, alpha in cuBLAS's fp32 epilogue.
"""

from __future__ import annotations

import torch

from ..utils import env
from .launch import KERNEL_LAUNCHES, cdiv, dequantize_weight

# Memory knob of the large-M path: ``NVFP4_TRITON_CUBLAS_CHUNKS=c`` dequantizes the weight in
# c N-chunks (rows of the weight = columns of the output) into one reused chunk buffer, each
# multiplied right after it is written into its own columns of ``out``, so the transient copy
# is 1/c of the layer (70B gate_up: 940 MB whole, 235 MB at c = 4). Every output element is
# still one cuBLAS dot product over the whole K (H200: bit-identical to the whole-weight GEMM
# on the 8 Llama shapes at M = 1024..4096). Not the default, because it is not faster: H200
# runs (docs/performance.md) put 2 chunks within +-5% of the whole weight at M = 1024..4096,
# and 8-15% slower at M = 256..512 on the large layers (narrower GEMMs fill fewer SMs); a side
# stream dequantizing chunk i + 1 while cuBLAS multiplies chunk i gained nothing (cuBLAS keeps
# every SM busy) and was dropped.
CUBLAS_CHUNKS_ENV = "NVFP4_TRITON_CUBLAS_CHUNKS"


def cublas_chunks() -> int:
    return env.whole_number(CUBLAS_CHUNKS_ENV, 1, 1)


def _chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` row ranges of a multiple of 128 rows (whole GEMM tiles; every view of the
    packed weight, its scales and the output stays 16-byte aligned)."""
    rows = max(128, cdiv(cdiv(n, max(chunks, 1)), 128) * 128)
    return [(n0, min(n, n0 + rows)) for n0 in range(0, n, rows)]


def cublas_gemm(a_exact, w_packed, w_scale_u8, alpha_scalar: float, bias, chunks: int | None = None):
    """``round(alpha * (A @ W^T)) + bias`` with cuBLAS: one fp32 accumulation, alpha applied in
    fp32 by the GEMM epilogue, one rounding to the output dtype, then the bias (as the
    reference does). The dequantized weight is a per-call buffer (the whole layer, or one
    chunk reused chunk after chunk: same stream, so each GEMM reads it before it is rewritten)."""
    n, k = w_packed.shape[0], w_packed.shape[1] * 2
    bounds = _chunk_bounds(n, cublas_chunks() if chunks is None else chunks)
    scalar = a_exact.new_empty(())  # beta = 0: never read
    out = torch.empty((a_exact.shape[0], n), dtype=a_exact.dtype, device=a_exact.device)
    buf = torch.empty((bounds[0][1] - bounds[0][0], k), dtype=a_exact.dtype, device=a_exact.device)
    for n0, n1 in bounds:  # one chunk (the default): the whole weight, out[:, 0:n] is out itself
        w_chunk = dequantize_weight(w_packed[n0:n1], w_scale_u8[n0:n1], a_exact.dtype, out=buf[: n1 - n0])
        # out[:, n0:n1] is a row-major view with leading dimension n: cuBLAS writes it in place.
        torch.addmm(scalar, a_exact, w_chunk.t(), beta=0.0, alpha=alpha_scalar, out=out[:, n0:n1])
        KERNEL_LAUNCHES["cublas_gemm"] += 1
    return out if bias is None else out + bias
