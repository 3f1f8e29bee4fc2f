"""Launcher of the half2-decode GEMV (``kernels/gemv_half2.py``): M <= 4, dense fp16/bf16 operand.

It serves the small-M GEMM of ``launch.py`` (W4A16 reads ``x``; the W4A4 float path reads
the activation kernel's exact operand) as one more set of candidates for the once-per-shape
tuner (``launch.small_m_candidates``): each candidate is a tile and a split-K target of
about ``WAVES`` programs per SM, the split-K partials reduced inside the kernel (one
launch per call; the counters are the integer-dot kernel's, one buffer per stream).
"""

from __future__ import annotations

import torch

from ..kernels.gemv_half2 import gemv_half2_kernel, gemv_half2_kernel_interpreted
from ..utils import env
from . import fast_launch, launch

GEMV_HALF2_M_MAX = 4
PATH = "gemv_half2"
# Whether the small-M tuner times these tiles (``NVFP4_TRITON_GEMV=half2`` forces them either
# way). Off by default: on the H100 (2026-12-07) the tuner picked it for 1 of 8 Llama shapes
# at M = 1 (8B `qkv`, 21.3 vs 23.0 us) and the benchmark did not move (W4A16 median 1.59x
# bf16 with and without it); the tensor-core path stays faster on the large layers. Part of
# its GPU tests ran there (the PTX decoder on every word and scale byte, every tile within
# the exact bound at three shapes, bit-identical to the portable decoder); the rest did not
# fit the device time.
TUNER_ENV = "NVFP4_TRITON_GEMV_HALF2"
TUNER_DEFAULT = False


def offered_to_tuner() -> bool:
    """Read when a shape is first tuned (the choice is then cached for that shape)."""
    return env.switch(TUNER_ENV, TUNER_DEFAULT)


# The tiles timed per shape (the tuner keeps the fastest), from an H100 sweep at M = 1
# (benchmarks/results/raw/h100_half2_tile_sweep_m1.log; tuner times, L2 flushed, 70B
# `gate_up` bf16): 8 x 1024 on one warp 182 us, 16 x 1024 on two 230, 16 x 512 pipelined 300,
# 32 x 512 350, 64 x 512 on eight warps 561; the 64-wide K steps that had the fewest SASS
# instructions per element (6.0-6.2) were slower still (260-282, H100 run
# raw/h100_bench_m1_half2_on.log): few, long row runs per thread stream best. The
# tensor-core path took 171 us there (docs/performance.md, "the half2-decode GEMV").
TILES = (
    dict(BLOCK_N=8, BLOCK_K=1024, num_warps=1, WAVES=32, NUM_STAGES=1),
    dict(BLOCK_N=16, BLOCK_K=1024, num_warps=2, WAVES=16, NUM_STAGES=1),
    dict(BLOCK_N=16, BLOCK_K=512, num_warps=2, WAVES=16, NUM_STAGES=3),
)


def candidates(m: int) -> list[dict]:
    """The tuner candidates of this path for M rows (none above ``GEMV_HALF2_M_MAX``)."""
    if not 0 < m <= GEMV_HALF2_M_MAX:
        return []
    return [dict(PATH=PATH, **tile) for tile in TILES]


def config(m: int, n: int, k: int, device: torch.device, tile: dict) -> dict:
    """The launch configuration of ``tile`` for this shape (``launch.waves_split_k``)."""
    cfg = {key: tile[key] for key in ("BLOCK_N", "BLOCK_K", "num_warps", "WAVES", "NUM_STAGES")}
    if launch.interpreting():
        cfg.update(BLOCK_N=min(cfg["BLOCK_N"], 32), BLOCK_K=64, NUM_STAGES=1)
    cfg.update(launch.waves_split_k(k, n, cfg["BLOCK_K"], cfg["BLOCK_N"], cfg["WAVES"], device, tile.get("SPLIT_K")))
    cfg["ROWS"] = launch.decode_rows(m)
    return cfg


def gemv_half2(a, w_packed, w_scale_u8, alpha, bias, out_dtype, tile: dict, w4a4: bool = False) -> torch.Tensor:
    """``alpha * (a @ dequant(W)^T)`` (+ bias) for a dense fp16/bf16 ``a[M, K]``, M <= 4."""
    from .splitk_counters import split_k_scratch  # the self-resetting per-stream counters

    m, k = a.shape
    n = w_packed.shape[0]
    if not 0 < m <= GEMV_HALF2_M_MAX:
        raise ValueError(f"gemv_half2: M = {m} is outside 1..{GEMV_HALF2_M_MAX}")
    if a.stride(1) != 1:
        a = a.contiguous()
    cfg = config(m, n, k, a.device, tile)
    out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    split = cfg["SPLIT_K"]
    n_tiles, partial, counters = split_k_scratch(cfg, out, alpha)
    has_bias = bias is not None
    kernel = gemv_half2_kernel_interpreted if launch.interpreting() else gemv_half2_kernel
    fast_launch.launch(
        kernel, (n_tiles, split), a, w_packed, w_scale_u8, alpha, bias if has_bias else alpha, out, partial, counters,
        m, n, k, a.stride(0), k // 2, k // 16, cfg["TILES_PER_SPLIT"], split,
        ROWS=cfg["ROWS"], HAS_BIAS=has_bias, USE_ASM=launch.use_asm_decode(a.device), INTERPRET=launch.interpreting(),
        EVEN_K=cfg["EVEN_K"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], NUM_STAGES=cfg["NUM_STAGES"],
        num_warps=cfg["num_warps"], **launch.pdl_options(a.device, w4a4),
    )
    launch.KERNEL_LAUNCHES[PATH] += 1
    return out
