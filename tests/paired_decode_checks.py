"""Checks of the paired weight decode (``kernels/paired_decode.py``), shared by the interpreter
cases (``triton_paired_decode_cases.py``) and the GPU tests (``gpu/test_paired_decode_gpu.py``).

* ``decode_words``: the decoder alone (scale word + word decode), on any words and scale
  bytes, in the element order ``PAIRED_ORDER`` and with the fold (2^-14 fp16, 2^-8 bf16):
  the half2 GEMV's decoder has the same order, so its reference and exhaustive inputs are
  reused (``gemv_half2_checks``);
* ``check_w4a4``: ``launch.linear_w4a4`` with the paired path switched on against the
  exact float64 result (fp32-summation bound), and proof that the paired GEMM ran.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton_exactness import activation_operand, assert_within, exact_and_bound

from nvfp4.kernels.paired_decode import PAIRED_ORDER, decode_words_asm, decode_words_portable, scale_x2_asm
from gemv_half2_checks import decode_reference as half2_reference  # same order, values / 128

from nvfp4.numerics import quantize_activation
from nvfp4.ops import launch


@triton.jit
def _decode_kernel(words_ptr, scale_ptr, out_ptr, N, USE_ASM: tl.constexpr, OP_DTYPE: tl.constexpr,
                   BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    words = tl.load(words_ptr + offs, mask=mask, other=0)
    scale_bytes = tl.load(scale_ptr + offs, mask=mask, other=0).to(tl.int32)
    if USE_ASM:  # an fp_bits level: the scale word of sm_80 or of sm_89
        d = decode_words_asm(words, scale_x2_asm(scale_bytes, OP_DTYPE, USE_ASM), OP_DTYPE)
    else:
        d = decode_words_portable(words, scale_bytes, OP_DTYPE)
    for i in tl.static_range(8):
        tl.store(out_ptr + offs * 8 + i, d[i].to(tl.float32), mask=mask)


OP = {"fp16": tl.float16, "bf16": tl.bfloat16, "fp32": tl.float32}
FOLD = {"fp16": 16384.0, "bf16": 256.0, "fp32": 16384.0}  # paired_decode.fold


def decode_words(words: torch.Tensor, scale_bytes: torch.Tensor, use_asm: int, op: str = "fp16") -> torch.Tensor:
    """``[n]`` int32 words + ``[n]`` uint8 scale bytes -> ``[n, 8]`` fp32 in ``PAIRED_ORDER``,
    decoded to ``op`` (``fp16``, ``bf16``; ``fp32`` portable only) and widened exactly;
    ``use_asm``: a ``launch.ASM_*`` level (0: the portable decoder)."""
    n = words.numel()
    out = torch.empty((n, 8), dtype=torch.float32, device=words.device)
    _decode_kernel[(triton.cdiv(n, 128),)](words, scale_bytes, out, n, USE_ASM=int(use_asm), OP_DTYPE=OP[op], BLOCK=128)
    return out


def decode_reference(words: torch.Tensor, scale_bytes: torch.Tensor, op: str = "fp16") -> torch.Tensor:
    """What ``decode_words`` must return: ``e2m1(code) * s / FOLD[op]`` (exact), ``PAIRED_ORDER``."""
    return half2_reference(words, scale_bytes) * 128.0 / FOLD[op]


def paired_order_of(natural: torch.Tensor) -> torch.Tensor:
    """A ``[M, K]`` operand in natural K order -> ``PAIRED_ORDER`` inside each group of 8."""
    m, k = natural.shape
    return natural.reshape(m, k // 8, 8)[:, :, list(PAIRED_ORDER)].reshape(m, k)


def exact_w4a4(x, gx, wp, ws, alpha, bias):
    """(float64 exact output, bound) of the W4A4 linear, on the CPU (``triton_exactness``)."""
    xq, xs = quantize_activation(x.cpu(), gx.cpu())
    return exact_and_bound(activation_operand(xq, xs), wp.cpu(), ws.cpu(), alpha.cpu(),
                           None if bias is None else bias.cpu(), x.dtype)


def paired_launches() -> dict:
    """Paired GEMM launches since the last ``KERNEL_LAUNCHES.clear()``, by ``PAIRED_K`` mode."""
    return {mode: launch.KERNEL_LAUNCHES[f"gemm_paired_k{mode}"] for mode in (launch.PAIRED_OPERAND, launch.PAIRED_IN_KERNEL)}


def check_w4a4(x, gx, wp, ws, alpha, bias, label, monkeypatch, config=None, exact=None):
    """``linear_w4a4`` (M > 4) with ``NVFP4_TRITON_PAIRED_K=on``: within the exact bound
    (``exact``: a precomputed ``exact_w4a4``), and the paired GEMM launched in the mode
    ``launch.paired_mode`` picks for M (not the natural-order one)."""
    monkeypatch.setenv(launch.PAIRED_K_ENV, "on")
    launch.KERNEL_LAUNCHES.clear()
    out = launch.linear_w4a4(x, wp, ws, gx, alpha, bias, config=config)
    mode = launch.paired_mode(x.shape[0], quantized=True)
    # every small-M GEMM launch (several when the call tuned the shape) in that mode
    assert mode and paired_launches()[mode] == launch.KERNEL_LAUNCHES["gemm_small_m"] >= 1, \
        (label, dict(launch.KERNEL_LAUNCHES))
    assert_within(out.cpu(), *(exact or exact_w4a4(x, gx, wp, ws, alpha, bias)), label)
    return out


def check_w4a16(x, wp, ws, alpha, bias, label, monkeypatch, config=None, exact=None):
    """``linear_w4a16`` with ``NVFP4_TRITON_PAIRED_K=on`` within the exact bound; returns the
    output and the paired launches by mode (none where ``paired_mode`` keeps natural order)."""
    monkeypatch.setenv(launch.PAIRED_K_ENV, "on")
    launch.KERNEL_LAUNCHES.clear()
    out = launch.linear_w4a16(x, wp, ws, alpha, bias, config=config)
    exact = exact or exact_and_bound(x.cpu().float(), wp.cpu(), ws.cpu(), alpha.cpu(),
                                     None if bias is None else bias.cpu(), x.dtype)
    assert_within(out.cpu(), *exact, label)
    return out, paired_launches()
