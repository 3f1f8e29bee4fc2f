"""Scratch of the kernels that reduce their own split-K (``kernels/splitk_ticket.py``): fp32
partials and the per-tile ticket counters, and the setting that gives the small-M GEMM the
same in-kernel reduction.

The integer-dot and half2 GEMVs always reduce in the kernel. The small-M tensor-core GEMM
launches ``splitk_reduce`` after itself unless ``NVFP4_TRITON_SPLITK_REDUCE=kernel``: then the
last program of each output tile sums the partials (the same order, the same bits) and the
linear is one launch shorter. It stays opt-in: on the H100 (2026-12-08,
``benchmarks/results/raw/h100_bench_decode_splitk_eight_row_ab.csv``, ``--splitk-ab``) it was
slower at M >= 4, by up to 16% at M = 128 (the ticket epilogue lengthens the K loop's register
allocation and serialises the last program's reduction).
"""

from __future__ import annotations

import torch

from ..utils import env

SPLITK_REDUCE_ENV = "NVFP4_TRITON_SPLITK_REDUCE"
SPLITK_REDUCE_MODES = ("launch", "kernel")
SPLITK_REDUCE_DEFAULT = "launch"
# Counters per (device, stream), allocated once with room for any layer (one int32 per output
# tile; 65536 tiles of >= 32 rows = N up to 2M) and never replaced: a CUDA graph that captured
# a launch keeps reading the buffer it captured, so a buffer freed for a larger one could be
# handed to other tensors (a shared graph pool) while a graph still counts in it. Every
# kernel resets its counters to 0 before it ends, so kernels of one stream can share them.
COUNTER_CAPACITY = 65536
_COUNTERS: dict = {}


def splitk_reduce_mode() -> str:
    """``launch`` (a ``splitk_reduce`` launch after the GEMM) or ``kernel`` (in the GEMM)."""
    return env.choice(SPLITK_REDUCE_ENV, SPLITK_REDUCE_DEFAULT, SPLITK_REDUCE_MODES)


def counters(device: torch.device, n_tiles: int) -> torch.Tensor:
    """The zeroed int32 ticket counters of the current stream, at least ``n_tiles``."""
    # (the raw current stream, as Triton's launcher reads it: torch.cuda.current_stream costs ~5 us)
    index = device.index if device.index is not None else (torch.cuda.current_device() if device.type == "cuda" else 0)
    stream = torch._C._cuda_getCurrentRawStream(index) if device.type == "cuda" else 0
    key = (str(device), stream)
    buf = _COUNTERS.get(key)
    if buf is None:
        buf = torch.zeros(max(COUNTER_CAPACITY, n_tiles), dtype=torch.int32, device=device)
        _COUNTERS[key] = buf
    elif buf.numel() < n_tiles:
        raise ValueError(f"split-K: {n_tiles} output tiles exceed the ticket counter buffer ({buf.numel()}); "
                         f"raise splitk_counters.COUNTER_CAPACITY before the first call")
    return buf


def split_k_scratch(cfg: dict, out: torch.Tensor, placeholder: torch.Tensor):
    """``(N tiles, fp32 partials [SPLIT_K, ROWS, N], counters)`` for a decode kernel that
    reduces its own split-K (the integer-dot and half2 GEMVs); with one split both buffers are
    unused and ``out`` / ``placeholder`` stand in for them."""
    n = out.shape[1]
    n_tiles = -(-n // cfg["BLOCK_N"])
    if cfg["SPLIT_K"] == 1:
        return n_tiles, out, placeholder
    partial = torch.empty((cfg["SPLIT_K"], cfg["ROWS"], n), dtype=torch.float32, device=out.device)
    return n_tiles, partial, counters(out.device, n_tiles)
