"""Launcher of the integer-dot W4A4 decode kernel (``kernels/gemv_dp4a.py``), M <= 4.

``NVFP4_TRITON_DP4A`` picks the variant: ``auto`` (the default: whichever the tuner measures
faster for the shape, among ``CANDIDATES`` and, at M = 2..4, ``FLOAT_PATH``), ``fused`` (the activation is quantized inside the GEMV: one launch per
linear), ``unfused`` (the activation kernel writes int8 values + fp32 scales first, then the
GEMV) or ``off`` (W4A4 decode runs on the tensor-core paths of ``launch.py``). Fusing costs
more with every row (each program re-quantizes its K slice once per activation row): the
H200 run of ``benchmarks/results/raw/h200_decode_run4.csv``, median over the 8 Llama
shapes vs bf16, fused / unfused / tuned: M = 1 1.87x / 2.03x / 2.07x, M = 4 1.01x / 1.34x /
1.37x. Since the dp4a layout fix the separate launch wins at M = 1 too on most shapes (the
fused tiles won only on 8B `o`, by 1%); both kinds stay candidates.

Tiles: the best tile and split-K setting depends on the shape (H200 sweep of 2026-12-02:
at M = 1 the best of 12 candidates beat the single default by 0-35% per shape, with no
simple rule behind the winners), so a few candidates (``CANDIDATES``) are timed once per
(M, N, K, dtype, device) by ``tuning.pick`` and the fastest is kept (``NVFP4_TRITON_TUNE=off``:
always the first; CUDA-graph captures: see ``tuning``).

The split-K partial sums are reduced inside the kernel by the last program of each N tile,
which needs a zeroed int32 counter per N tile; those counters reset themselves, so one
buffer per (device, stream) serves every launch, CUDA graphs included (``splitk_counters``).
"""

from __future__ import annotations

import torch

from ..kernels.gemv_dp4a import gemv_dp4a_kernel, gemv_dp4a_kernel_interpreted
from ..kernels.int_dot import LUT_HIGH, LUT_LOW
from ..utils import env
from . import fast_launch, launch, splitk_counters, tuning

DP4A_ENV = "NVFP4_TRITON_DP4A"
DP4A_M_MAX = 4
_LUTS: dict = {}
_CHOICE: dict = {}

# Per row count, the candidates timed by the tuner; the first is the untuned default.
# M = 1: from the H200 sweep (raw/h200_decode_sweep_run2.csv) the 32-row, 512-K,
# 8-programs-per-SM tile had the best geometric mean over the 8 Llama shapes and the
# pipelined 64 x 256 tile won on the widest layers; after the dp4a layout fix
# (raw/h200_decode_run4.csv) that 32 x 512 tile with the separate quantization launch was the
# best single setting (median 2.03x vs 1.87x fused, its `w4a4_dp4a_unfused` rows) and beat
# the tuner's pick among the others on 4 of 8 shapes, so it leads the list. M = 2..4: the
# unfused, cp.async-pipelined tiles won on every shape of the sweep.
CANDIDATES = {
    1: (
        dict(BLOCK_N=32, BLOCK_K=512, num_warps=4, WAVES=8, NUM_STAGES=1, FUSED_QUANT=False),
        dict(BLOCK_N=32, BLOCK_K=512, num_warps=4, WAVES=8, NUM_STAGES=1, FUSED_QUANT=True),
        dict(BLOCK_N=64, BLOCK_K=256, num_warps=4, WAVES=4, NUM_STAGES=3, FUSED_QUANT=True),
        dict(BLOCK_N=32, BLOCK_K=256, num_warps=4, WAVES=8, NUM_STAGES=3, FUSED_QUANT=True),
        dict(BLOCK_N=64, BLOCK_K=256, num_warps=4, WAVES=4, NUM_STAGES=1, FUSED_QUANT=False),
    ),
    2: (
        dict(BLOCK_N=64, BLOCK_K=256, num_warps=4, WAVES=4, NUM_STAGES=3, FUSED_QUANT=False),
        dict(BLOCK_N=64, BLOCK_K=256, num_warps=4, WAVES=2, NUM_STAGES=3, FUSED_QUANT=False),
        dict(BLOCK_N=32, BLOCK_K=256, num_warps=4, WAVES=8, NUM_STAGES=3, FUSED_QUANT=False),
        dict(BLOCK_N=64, BLOCK_K=256, num_warps=4, WAVES=4, NUM_STAGES=3, FUSED_QUANT=True),
    ),
}
CANDIDATES[4] = CANDIDATES[2]
_TILE_KEYS = frozenset(CANDIDATES[1][0])
# At M = 2..4 (tuner on, variant not forced) the float path is timed beside the tiles: the
# activation kernel's fp16 operand and the tuned tensor-core / CUDA-core GEMM of launch.py.
# Each activation row costs the integer GEMV 4 dp4a per group, so on some shapes the float
# path is faster there (H200, raw/h200_tuner_choices_m2_4.log: picked on 2 of 24 shape/M
# pairs, e.g. 8B `qkv` at M = 4, 25.9 vs 26.3 us for the best GEMV tile).
FLOAT_PATH = {"PATH": "float"}


