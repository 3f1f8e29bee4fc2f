"""Launchers: choose the kernel path and tile configuration, allocate outputs, launch.

Paths (``M`` = tokens, after flattening leading dims):

* ``M <= SMALL_M_MAX`` (decode): one GEMM launch with the activation quantization fused in
  (W4A4) or the activation read as is (W4A16), ``BLOCK_M`` = 16..64, and split-K chosen so
  that about two waves of programs cover the GPU's SMs: the weight stream is everything.
  A second tiny launch sums the split-K partials (fixed order) and applies the epilogue.
* larger M: (W4A4) ``activation_quant`` writes the exact operand ``e2m1(q)*s`` in fp16, then
  an autotuned GEMM reads it densely; split-K configurations are offered up to M = 256.

Every launch is counted in ``KERNEL_LAUNCHES`` so tests can prove the Triton kernels ran
(no silent fallback). ``TRITON_INTERPRET=1`` (the CPU interpreter) is honoured: fixed tiles,
fp32 dots, portable decoding.
"""

from __future__ import annotations

import collections
import functools
import os

import torch
import triton

from ..kernels.activation_quant import activation_quant_kernel
from ..kernels.gemm import A_DENSE, A_PACKED, A_QUANTIZE, nvfp4_gemm_kernel, nvfp4_gemm_kernel_interpreted
from ..kernels.splitk_reduce import splitk_reduce_kernel
from ..kernels.weight_dequant import weight_dequant_kernel

SMALL_M_MAX = 64
# Above this M (and with one alpha for all rows) the GEMM runs on cuBLAS over a transient
# exact fp16/bf16 copy of the weight: compute-bound there, and cuBLAS is faster.
CUBLAS_MIN_M = int(os.environ.get("NVFP4_TRITON_CUBLAS_MIN_M", "512"))
KERNEL_LAUNCHES: collections.Counter = collections.Counter()
DECODE_ENV = "NVFP4_TRITON_DECODE"  # "asm" (default on GPUs) or "portable"


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_asm_decode(device: torch.device) -> bool:
    if interpreting() or device.type != "cuda":
        return False
    return os.environ.get(DECODE_ENV, "asm").strip().lower() != "portable"


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
# activation quantization


