"""Launchers: choose the kernel path and tile configuration, allocate outputs, launch.

Paths (``M`` = tokens after flattening leading dims). W4A4 first runs ``activation_quant``,
which writes the exact operand ``e2m1(q) * s`` (fp16, or x's dtype for cuBLAS); every GEMM
below then reads a dense activation (W4A16 reads ``x`` itself):

* ``M <= 4``, W4A4: the integer-dot decode kernel (``kernels/gemv_dp4a.py``, launched by
  ``launch_dp4a.py``: activation quantization fused in at M = 1, an int8-output activation
  launch before it at M = 2..4, split-K reduced in the kernel; at M = 2..4 its tuner also
  times the float path below, ``linear_w4a4_float``); ``NVFP4_TRITON_DP4A=off`` sends
  these M to the float paths below;
* ``M <= SPLITK_M_MAX`` (128; W4A16 and W4A4 from M = 5, or with the integer path off):
  the tensor-core split-K GEMM (fp32 partials, then ``splitk_reduce`` in a fixed order:
  deterministic) in either MMA operand orientation (``W_AS_B``: the weight through shared
  memory as the right operand; swap-AB: the weight as the left register operand), or at
  M <= 4 a CUDA-core GEMV (``kernels/gemv_half2.py``'s tiles, launched by
  ``launch_gemv_half2.py``, and ``kernels/gemv.py``): ``small_m_candidates``, timed once per
  shape and M bucket by ``tuning.pick`` (outside CUDA-graph capture; ``NVFP4_TRITON_GEMV``
  narrows the choice);
* ``M >= CUBLAS_MIN_M`` with one alpha for every row: cuBLAS over a transient exact
  fp16/bf16 copy of the weight (alpha in the GEMM epilogue, one rounding, then bias;
  ``launch_cublas.py``, whose ``NVFP4_TRITON_CUBLAS_CHUNKS`` shrinks that copy);
* otherwise: the autotuned tensor-core GEMM with the epilogue fused.

The variant with the quantization fused into the GEMM (``A_QUANTIZE``) and the GEMM over
packed FP4 activations (``A_PACKED``) are kept, tested and reachable (``config`` /
``gemm_w4a4_packed``); they were slower on the H100 (see docs/performance.md).

Every launch is counted in ``KERNEL_LAUNCHES`` so tests can prove the Triton kernels ran
(no silent fallback), and goes through ``fast_launch.launch`` (Triton's compiled kernel,
launched directly after the first call of its specialization: less host time per call).
``TRITON_INTERPRET=1`` (the CPU interpreter) is honoured: fixed tiles, fp32 operands and
dots, portable decoding.
"""

from __future__ import annotations

import collections
import functools
import logging
import os

import torch
import triton

from ..kernels.gemm import A_DENSE, A_PACKED, A_QUANTIZE, nvfp4_gemm_kernel, nvfp4_gemm_kernel_interpreted
from ..kernels.gemv import gemv_kernel, gemv_kernel_interpreted
from ..kernels import paired_decode
from ..kernels.splitk_reduce import splitk_reduce_kernel
from ..kernels.weight_dequant import weight_dequant_kernel
from ..utils import env
from . import fast_launch, splitk_counters, tuning
from .decode_level import ASM_OFF, ASM_SM80, ASM_SM89, DECODE_ENV, DECODE_MODES, use_asm_decode  # noqa: F401
from .dependent_launch import (  # noqa: F401  (re-exported)
    PDL_DEFAULT_W4A4, PDL_DEFAULT_W4A16, PDL_ENV, PDL_MODES, pdl_mode, pdl_options,
)
from .launch_act_quant import quantize_activation, quantize_activation_int8  # noqa: F401  (re-exported)

logger = logging.getLogger("nvfp4")