def dp4a_mode() -> str:
    return env.choice(DP4A_ENV, "auto", ("auto", "fused", "unfused", "off"))


def dp4a_applies(m: int, device: torch.device) -> bool:
    return 0 < m <= DP4A_M_MAX and (device.type == "cuda" or launch.interpreting()) and dp4a_mode() != "off"


def candidates(m: int) -> list[dict]:
    """The tile candidates for M rows, with ``NVFP4_TRITON_DP4A=fused/unfused`` applied
    (duplicates that the forced variant creates are dropped)."""
    mode = dp4a_mode()
    out = []
    for cand in CANDIDATES[launch.decode_rows(m)]:
        cand = dict(cand)
        if mode in ("fused", "unfused"):
            cand["FUSED_QUANT"] = mode == "fused"
        if cand not in out:
            out.append(cand)
    if launch.decode_rows(m) > 1 and mode == "auto":
        out.append(dict(FLOAT_PATH))
    return out


def dp4a_config(m: int, n: int, k: int, device: torch.device, override: dict | None = None) -> dict:
    """Tiles and split-K: the first candidate for M (or ``override`` on top of it), about
    ``WAVES`` programs per SM, every split a whole number of tiles."""
    if override is not None and _TILE_KEYS <= override.keys():  # a whole candidate (the tuner's choice)
        cfg = dict(override)
    else:
        cfg = {**candidates(m)[0], **(override or {})}
    if launch.interpreting():
        cfg.update(BLOCK_N=min(cfg["BLOCK_N"], 32), BLOCK_K=64, NUM_STAGES=1)
    cfg.update(launch.waves_split_k(k, n, cfg["BLOCK_K"], cfg["BLOCK_N"], cfg["WAVES"], device, cfg.get("SPLIT_K")))
    cfg["ROWS"] = launch.decode_rows(m)
    return cfg


def choice_key(m: int, n: int, k: int, x_dtype, out_dtype, device: torch.device) -> tuple:
    """The tuner's cache key of a shape. The paired-decode, decoder and PDL settings change the
    candidates' speed, so a choice made under one setting is not reused under another
    (bench_linear.py --paired-ab / --pdl flip them in one process)."""
    return (m, n, k, x_dtype, out_dtype, dp4a_mode(), launch.paired_mode(m, True), launch.pdl_mode(True),
            launch.use_asm_decode(device), device.index)