def quantize_activation(x: torch.Tensor, gx: torch.Tensor, dequant_dtype: torch.dtype | None = None):
    """``x[M, K]`` -> ``(packed u8 [M, K/2], scale e4m3 [M, K/16])``, or the exact dequantized
    operand ``[M, K]`` in ``dequant_dtype`` when that is given."""
    m, k = x.shape
    block_k = 64 if interpreting() else 256
    block_r = 16 if interpreting() else 8
    grid = (triton.cdiv(m, block_r), triton.cdiv(k, block_k))
    if dequant_dtype is not None:
        out = torch.empty((m, k), dtype=dequant_dtype, device=x.device)
        if m:
            activation_quant_kernel[grid](
                x, gx, out, out, out, m, k, x.stride(0), DEQUANT_OUT=True, BLOCK_R=block_r, BLOCK_K=block_k,
                num_warps=4,
            )
            KERNEL_LAUNCHES["activation_quant"] += 1
        return out
    packed = torch.empty((m, k // 2), dtype=torch.uint8, device=x.device)
    scale = torch.empty((m, k // 16), dtype=torch.float8_e4m3fn, device=x.device)
    if m:
        activation_quant_kernel[grid](
            x, gx, packed, scale.view(torch.uint8), packed, m, k, x.stride(0),
            DEQUANT_OUT=False, BLOCK_R=block_r, BLOCK_K=block_k, num_warps=4,
        )
        KERNEL_LAUNCHES["activation_quant"] += 1
    return packed, scale


# ---------------------------------------------------------------------------------------
# GEMM configurations


def _pow2_at_least(v: int, lo: int) -> int:
    return max(lo, triton.next_power_of_2(max(v, 1)))


def small_m_config(m: int, n: int, k: int, device: torch.device, override: dict | None = None) -> dict:
    """Fixed tiles for the decode path; split-K sized for ~2 waves over the SMs."""
    cfg = dict(BLOCK_M=_pow2_at_least(m, 16), BLOCK_N=128, BLOCK_K=256, num_warps=4, num_stages=4)
    if n <= 4096:
        cfg["BLOCK_N"] = 64
    if override:
        cfg.update(override)
    if interpreting():
        cfg.update(BLOCK_N=64, BLOCK_K=64, num_stages=1)
    k_tiles = triton.cdiv(k, cfg["BLOCK_K"])
    tiles = triton.cdiv(n, cfg["BLOCK_N"]) * triton.cdiv(m, cfg["BLOCK_M"])
    if "SPLIT_K" not in (override or {}):
        target = max(1, min(k_tiles, 32, triton.cdiv(2 * num_sms(device), tiles)))
        # A divisor of the K-tile count: every split gets whole tiles and no mask is needed.
        cfg["SPLIT_K"] = max(d for d in range(1, target + 1) if k_tiles % d == 0)
    cfg["SPLIT_K"] = max(1, min(cfg["SPLIT_K"], k_tiles))
    cfg["EVEN_K"] = _even_k(k, cfg["BLOCK_K"], cfg["SPLIT_K"])
    return cfg


def _even_k(k: int, block_k: int, split: int) -> bool:
    return k % block_k == 0 and (k // block_k) % split == 0


def _large_configs():
    def c(bn, bm, bk, w, s, split=1):
        return triton.Config(dict(BLOCK_N=bn, BLOCK_M=bm, BLOCK_K=bk, SPLIT_K=split), num_warps=w, num_stages=s)

    medium = [c(128, 64, 128, 4, 4, s) for s in (1, 2, 4)] + [c(128, 128, 64, 8, 3, s) for s in (1, 2)]
    large = [c(128, 128, 64, 8, 3), c(128, 256, 64, 8, 3), c(256, 128, 64, 8, 3)]
    return medium, large


_MEDIUM_CONFIGS, _LARGE_CONFIGS = _large_configs()
MEDIUM_M_MAX = 256
MAX_SPLIT_MEDIUM = max(cfg.kwargs["SPLIT_K"] for cfg in _MEDIUM_CONFIGS)
_KEY = ["M_BUCKET", "N", "K", "A_MODE", "OP_DTYPE", "HAS_BIAS", "USE_ASM"]


@functools.lru_cache(maxsize=None)
def _autotuned(kind: str):
    configs = _MEDIUM_CONFIGS if kind == "medium" else _LARGE_CONFIGS
    tiles = triton.heuristics(
        {
            "TILES_PER_SPLIT": lambda a: triton.cdiv(triton.cdiv(a["K"], a["BLOCK_K"]), a["SPLIT_K"]),
            "WRITE_PARTIAL": lambda a: a["SPLIT_K"] > 1,
            "EVEN_K": lambda a: _even_k(a["K"], a["BLOCK_K"], a["SPLIT_K"]),
        }
    )(nvfp4_gemm_kernel)
    return triton.autotune(configs=configs, key=_KEY, warmup=5, rep=25)(tiles)


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
) -> torch.Tensor:
    """Launch the GEMM (and the split-K reduction when used); returns ``out[M, N]``."""
    m = a.shape[0]
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
    if m <= SMALL_M_MAX or interpreting() or config is not None:
        cfg = small_m_config(m, n, k, device, config)
        split = cfg["SPLIT_K"]
        partial = torch.empty((split, m, n), dtype=torch.float32, device=device) if split > 1 else out
        grid = (triton.cdiv(n, cfg["BLOCK_N"]), triton.cdiv(m, cfg["BLOCK_M"]), split)
        kernel = nvfp4_gemm_kernel_interpreted if interpreting() else nvfp4_gemm_kernel
        kernel[grid](
            *args, partial, m, n, k, stride_am, k // 2, k // 16, triton.cdiv(triton.cdiv(k, cfg["BLOCK_K"]), split), split, 0,
            WRITE_PARTIAL=split > 1, EVEN_K=cfg["EVEN_K"],
            BLOCK_N=cfg["BLOCK_N"], BLOCK_M=cfg["BLOCK_M"], BLOCK_K=cfg["BLOCK_K"],
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], **common,
        )
        KERNEL_LAUNCHES["gemm_small_m"] += 1
    else:
        kind = "medium" if m <= MEDIUM_M_MAX else "large"
        max_split = MAX_SPLIT_MEDIUM if kind == "medium" else 1
        partial = torch.empty((max_split, m, n), dtype=torch.float32, device=device) if max_split > 1 else out
        kernel = _autotuned(kind)

        def grid(meta):
            return (triton.cdiv(n, meta["BLOCK_N"]), triton.cdiv(m, meta["BLOCK_M"]), meta["SPLIT_K"])

        kernel[grid](*args, partial, m, n, k, stride_am, k // 2, k // 16, M_BUCKET=triton.next_power_of_2(m), **common)
        split = kernel.best_config.kwargs["SPLIT_K"]
        KERNEL_LAUNCHES[f"gemm_{kind}_m"] += 1
    if split > 1:
        block = 1024
        splitk_reduce_kernel[(triton.cdiv(m * n, block),)](
            partial, alpha, bias if has_bias else dummy, out, m, n,
            SPLIT_K=split, HAS_BIAS=has_bias, INTERPRET=interpreting(), BLOCK=block, num_warps=4,
        )
        KERNEL_LAUNCHES["splitk_reduce"] += 1
    return out


def dequantize_weight(w_packed, w_scale_u8, dtype: torch.dtype) -> torch.Tensor:
    """The exact operand ``e2m1(q) * s`` of a packed NVFP4 weight, ``[N, K]`` in ``dtype``."""
    import triton.language as tl

    n, k = w_packed.shape[0], w_packed.shape[1] * 2
    out = torch.empty((n, k), dtype=dtype, device=w_packed.device)
    op = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}[dtype]
    block_n, block_k = (16, 64) if interpreting() else (32, 256)
    grid = (triton.cdiv(n, block_n), triton.cdiv(k, block_k))
    weight_dequant_kernel[grid](
        w_packed, w_scale_u8, out, n, k, k // 2, k // 16, OP_DTYPE=op,
        USE_ASM=use_asm_decode(w_packed.device), BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4,
    )
    KERNEL_LAUNCHES["weight_dequant"] += 1
    return out


def _cublas_path(m: int, alpha_scalar: float | None, device: torch.device) -> bool:
    return alpha_scalar is not None and m >= CUBLAS_MIN_M and device.type == "cuda" and not interpreting()


def _cublas_gemm(a_exact, w_packed, w_scale_u8, alpha_scalar: float, bias):
    """``round(alpha * (A @ W^T)) + bias`` with cuBLAS: one fp32 accumulation, alpha applied in
    fp32 by the GEMM epilogue, one rounding to the output dtype, then the bias (as the
    reference does). The dequantized weight is a per-call buffer."""
    w_exact = dequantize_weight(w_packed, w_scale_u8, a_exact.dtype)
    out = torch.addmm(a_exact.new_empty(()), a_exact, w_exact.t(), beta=0.0, alpha=alpha_scalar)
    KERNEL_LAUNCHES["cublas_gemm"] += 1
    return out if bias is None else out + bias


def linear_w4a4(x, w_packed, w_scale, gx, alpha, bias, alpha_scalar=None, config=None):
    """Exact W4A4 NVFP4 linear: quantize ``x`` (vLLM semantics), GEMM, alpha, bias.

    The activation is quantized by its own kernel into the exact operand ``e2m1(q)*s``
    (fp16 when that can hold it, i.e. always for fp16/bf16 inputs; the cuBLAS path uses
    x's dtype so the output dtype matches), then the GEMM reads it densely.
    ``alpha_scalar`` (a Python float, when every row has the same alpha) enables the cuBLAS
    path for large M.
    """
    m = x.shape[0]
    w_scale_u8 = w_scale.view(torch.uint8)
    if config is not None and config.get("A_MODE") == A_QUANTIZE:  # the fused variant, for comparisons
        tl_op, _ = _op_dtype(x.dtype, True)
        cfg = {k: v for k, v in config.items() if k != "A_MODE"}
        return gemm(x, None, A_QUANTIZE, w_packed, w_scale_u8, alpha, bias, gx, x.dtype, tl_op, cfg)
    if _cublas_path(m, alpha_scalar, x.device):
        x_hat = quantize_activation(x, gx, dequant_dtype=x.dtype)
        return _cublas_gemm(x_hat, w_packed, w_scale_u8, alpha_scalar, bias)
    tl_op, torch_op = _op_dtype(x.dtype, True)
    x_hat = quantize_activation(x, gx, dequant_dtype=torch_op)
    return gemm(x_hat, None, A_DENSE, w_packed, w_scale_u8, alpha, bias, None, x.dtype, tl_op, config)


def linear_w4a16(x, w_packed, w_scale, alpha, bias, alpha_scalar=None, config=None):
    """W4A16: ``x`` stays in bf16/fp16, the FP4 weight is dequantized in registers (or, for
    large M with a uniform alpha, into a transient copy for cuBLAS)."""
    w_scale_u8 = w_scale.view(torch.uint8)
    if _cublas_path(x.shape[0], alpha_scalar, x.device):
        return _cublas_gemm(x, w_packed, w_scale_u8, alpha_scalar, bias)
    tl_op, _ = _op_dtype(x.dtype, False)
    return gemm(x, None, A_DENSE, w_packed, w_scale_u8, alpha, bias, None, x.dtype, tl_op, config)


def gemm_w4a4_packed(x_packed, x_scale, w_packed, w_scale, alpha, bias, out_dtype, config=None):
    """W4A4 GEMM over already-quantized activations (packed codes + E4M3 scales)."""
    tl_op, _ = _op_dtype(out_dtype, True)
    return gemm(
        x_packed, x_scale.view(torch.uint8), A_PACKED, w_packed, w_scale.view(torch.uint8), alpha, bias, None,
        out_dtype, tl_op, config,
    )