SPLITK_M_MAX = 128  # the heuristic split-K tensor-core path serves M up to this
GEMV_M_MAX = 4  # the CUDA-core path (kernels/gemv.py) is offered up to this M
# "auto" (time every small-M candidate once per shape), "always" (kernels/gemv.py),
# "half2" (only the half2-decode GEMV's tiles, timed), "never" (no CUDA-core GEMV)
GEMV_ENV = "NVFP4_TRITON_GEMV"
GEMV_MODES = ("auto", "always", "half2", "never")
_SMALL_PATH_CHOICE: dict = {}
# Above this M (and with one alpha for all rows) the GEMM runs on cuBLAS over a transient
# exact fp16/bf16 copy of the weight: compute-bound there, and cuBLAS is faster.
CUBLAS_MIN_M = int(os.environ.get("NVFP4_TRITON_CUBLAS_MIN_M", "256"))
KERNEL_LAUNCHES: collections.Counter = collections.Counter()
# The small-M tensor-core GEMM with the paired weight decode and a K-permuted activation
# (kernels/paired_decode.py, paired_mode): "on" or "off".
PAIRED_K_ENV = "NVFP4_TRITON_PAIRED_K"
PAIRED_K_DEFAULT = True  # H100: 1.04-1.30x the natural decode at M = 5..128, never slower (docs/performance.md)
PAIRED_IN_KERNEL_M_MAX = 32  # paired_mode
# The kernel's PAIRED_K values as plain ints (they are Triton constexprs there).
PAIRED_OFF, PAIRED_OPERAND, PAIRED_IN_KERNEL = (
    int(c.value) for c in (paired_decode.PAIRED_OFF, paired_decode.PAIRED_OPERAND, paired_decode.PAIRED_IN_KERNEL))


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for ints. Not ``triton.cdiv``: that is a Triton constexpr function whose
    host-side call costs ~5 us (argument unwrapping); launchers call it several times per
    linear, and decode-sized calls are launch-bound in eager mode."""
    return -(-a // b)


def next_power_of_2(v: int) -> int:
    """Smallest power of two >= v (1 for v <= 1); ``triton.next_power_of_2`` without its
    host-call overhead (see ``cdiv``)."""
    return 1 if v <= 1 else 1 << (v - 1).bit_length()


def interpreting() -> bool:
    return fast_launch.INTERPRETING


@functools.lru_cache(maxsize=None)
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return _num_sms(device.index if device.index is not None else torch.cuda.current_device())


def _op_dtype(x_dtype: torch.dtype, quantized_activation: bool):
    # e2m1 * e4m3 products are exact in fp16 and bf16; W4A4 operands are always such
    # products, so fp16 (the cheaper decode) serves both input dtypes. W4A16 must match x.
    import triton.language as tl

    if interpreting():
        # The interpreter's half-precision arithmetic is emulated; fp32 holds the same exact values.
        return tl.float32, torch.float32
    if quantized_activation or x_dtype == torch.float16:
        return tl.float16, torch.float16
    return tl.bfloat16, torch.bfloat16


# ---------------------------------------------------------------------------------------
# GEMM configurations


def _pow2_at_least(v: int, lo: int) -> int:
    return max(lo, next_power_of_2(max(v, 1)))


def decode_rows(m: int) -> int:
    """Activation rows a decode kernel (M <= 4) is compiled for: 1, 2 or 4 (rows past M read
    zeros and are not stored), so M = 3 shares M = 4's compiled kernel."""
    return 1 if m == 1 else (2 if m == 2 else 4)


def waves_split_k(k: int, n: int, block_k: int, block_n: int, waves: int, device: torch.device,
                  split: int | None = None) -> dict:
    """Split-K of about ``waves`` programs per SM over ``cdiv(n, block_n)`` N tiles (or
    ``split`` when given), every split a whole number of K tiles and none empty:
    ``SPLIT_K``, ``TILES_PER_SPLIT`` and ``EVEN_K`` (no K masking needed). For the decode
    kernels that reduce their split-K partials themselves (integer-dot and half2 GEMVs)."""
    k_tiles = cdiv(k, block_k)
    split = split or cdiv(waves * num_sms(device), cdiv(n, block_n))
    split = max(1, min(split, k_tiles))
    tiles_per_split = cdiv(k_tiles, split)
    return dict(SPLIT_K=cdiv(k_tiles, tiles_per_split), TILES_PER_SPLIT=tiles_per_split,
                EVEN_K=k % block_k == 0 and k_tiles % tiles_per_split == 0)