def tuned_override(x, w_packed, w_scale, gx, alpha, bias, out_dtype=None) -> dict:
    """The candidate to run for this shape (``tuning.pick``: timed once, then cached)."""
    m, k = x.shape
    n = w_packed.shape[0]
    if launch.interpreting():
        return candidates(m)[0]
    key = choice_key(m, n, k, x.dtype, out_dtype, x.device)
    choice = tuning.cached(_CHOICE, key)
    if choice is not None:
        return choice

    def run(cand):
        return linear_w4a4_dp4a(x, w_packed, w_scale, gx, alpha, bias, config=cand, out_dtype=out_dtype)

    return tuning.pick(_CHOICE, key, candidates(m), run, x.device, "dp4a")


def lut(device: torch.device) -> torch.Tensor:
    """The FP4 -> int8 byte tables of ``kernels/int_dot.py`` as a device tensor (loaded by the
    kernel so that they stay in registers)."""
    key = str(device)
    t = _LUTS.get(key)
    if t is None:
        t = torch.tensor([LUT_LOW.value, LUT_HIGH.value], dtype=torch.int32, device=device)
        _LUTS[key] = t
    return t


def _asm_level(device: torch.device) -> int:
    """The kernel's ``USE_ASM``: its PTX (``prmt``, ``dp4a``) on every GPU, even with
    ``NVFP4_TRITON_DECODE=portable`` (their emulations exist for the interpreter), and sm_89's
    scale conversion where ``launch.use_asm_decode`` gives it."""
    if device.type != "cuda" or launch.interpreting():
        return launch.ASM_OFF
    return max(launch.use_asm_decode(device), launch.ASM_SM80)


def linear_w4a4_dp4a(x, w_packed, w_scale, gx, alpha, bias, config: dict | None = None,
                     out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Exact W4A4 linear for ``x[M, K]`` with M <= 4 on the integer-dot decode kernel; the
    output is in x's dtype, or ``out_dtype`` (float32 for tensor-parallel partial sums)."""
    m, k = x.shape
    n = w_packed.shape[0]
    if m == 0:
        return torch.empty((0, n), dtype=out_dtype or x.dtype, device=x.device)
    if m > DP4A_M_MAX:
        raise ValueError(f"linear_w4a4_dp4a: M = {m} > {DP4A_M_MAX}; use launch.linear_w4a4")
    if config is None:
        config = tuned_override(x, w_packed, w_scale, gx, alpha, bias, out_dtype)
    if config.get("PATH") == "float":  # allocates its own output
        return launch.linear_w4a4_float(x, w_packed, w_scale, gx, alpha, bias, out_dtype=out_dtype)
    out = torch.empty((m, n), dtype=out_dtype or x.dtype, device=x.device)
    cfg = dp4a_config(m, n, k, x.device, config)
    if cfg["FUSED_QUANT"]:
        xq, xs = x, alpha  # xs unused
    else:
        xq, xs = launch.quantize_activation_int8(x, gx)
    split = cfg["SPLIT_K"]
    n_tiles, partial, counters = splitk_counters.split_k_scratch(cfg, out, alpha)
    has_bias = bias is not None
    kernel = gemv_dp4a_kernel_interpreted if launch.interpreting() else gemv_dp4a_kernel
    fast_launch.launch(
        kernel, (n_tiles, split), xq, xs, gx, w_packed, w_scale.view(torch.uint8), alpha, bias if has_bias else alpha, out, partial, counters, lut(x.device),
        m, n, k, xq.stride(0), k // 2, k // 16, cfg["TILES_PER_SPLIT"], split,
        ROWS=cfg["ROWS"], FUSED_QUANT=bool(cfg["FUSED_QUANT"]), HAS_BIAS=has_bias,
        USE_ASM=_asm_level(x.device), INTERPRET=launch.interpreting(),
        EVEN_K=cfg["EVEN_K"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], NUM_STAGES=cfg["NUM_STAGES"],
        num_warps=cfg["num_warps"], **launch.pdl_options(x.device, w4a4=True),
    )
    launch.KERNEL_LAUNCHES["gemv_dp4a"] += 1
    return out
