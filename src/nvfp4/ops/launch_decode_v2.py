"""Launchers of the decode GEMM v2 (``kernels/gemm_decode.py``), the opt-in small-M path over a
repacked weight (``NVFP4_TRITON_SMALL_M=v2``; the custom op is ``ops/decode_v2.py``).

On the H200 (``benchmarks/bench_decode_v2.py``, ``benchmarks/results/raw/h200_decode_v2_run.csv``)
it ran at 0.40-0.55x bf16 for M = 1..64, slower than the default paths, so it stays opt-in:
kept because it is tested, exact and the starting point of a repacked-weight decode.
"""

from __future__ import annotations

import os

import torch

from . import fast_launch
from .launch import (
    KERNEL_LAUNCHES, _op_dtype, _pow2_at_least, _reduce, cdiv, interpreting, num_sms, quantize_activation,
)

SMALL_M_ENV = "NVFP4_TRITON_SMALL_M"  # "v1" (default: gemm.py / gemv.py) or "v2"
DECODE_V2_M_MAX = 64  # v2 serves M up to this (BLOCK_M <= 64, weights re-read per M tile)
_REPACK_ROWS = 4096  # rows per repack chunk (bounds the transient int codes tensor)


def decode_v2_enabled() -> bool:
    return os.environ.get(SMALL_M_ENV, "v1").strip().lower() == "v2"