def small_m_config(m: int, n: int, k: int, device: torch.device, override: dict | None = None) -> dict:
    """Fixed tiles for the decode path; split-K sized for ~``WAVES`` (default 2) programs per
    SM, a divisor of the K-tile count."""
    # From benchmarks/tune_small_m.py on an H100 (8B o_proj, M = 1..64): BLOCK_N=64,
    # BLOCK_K=256, 4 warps, 3 stages was within a few % of the best everywhere.
    cfg = dict(BLOCK_M=min(_pow2_at_least(m, 16), 128), BLOCK_N=64, BLOCK_K=256, num_warps=4, num_stages=3, W_AS_B=False)
    if m > 64:
        cfg.update(BLOCK_N=128, BLOCK_K=128, num_warps=8)
    if override:
        cfg.update(override)
    if interpreting():
        cfg.update(BLOCK_N=64, BLOCK_K=64, num_stages=1)
    k_tiles = cdiv(k, cfg["BLOCK_K"])
    tiles = cdiv(n, cfg["BLOCK_N"]) * cdiv(m, cfg["BLOCK_M"])
    if "SPLIT_K" not in (override or {}):
        target = max(1, min(k_tiles, 32, cdiv(cfg.get("WAVES", 2) * num_sms(device), tiles)))
        # A divisor of the K-tile count: every split gets whole tiles and no mask is needed.
        cfg["SPLIT_K"] = max(d for d in range(1, target + 1) if k_tiles % d == 0)
    cfg["SPLIT_K"] = max(1, min(cfg["SPLIT_K"], k_tiles))
    cfg["EVEN_K"] = _even_k(k, cfg["BLOCK_K"], cfg["SPLIT_K"])
    return cfg


