"""Launcher of the int8 tensor-core W4A4 GEMM (``kernels/gemm_int8_mma.py``), small M.

The activation is quantized by ``activation_quant`` into int8 ``2 * e2m1`` values and fp32
block scales (``launch.quantize_activation_int8``, the integer GEMV's operands), then one
GEMM launch (plus ``splitk_reduce`` when K is split).

Tiles: ``ROWS`` activation rows per program (a power of two >= M, at most ``ROWS_MAX``),
``MMA_ROWS`` block-diagonal MMA rows (``BLOCK_K = 16 * MMA_ROWS / ROWS``: 64 rows make one
Hopper wgmma, fewer run as mma.sync), ``BLOCK_N`` weight rows. Split-K is sized for about
``WAVES`` programs per SM, every split a whole number of K tiles.
"""

from __future__ import annotations

import torch

from ..kernels.gemm_int8_mma import gemm_int8_mma_kernel, gemm_int8_mma_kernel_interpreted
from . import launch

ROWS_MAX = 16
_TILE_KEYS = frozenset(("MMA_ROWS", "BLOCK_N", "num_warps", "num_stages", "WAVES"))


def candidates(m: int) -> list[dict]:
    """The tiles timed for M rows; the first is the untuned default. From the sm_90 SASS of
    the K loop (instructions per weight element: ~3.8 at ROWS = 2..4, 5.0 at 8, 6.8 at 16;
    above 16 rows the per-step scaling, 3 * ROWS / 16 per element, outweighs the cheap
    decode) and without the tiles that spill registers."""
    rows = rows_for(m)
    tiles = {2: [(64, 64), (32, 128), (32, 64)], 4: [(64, 128), (64, 64), (32, 128)],
             8: [(64, 128), (64, 64), (128, 64)], 16: [(64, 128), (64, 64), (128, 64)]}[rows]
    return [dict(MMA_ROWS=mma_rows, BLOCK_N=bn, num_warps=4, num_stages=3, WAVES=2) for mma_rows, bn in tiles]


def rows_for(m: int) -> int:
    return min(ROWS_MAX, launch.next_power_of_2(max(m, 2)))


def applies(m: int) -> bool:
    return 0 < m <= ROWS_MAX


def config(m: int, n: int, k: int, device: torch.device, override: dict | None = None) -> dict:
    cfg = {**candidates(m)[0], **(override or {})}
    rows = rows_for(m)
    cfg["ROWS"] = rows
    if launch.interpreting():
        cfg.update(MMA_ROWS=max(4 * rows, 16), BLOCK_N=64, num_stages=1)
    block_k = 16 * cfg["MMA_ROWS"] // rows
    if block_k < 32 or block_k & (block_k - 1):
        raise ValueError(f"int8 MMA tile: MMA_ROWS={cfg['MMA_ROWS']} over ROWS={rows} gives BLOCK_K={block_k}")
    cfg["BLOCK_K"] = block_k
    k_tiles = launch.cdiv(k, block_k)
    tiles = launch.cdiv(n, cfg["BLOCK_N"]) * launch.cdiv(m, rows)
    split = cfg.get("SPLIT_K") or launch.cdiv(cfg["WAVES"] * launch.num_sms(device), tiles)
    split = max(1, min(split, k_tiles, 64))
    tiles_per_split = launch.cdiv(k_tiles, split)
    cfg["SPLIT_K"] = launch.cdiv(k_tiles, tiles_per_split)  # no empty split
    cfg["TILES_PER_SPLIT"] = tiles_per_split
    cfg["EVEN_K"] = k % block_k == 0 and k_tiles % tiles_per_split == 0
    return cfg


def linear_w4a4_int8_mma(x, w_packed, w_scale, gx, alpha, bias, config_override: dict | None = None,
                         out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Exact W4A4 linear for ``x[M, K]`` (M <= ``ROWS_MAX``) on the int8 tensor cores."""
    m, k = x.shape
    n = w_packed.shape[0]
    out = torch.empty((m, n), dtype=out_dtype or x.dtype, device=x.device)
    if m == 0:
        return out
    if not applies(m):
        raise ValueError(f"linear_w4a4_int8_mma: M = {m} > {ROWS_MAX}; use launch.linear_w4a4")
    cfg = config(m, n, k, x.device, config_override)
    xq, xs = launch.quantize_activation_int8(x, gx)
    split = cfg["SPLIT_K"]
    partial = torch.empty((split, m, n), dtype=torch.float32, device=x.device) if split > 1 else out
    has_bias = bias is not None
    interpret = launch.interpreting()
    kernel = gemm_int8_mma_kernel_interpreted if interpret else gemm_int8_mma_kernel
    grid = (launch.cdiv(n, cfg["BLOCK_N"]), launch.cdiv(m, cfg["ROWS"]), split)
    kernel[grid](
        xq, xs, w_packed, w_scale.view(torch.uint8), alpha, bias if has_bias else alpha, out, partial,
        m, n, k, xq.stride(0), k // 2, k // 16, cfg["TILES_PER_SPLIT"],
        ROWS=cfg["ROWS"], HAS_BIAS=has_bias, WRITE_PARTIAL=split > 1,
        USE_ASM=x.device.type == "cuda" and not interpret, INTERPRET=interpret, EVEN_K=cfg["EVEN_K"],
        BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    launch.KERNEL_LAUNCHES["gemm_int8_mma"] += 1
    if split > 1:
        launch._reduce(partial, alpha, bias, out, split)
    return out