def repack_weight_for_decode(w_packed: torch.Tensor, w_scale: torch.Tensor):
    """Checkpoint layout -> the decode-v2 layout (done once, in ``prepare``).

    ``w_packed`` u8 ``[N, K/2]`` (element 2j low nibble, 2j+1 high) and ``w_scale``
    (e4m3 or u8) ``[N, K/16]`` become ``(packed u8 [N, Kp/2], scale u8 [N, Kp/16])`` with
    ``Kp = K`` rounded up to 32: in every 32-wide block, byte j holds element j (low nibble)
    and element 16 + j (high nibble); padding is zero codes with zero scales.
    """
    if w_packed.dtype != torch.uint8 or w_packed.dim() != 2:
        raise ValueError(f"repack_weight_for_decode: weight_packed must be uint8 [N, K/2], got {w_packed.dtype} {tuple(w_packed.shape)}")
    n, k = w_packed.shape[0], w_packed.shape[1] * 2
    scale_u8 = w_scale.view(torch.uint8)
    if tuple(scale_u8.shape) != (n, k // 16) or k % 16:
        raise ValueError(f"repack_weight_for_decode: weight_scale must be [{n}, {k // 16}], got {tuple(w_scale.shape)}")
    kp = cdiv(k, 32) * 32
    packed = torch.empty((n, kp // 2), dtype=torch.uint8, device=w_packed.device)
    for r0 in range(0, n, _REPACK_ROWS):
        rows = w_packed[r0:r0 + _REPACK_ROWS]
        codes = torch.stack((rows & 0xF, rows >> 4), dim=-1).reshape(rows.shape[0], k)
        if kp != k:
            codes = torch.nn.functional.pad(codes, (0, kp - k))
        blocks = codes.reshape(rows.shape[0], kp // 32, 2, 16)
        packed[r0:r0 + _REPACK_ROWS] = (blocks[:, :, 0, :] | (blocks[:, :, 1, :] << 4)).reshape(rows.shape[0], kp // 2)
    scale = scale_u8.contiguous() if kp == k else torch.nn.functional.pad(scale_u8, (0, (kp - k) // 16)).contiguous()
    return packed, scale


def unpack_decode_layout(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of the repack for tests: the decode-v2 bytes -> E2M1 codes u8 ``[N, K]``."""
    n, kp = packed.shape[0], packed.shape[1] * 2
    blocks = packed.reshape(n, kp // 32, 1, 16)
    codes = torch.cat((blocks & 0xF, blocks >> 4), dim=2).reshape(n, kp)
    return codes[:, :k]


def decode_v2_config(m: int, n: int, k: int, device: torch.device, override: dict | None = None) -> dict:
    """Tiles of the v2 decode GEMM; split-K sized for ~2 waves (a divisor of the K tiles)."""
    cfg = dict(BLOCK_M=min(_pow2_at_least(m, 16), 64), BLOCK_N=64, BLOCK_K=256, num_warps=4, num_stages=3,
               SCALE_GATHER=False, USE_ASM=False, PREFETCH_SCALES=False)
    if override:
        cfg.update(override)
    if interpreting() or device.type != "cuda":
        cfg.update(num_stages=1, USE_ASM=False)  # inline PTX cannot be interpreted
    if cfg["SCALE_GATHER"] and (cfg["USE_ASM"] or cfg["PREFETCH_SCALES"]):
        raise ValueError("decode v2: USE_ASM / PREFETCH_SCALES work on the [BLOCK_N, BLOCK_K/32, 16] view; SCALE_GATHER must be off")
    kp = cdiv(k, 32) * 32
    k_tiles = cdiv(kp, cfg["BLOCK_K"])
    if "SPLIT_K" not in (override or {}):
        tiles = cdiv(n, cfg["BLOCK_N"]) * cdiv(m, cfg["BLOCK_M"])
        target = max(1, min(k_tiles, 64, cdiv(2 * num_sms(device), tiles)))
        cfg["SPLIT_K"] = max(d for d in range(1, target + 1) if k_tiles % d == 0)
    cfg["SPLIT_K"] = max(1, min(cfg["SPLIT_K"], k_tiles))
    cfg["EVEN_K"] = k % cfg["BLOCK_K"] == 0 and (k // cfg["BLOCK_K"]) % cfg["SPLIT_K"] == 0
    return cfg


def gemm_decode_v2(x, w_packed_decode, w_scale_decode, k, alpha, bias, out_dtype, config: dict | None = None):
    """``out[M, N] = (x @ W^T) * alpha (+ bias)`` with the v2 decode kernel.

    ``x``: the dense activation operand ``[M, K]`` (fp16 for W4A4's exact operand; bf16/fp16
    for W4A16; fp32 under the interpreter); the weight in the repacked layout.
    """
    from ..kernels.gemm_decode import decode_gemm_kernel, decode_gemm_kernel_interpreted

    m = x.shape[0]
    n = w_packed_decode.shape[0]
    kp = w_packed_decode.shape[1] * 2
    if x.shape[1] != k or kp != cdiv(k, 32) * 32 or tuple(w_scale_decode.shape) != (n, kp // 16):
        raise ValueError(
            f"gemm_decode_v2: x {tuple(x.shape)}, repacked weight {tuple(w_packed_decode.shape)} and scale "
            f"{tuple(w_scale_decode.shape)} do not fit K = {k}"
        )
    out = torch.empty((m, n), dtype=out_dtype, device=x.device)
    if m == 0:
        return out
    cfg = decode_v2_config(m, n, k, x.device, config)
    split = cfg["SPLIT_K"]
    tiles_per_split = cdiv(cdiv(kp, cfg["BLOCK_K"]), split)
    partial = torch.empty((split, m, n), dtype=torch.float32, device=x.device) if split > 1 else out
    grid = (cdiv(n, cfg["BLOCK_N"]), cdiv(m, cfg["BLOCK_M"]), split)
    kernel = decode_gemm_kernel_interpreted if interpreting() else decode_gemm_kernel
    has_bias = bias is not None
    fast_launch.launch(
        kernel, grid, x, w_packed_decode, w_scale_decode.view(torch.uint8), alpha, bias if has_bias else alpha, out, partial,
        m, n, k, x.stride(0), kp // 2, kp // 16, tiles_per_split,
        HAS_BIAS=has_bias, WRITE_PARTIAL=split > 1, X_BF16=x.dtype == torch.bfloat16,
        SCALE_GATHER=bool(cfg["SCALE_GATHER"]), USE_ASM=bool(cfg["USE_ASM"]),
        PREFETCH_SCALES=bool(cfg["PREFETCH_SCALES"]), INTERPRET=interpreting(), EVEN_K=cfg["EVEN_K"],
        BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"], BLOCK_K=cfg["BLOCK_K"],
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    KERNEL_LAUNCHES["gemm_decode_v2"] += 1
    if split > 1:
        _reduce(partial, alpha, bias, out, split)
    return out


def linear_w4a4_decode_v2(x, w_packed_decode, w_scale_decode, k, gx, alpha, bias, config=None):
    """W4A4 with the v2 decode GEMM: the activation-quant kernel writes the exact operand
    ``e2m1(q)*s`` in fp16 (always exact there), then v2 runs over fp16 operands."""
    _, torch_op = _op_dtype(x.dtype, True)
    x_hat = quantize_activation(x, gx, dequant_dtype=torch_op)
    return gemm_decode_v2(x_hat, w_packed_decode, w_scale_decode, k, alpha, bias, x.dtype, config)


def linear_w4a16_decode_v2(x, w_packed_decode, w_scale_decode, k, alpha, bias, config=None):
    """W4A16 with the v2 decode GEMM over ``x`` itself (bf16 or fp16 operands)."""
    return gemm_decode_v2(x, w_packed_decode, w_scale_decode, k, alpha, bias, x.dtype, config)