def _even_k(k: int, block_k: int, split: int) -> bool:
    return k % block_k == 0 and (k // block_k) % split == 0


def _large_configs():
    def c(bn, bm, bk, w, s):
        return triton.Config(dict(BLOCK_N=bn, BLOCK_M=bm, BLOCK_K=bk, SPLIT_K=1), num_warps=w, num_stages=s)

    return [c(128, 128, 64, 8, 3), c(128, 256, 64, 8, 3), c(256, 128, 64, 8, 3)]


_LARGE_CONFIGS = _large_configs()
_KEY = ["M_BUCKET", "N", "K", "A_MODE", "OP_DTYPE", "HAS_BIAS", "USE_ASM"]


@functools.lru_cache(maxsize=None)
def _autotuned_large():
    """M > SPLITK_M_MAX on the Triton GEMM (per-row alpha, or below CUBLAS_MIN_M)."""
    tiles = triton.heuristics(
        {
            "TILES_PER_SPLIT": lambda a: cdiv(cdiv(a["K"], a["BLOCK_K"]), a["SPLIT_K"]),
            "WRITE_PARTIAL": lambda a: a["SPLIT_K"] > 1,
            "EVEN_K": lambda a: _even_k(a["K"], a["BLOCK_K"], a["SPLIT_K"]),
        }
    )(nvfp4_gemm_kernel)
    return triton.autotune(configs=_LARGE_CONFIGS, key=_KEY, warmup=5, rep=25)(tiles)


# ---------------------------------------------------------------------------------------
# GEMM


def gemm(
    a: torch.Tensor,
    a_scale: torch.Tensor | None,
    a_mode: int,
    w_packed: torch.Tensor,
    w_scale_u8: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None,
    gx: torch.Tensor | None,
    out_dtype: torch.dtype,
    op_dtype,
    config: dict | None = None,
    paired: int = 0,
    w4a4: bool = False,
) -> torch.Tensor:
    """Launch the GEMM (and the split-K reduction when used, unless the GEMM does it:
    ``splitk_counters.splitk_reduce_mode``); returns ``out[M, N]``.

    ``paired`` (``paired_mode``): the weight decoded in ``paired_decode.PAIRED_ORDER``, with
    ``a`` dense and either already in that order (``PAIRED_OPERAND``, from
    ``quantize_activation(..., paired_k=True)``) or permuted in the kernel (``PAIRED_IN_KERNEL``).
    ``w4a4``: the launches belong to a W4A4 linear (their PDL default, ``pdl_options``)."""
    m = a.shape[0]
    if paired and m > SPLITK_M_MAX:
        raise ValueError(f"gemm: the paired K order is for the small-M path (M <= {SPLITK_M_MAX}) only, got M = {m}")
    n, k = w_packed.shape[0], w_packed.shape[1] * 2
    device = a.device
    out = torch.empty((m, n), dtype=out_dtype, device=device)
    if m == 0:
        return out
    use_asm = use_asm_decode(device)
    has_bias = bias is not None
    dummy = alpha
    common = dict(
        A_MODE=a_mode, HAS_BIAS=has_bias, OP_DTYPE=op_dtype, USE_ASM=use_asm, INTERPRET=interpreting(),
    )
    stride_am = a.stride(0)
    args = [
        a, a_scale if a_scale is not None else dummy, w_packed, w_scale_u8, alpha,
        bias if has_bias else dummy, gx if gx is not None else dummy, out,
    ]
    ticket = False
    if m <= SPLITK_M_MAX or interpreting() or config is not None:
        cfg = small_m_config(m, n, k, device, config)
        split = cfg["SPLIT_K"]
        partial = torch.empty((split, m, n), dtype=torch.float32, device=device) if split > 1 else out
        grid = (cdiv(n, cfg["BLOCK_N"]), cdiv(m, cfg["BLOCK_M"]), split)
        tiles_per_split = cdiv(cdiv(k, cfg["BLOCK_K"]), split)
        # NVFP4_TRITON_SPLITK_REDUCE=kernel: the last program of each output tile reduces
        ticket = split > 1 and splitk_counters.splitk_reduce_mode() == "kernel"
        counters = splitk_counters.counters(device, grid[0] * grid[1]) if ticket else dummy
        kernel = nvfp4_gemm_kernel_interpreted if interpreting() else nvfp4_gemm_kernel
        fast_launch.launch(
            kernel, grid, *args, partial, counters, m, n, k, stride_am, k // 2, k // 16, tiles_per_split, split, 0,
            WRITE_PARTIAL=split > 1, EVEN_K=cfg["EVEN_K"],
            BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"], BLOCK_K=cfg["BLOCK_K"], W_AS_B=bool(cfg["W_AS_B"]),
            PAIRED_K=int(paired), SPLITK_TICKET=ticket, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
            **common, **pdl_options(device, w4a4),
        )
        KERNEL_LAUNCHES["gemm_small_m"] += 1
        if paired:
            KERNEL_LAUNCHES[f"gemm_paired_k{int(paired)}"] += 1  # which decode ran, for the tests
    else:
        partial = out  # the large configurations do not split K
        kernel = _autotuned_large()

        def grid(meta):
            return (cdiv(n, meta["BLOCK_N"]), cdiv(m, meta["BLOCK_M"]), meta["SPLIT_K"])

        kernel[grid](*args, partial, dummy, m, n, k, stride_am, k // 2, k // 16, M_BUCKET=next_power_of_2(m), **common)
        split = kernel.best_config.kwargs["SPLIT_K"]
        KERNEL_LAUNCHES["gemm_large_m"] += 1
    if split > 1 and not ticket:
        _reduce(partial, alpha, bias, out, split, w4a4)
    return out


def gemv_config(m: int, n: int, k: int, device: torch.device) -> dict | None:
    """Tiles of the CUDA-core path, or None where it does not apply (needs whole K tiles)."""
    block_n, block_k = (32, 64) if interpreting() else (64, 256)
    if m > GEMV_M_MAX or k % block_k:
        return None
    k_tiles = k // block_k
    target = max(1, min(k_tiles, 32, cdiv(2 * num_sms(device), cdiv(n, block_n))))
    split = max(d for d in range(1, target + 1) if k_tiles % d == 0)
    return dict(BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=split, ROWS=decode_rows(m))


def gemv(a, w_packed, w_scale_u8, alpha, bias, out_dtype, op_dtype, cfg, w4a4=False) -> torch.Tensor:
    m, k = a.shape
    n = w_packed.shape[0]
    out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    split = cfg["SPLIT_K"]
    partial = torch.empty((split, m, n), dtype=torch.float32, device=a.device) if split > 1 else out
    kernel = gemv_kernel_interpreted if interpreting() else gemv_kernel
    grid = (cdiv(n, cfg["BLOCK_N"]), 1, split)
    has_bias = bias is not None
    fast_launch.launch(
        kernel, grid, a, w_packed, w_scale_u8, alpha, bias if has_bias else alpha, out, partial, m, n, k, a.stride(0),
        k // 2, k // 16, k // cfg["BLOCK_K"] // split, ROWS=cfg["ROWS"], HAS_BIAS=has_bias, WRITE_PARTIAL=split > 1,
        OP_DTYPE=op_dtype, USE_ASM=use_asm_decode(a.device), INTERPRET=interpreting(),
        BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], num_warps=4, **pdl_options(a.device, w4a4),
    )
    KERNEL_LAUNCHES["gemv"] += 1
    if split > 1:
        _reduce(partial, alpha, bias, out, split, w4a4)
    return out


def _reduce(partial, alpha, bias, out, split, w4a4=False):
    m, n = out.shape
    block = 1024
    has_bias = bias is not None
    fast_launch.launch(
        splitk_reduce_kernel, (cdiv(m * n, block),), partial, alpha, bias if has_bias else alpha, out, m, n,
        SPLIT_K=split, HAS_BIAS=has_bias, INTERPRET=interpreting(), BLOCK=block, num_warps=4,
        **pdl_options(out.device, w4a4),
    )
    KERNEL_LAUNCHES["splitk_reduce"] += 1


# Swap-AB tiles 8 activation rows wide, offered to the tuner at M <= 8 (BLOCK_N, BLOCK_K,
# warps). There the MMA is mma.sync m16n8k16 with the decoded weight as its register operand,
# straight from the decode (no shared-memory round trip; the 16-row swap-AB tiles use wgmma,
# whose register operand Triton stages through shared memory): sm_90 K loops of 3.45-3.46
# SASS instructions per weight element (fp16, paired) against 3.84 for the best 16-row tile,
# bf16 3.83-3.91 against 4.03 (sass_loop_stats.py). Offered only with
# NVFP4_TRITON_EIGHT_ROW_TILES=on: on the H100 (2026-12-08, --eight-row-ab) the tuner picked
# them on one shape of eight and the medians did not move.
EIGHT_ROW_M_MAX = 8
EIGHT_ROW_TILES = ((128, 128, 4), (256, 128, 8))
EIGHT_ROW_ENV = "NVFP4_TRITON_EIGHT_ROW_TILES"
EIGHT_ROW_DEFAULT = False


def small_m_candidates(m: int, with_gemv: bool) -> list[dict]:
    """What ``_small_gemm`` chooses from (timed once per shape and M bucket, ``tuning.pick``).

    ``W_AS_B`` tiles first (the untuned default; up to 32 rows each also with split-K sized for
    4 programs per SM instead of 2, ``WAVES``: the small layers stream only ~5-10 MB, so how
    evenly the programs fill the SMs may matter more than the partial sums' traffic; the H100
    tuner picked them on most shapes at M = 8..16): the activation is the left MMA operand and
    the dequantized weight goes through shared memory as the right one, so Hopper's wgmma
    runs asynchronously, one per K step (compiled sm_90 K loop with sm_89's scale conversion:
    3.8-4.7 SASS instructions per weight element with the default paired decode, 5.3-7.2 with
    the natural one; sm_80 PTX: 4.2-5.2 / 6.1-8.4); then the swap-AB tiles of
    ``small_m_config`` (weight as the register operand: 3.8-5.7 paired, 7.7-8.5 natural); for
    M <= 8, with ``NVFP4_TRITON_EIGHT_ROW_TILES=on``, swap-AB tiles 8 activation rows wide
    (``EIGHT_ROW_TILES``), and,
    for M <= ``GEMV_M_MAX``, the CUDA-core GEMVs: the half2-decode
    tiles of ``launch_gemv_half2`` and the older ``kernels/gemv.py``. On the H100 the tuner
    picked ``W_AS_B`` tiles for every Llama shape at M = 1..128 (2026-12-07 run)."""
    bm = min(_pow2_at_least(m, 16), 128)
    if bm <= 32:
        tiles = [(bm, 64, 256, 4, 3), (bm, 128, 128, 4, 3)]
    elif bm == 64:
        tiles = [(64, 64, 128, 4, 3), (64, 128, 128, 4, 3)]
    else:
        # 64-wide K steps first: half the shared memory of 128 (74 KB at 3 stages), so two
        # programs fit on an SM. H200 sweep at M = 128 (raw/h200_tile_sweep_mid_m.log):
        # 8-12% faster than the 128-wide step on 4 shapes.
        # Also two 64-row tiles: twice the programs (and weight decodes), more parallelism.
        tiles = [(128, 128, 64, 4, 3), (128, 128, 64, 8, 4), (128, 128, 128, 8, 3), (128, 64, 128, 4, 3),
                 (64, 128, 128, 4, 3)]
    cands = [dict(W_AS_B=True, BLOCK_M=bm_, BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st)
             for bm_, bn, bk, w, st in tiles]
    if bm <= 32:  # the same kernels with twice the split-K (no extra compile: split is a launch argument)
        cands += [dict(c, WAVES=4) for c in cands]
    cands.append(dict(W_AS_B=False))
    if m <= EIGHT_ROW_M_MAX and env.switch(EIGHT_ROW_ENV, EIGHT_ROW_DEFAULT):
        cands += [dict(W_AS_B=False, BLOCK_M=8, BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=3)
                  for bn, bk, w in EIGHT_ROW_TILES]
    if with_gemv:
        from . import launch_gemv_half2  # imports this module: lazily

        if launch_gemv_half2.offered_to_tuner():
            cands += launch_gemv_half2.candidates(m)
        cands.append(dict(PATH="gemv"))
    return cands


def small_path_key(m, n, k, a_dtype, op_dtype, out_dtype, gemv_mode, device, paired, w4a4) -> tuple:
    """``_small_gemm``'s tuner cache key: per shape and M bucket, and per setting that changes
    the candidates or their speed (GEMV mode, decode order and PTX level, PDL mode, split-K
    reduction, the 8-row tiles)."""
    # 1, 2, 4, 8 (the candidate lists differ up to 8 rows), then 16, 32, 64, 128
    bucket = _pow2_at_least(m, 1) if m <= EIGHT_ROW_M_MAX else min(_pow2_at_least(m, 16), 128)
    return (bucket, n, k, a_dtype, str(op_dtype), out_dtype, gemv_mode, device.index, int(paired), pdl_mode(w4a4),
            use_asm_decode(device), splitk_counters.splitk_reduce_mode(),
            m <= EIGHT_ROW_M_MAX and env.switch(EIGHT_ROW_ENV, EIGHT_ROW_DEFAULT))


def _small_gemm(a, w_packed, w_scale_u8, alpha, bias, out_dtype, op_dtype, config=None, paired=0, w4a4=False):
    """M <= SPLITK_M_MAX: the tensor-core split-K GEMM in either operand orientation, or (M <=
    GEMV_M_MAX) the CUDA-core path, whichever this GPU runs fastest for the shape (timed once
    per shape and M bucket outside CUDA-graph capture, ``tuning.pick``). ``paired``: the
    tensor-core candidates' ``PAIRED_K`` (``paired_mode``; the GEMVs read ``a`` as is);
    ``w4a4`` as in ``gemm``."""
    m, k = a.shape
    n = w_packed.shape[0]
    if config is not None:
        return gemm(a, None, A_DENSE, w_packed, w_scale_u8, alpha, bias, None, out_dtype, op_dtype, config, paired, w4a4)
    if paired == PAIRED_OPERAND and m <= GEMV_M_MAX:
        raise ValueError(f"_small_gemm: a permuted operand needs M > {GEMV_M_MAX} (the GEMVs read natural order)")
    mode = env.choice(GEMV_ENV, "auto", GEMV_MODES)

    def run(cand):
        if cand.get("PATH") == "gemv":
            return gemv(a, w_packed, w_scale_u8, alpha, bias, out_dtype, op_dtype, gemv_config(m, n, k, a.device), w4a4)
        if cand.get("PATH") == "gemv_half2":
            from .launch_gemv_half2 import gemv_half2

            return gemv_half2(a, w_packed, w_scale_u8, alpha, bias, out_dtype, cand, w4a4)
        return gemm(a, None, A_DENSE, w_packed, w_scale_u8, alpha, bias, None, out_dtype, op_dtype, cand, paired, w4a4)

    half2_only = mode == "half2" and m <= GEMV_M_MAX
    if not half2_only and (mode == "always" or interpreting() or a.device.type != "cuda"):  # a fixed path
        if gemv_config(m, n, k, a.device) is not None:
            return run({"PATH": "gemv"})
    key = small_path_key(m, n, k, a.dtype, op_dtype, out_dtype, mode, a.device, paired, w4a4)
    choice = tuning.cached(_SMALL_PATH_CHOICE, key)  # the candidate list is only built on a miss
    if choice is None:
        if half2_only:
            from .launch_gemv_half2 import candidates as half2_candidates  # imports this module: lazily

            cands = half2_candidates(m)
        else:
            cands = small_m_candidates(m, gemv_config(m, n, k, a.device) is not None and mode == "auto")
        if interpreting() or a.device.type != "cuda":  # nothing to time: the first candidate
            return run(cands[0])
        choice = tuning.pick(_SMALL_PATH_CHOICE, key, cands, run, a.device, "small-M GEMM")
    return run(choice)


def dequantize_weight(w_packed, w_scale_u8, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """The exact operand ``e2m1(q) * s`` of a packed NVFP4 weight, ``[N, K]`` in ``dtype``
    (written into ``out``, a contiguous ``[N, K]`` tensor, when given)."""
    import triton.language as tl

    n, k = w_packed.shape[0], w_packed.shape[1] * 2
    if out is None:
        out = torch.empty((n, k), dtype=dtype, device=w_packed.device)
    op = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}[dtype]
    block_n, block_k = (16, 64) if interpreting() else (32, 256)
    grid = (cdiv(n, block_n), cdiv(k, block_k))
    fast_launch.launch(
        weight_dequant_kernel, grid, w_packed, w_scale_u8, out, n, k, k // 2, k // 16, OP_DTYPE=op,
        USE_ASM=use_asm_decode(w_packed.device), BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4,
    )
    KERNEL_LAUNCHES["weight_dequant"] += 1
    return out


def paired_mode(m: int, quantized: bool) -> int:
    """The GEMM's ``PAIRED_K`` for a small-M linear of M rows (``kernels/paired_decode.py``;
    on unless ``NVFP4_TRITON_PAIRED_K=off``). From the compiled sm_90 K loops
    (``tests/test_triton_compile.py``): up to 32 rows (16/32-row tiles) the GEMM permutes the
    natural-order activation tile in registers (``PAIRED_IN_KERNEL``), cheaper than a
    permuted operand through cp.async; above, the W4A4 activation kernel writes the operand
    permuted (``PAIRED_OPERAND``), and W4A16, whose operand is ``x`` itself, keeps natural
    order (permuting a 64-128-row tile in registers costs what the decode saves). The
    CUDA-core GEMVs (M <= 4) read natural order and ignore the setting."""
    if not env.switch(PAIRED_K_ENV, PAIRED_K_DEFAULT) or m > SPLITK_M_MAX:
        return PAIRED_OFF
    if m <= PAIRED_IN_KERNEL_M_MAX:
        return PAIRED_IN_KERNEL
    return PAIRED_OPERAND if quantized else PAIRED_OFF


def _cublas_path(m: int, alpha_scalar: float | None, device: torch.device) -> bool:
    return alpha_scalar is not None and m >= CUBLAS_MIN_M and device.type == "cuda" and not interpreting()


def linear_w4a4(x, w_packed, w_scale, gx, alpha, bias, alpha_scalar=None, config=None, out_dtype=None):
    """Exact W4A4 NVFP4 linear: quantize ``x`` (vLLM semantics), GEMM, alpha, bias.

    The activation is quantized by its own kernel into the exact operand ``e2m1(q)*s``
    (fp16 when that can hold it, i.e. always for fp16/bf16 inputs; the cuBLAS path uses
    x's dtype so the output dtype matches), then the GEMM reads it densely.
    ``alpha_scalar`` (a Python float, when every row has the same alpha) enables the cuBLAS
    path for large M. ``out_dtype`` (default x's dtype): float32 gives the unrounded
    ``alpha * GEMM`` a tensor-parallel rank all-reduces (with ``bias=None``).
    """
    m = x.shape[0]
    out_dtype = out_dtype or x.dtype
    if m == 0:
        return x.new_empty((0, w_packed.shape[0]), dtype=out_dtype)
    if config is None:
        from . import launch_dp4a  # imports this module: loaded lazily

        if launch_dp4a.dp4a_applies(m, x.device):  # M <= 4: the integer-dot decode kernel (or, timed
            # faster for the shape, the float paths below: launch_dp4a.FLOAT_PATH)
            return launch_dp4a.linear_w4a4_dp4a(x, w_packed, w_scale, gx, alpha, bias, out_dtype=out_dtype)
    return linear_w4a4_float(x, w_packed, w_scale, gx, alpha, bias, alpha_scalar, config, out_dtype)


def linear_w4a4_float(x, w_packed, w_scale, gx, alpha, bias, alpha_scalar=None, config=None, out_dtype=None):
    """``linear_w4a4`` without the integer-dot decode kernel: the activation kernel writes the
    exact fp16/bf16 operand, then the tensor-core GEMM (tuned small-M tiles, the CUDA-core
    GEMV at M <= 4, or cuBLAS for large M) multiplies it."""
    m = x.shape[0]
    out_dtype = out_dtype or x.dtype
    w_scale_u8 = w_scale.view(torch.uint8)
    if config is not None and config.get("A_MODE") == A_QUANTIZE:  # the fused variant, for comparisons
        tl_op, _ = _op_dtype(x.dtype, True)
        cfg = {k: v for k, v in config.items() if k != "A_MODE"}
        return gemm(x, None, A_QUANTIZE, w_packed, w_scale_u8, alpha, bias, gx, out_dtype, tl_op, cfg)
    if _cublas_path(m, alpha_scalar, x.device) and out_dtype == x.dtype:
        from .launch_cublas import cublas_gemm  # imports this module: loaded lazily

        x_hat = quantize_activation(x, gx, dequant_dtype=x.dtype)
        return cublas_gemm(x_hat, w_packed, w_scale_u8, alpha_scalar, bias)
    tl_op, torch_op = _op_dtype(x.dtype, True)
    paired = paired_mode(m, quantized=True)
    x_hat = quantize_activation(x, gx, dequant_dtype=torch_op, paired_k=paired == PAIRED_OPERAND)
    if m <= SPLITK_M_MAX:
        return _small_gemm(x_hat, w_packed, w_scale_u8, alpha, bias, out_dtype, tl_op, config, paired, w4a4=True)
    return gemm(x_hat, None, A_DENSE, w_packed, w_scale_u8, alpha, bias, None, out_dtype, tl_op, config, w4a4=True)


def linear_w4a16(x, w_packed, w_scale, alpha, bias, alpha_scalar=None, config=None, out_dtype=None):
    """W4A16: ``x`` stays in bf16/fp16, the FP4 weight is dequantized in registers (or, for
    large M with a uniform alpha, into a transient copy for cuBLAS). ``out_dtype`` as in
    ``linear_w4a4``."""
    out_dtype = out_dtype or x.dtype
    if x.shape[0] == 0:
        return x.new_empty((0, w_packed.shape[0]), dtype=out_dtype)
    w_scale_u8 = w_scale.view(torch.uint8)
    if _cublas_path(x.shape[0], alpha_scalar, x.device) and out_dtype == x.dtype:
        from .launch_cublas import cublas_gemm

        return cublas_gemm(x, w_packed, w_scale_u8, alpha_scalar, bias)
    tl_op, _ = _op_dtype(x.dtype, False)
    if x.shape[0] <= SPLITK_M_MAX:
        return _small_gemm(x, w_packed, w_scale_u8, alpha, bias, out_dtype, tl_op, config,
                           paired_mode(x.shape[0], quantized=False))
    return gemm(x, None, A_DENSE, w_packed, w_scale_u8, alpha, bias, None, out_dtype, tl_op, config)


def gemm_w4a4_packed(x_packed, x_scale, w_packed, w_scale, alpha, bias, out_dtype, config=None):
    """W4A4 GEMM over already-quantized activations (packed codes + E4M3 scales)."""
    tl_op, _ = _op_dtype(out_dtype, True)
    return gemm(
        x_packed, x_scale.view(torch.uint8), A_PACKED, w_packed, w_scale.view(torch.uint8), alpha, bias, None,
        out_dtype, tl_op, config, w4a4=True,
    )
