"""Checks of the half2-decode GEMV (``kernels/gemv_half2.py``), shared by the interpreter cases
(``triton_gemv_half2_cases.py``) and the GPU tests (``gpu/test_gemv_half2_gpu.py``).

* ``decode_words``: the kernel's word decoder alone, on any words and scale bytes, so that
  every FP4 code at every nibble position and every E4M3 scale byte can be compared with the
  reference values (``decode_reference``); on the GPU the PTX decoder runs too and must be
  bit-identical to the portable one;
* ``special_weight``: a packed weight holding every code and the extreme scale bytes;
* ``ExactCase`` / ``check_gemv``: calls against the exact float64 result (the fp32-summation
  bound of ``triton_exactness.py``, computed once per case), NaN where the reference has NaN.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton_exactness import assert_within, exact_and_bound

from nvfp4.kernels.gemv_half2 import _decode_word_asm, _decode_word_portable
from nvfp4.numerics.formats import e2m1_decode
from nvfp4.ops import launch_gemv_half2

# The kernel returns the 8 values of a word in this element order.
ORDER = (0, 4, 1, 5, 2, 6, 3, 7)


@triton.jit
def _decode_kernel(words_ptr, scale_ptr, out_ptr, N, USE_ASM: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    words = tl.load(words_ptr + offs, mask=mask, other=0)
    scale_bytes = tl.load(scale_ptr + offs, mask=mask, other=0).to(tl.int32)
    if USE_ASM:
        d = _decode_word_asm(words, scale_bytes)
    else:
        d = _decode_word_portable(words, scale_bytes)
    for i in tl.static_range(8):
        tl.store(out_ptr + offs * 8 + i, d[i], mask=mask)


def decode_words(words: torch.Tensor, scale_bytes: torch.Tensor, use_asm: bool) -> torch.Tensor:
    """``[n]`` int32 words + ``[n]`` uint8 scale bytes -> ``[n, 8]`` fp32 in ``ORDER``."""
    n = words.numel()
    out = torch.empty((n, 8), dtype=torch.float32, device=words.device)
    _decode_kernel[(triton.cdiv(n, 128),)](words, scale_bytes, out, n, USE_ASM=use_asm, BLOCK=128)
    return out


def decode_reference(words: torch.Tensor, scale_bytes: torch.Tensor) -> torch.Tensor:
    """What the decoders must return: ``e2m1(code) * s / 128`` in fp32 (exact), in ``ORDER``."""
    w = words.cpu().to(torch.int64) & 0xFFFFFFFF
    codes = torch.stack([(w >> (4 * e)) & 0xF for e in ORDER], dim=1).to(torch.uint8)
    s = scale_bytes.cpu().view(torch.float8_e4m3fn).float()
    return e2m1_decode(codes).float() * s[:, None] / 128.0


def every_word_and_scale(device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every code at every nibble position (words ``0x11111111 * c`` and a walking pattern),
    random words, each with every scale byte 0..255 (NaN bytes included)."""
    g = torch.Generator().manual_seed(3)
    walk = [sum(((c + e) % 16) << (4 * e) for e in range(8)) for c in range(16)]
    base = [0x11111111 * c for c in range(16)] + walk
    base += torch.randint(0, 2**32, (32,), generator=g, dtype=torch.int64).tolist()
    words = torch.tensor([b - 2**32 if b >= 2**31 else b for b in base], dtype=torch.int64)
    words = words.repeat_interleave(256).to(torch.int32)
    scales = torch.arange(256, dtype=torch.int32).repeat(len(base)).to(torch.uint8)
    return words.to(device), scales.to(device)


def special_weight(n: int, k: int, seed: int):
    """A packed NVFP4 weight ``[n, k]`` with random codes (every code, -0 included) and random
    scale bytes, plus rows of the extreme scales: subnormal 0x01, 0x07, max 0x7E, zero."""
    g = torch.Generator().manual_seed(seed)
    packed = torch.randint(0, 256, (n, k // 2), generator=g, dtype=torch.int32).to(torch.uint8)
    scale = torch.randint(0x08, 0x60, (n, k // 16), generator=g, dtype=torch.int32).to(torch.uint8)
    for row, byte in zip(range(min(n, 4)), (0x01, 0x07, 0x7E, 0x00)):
        scale[row] = byte
    return packed, scale.view(torch.float8_e4m3fn)


class ExactCase:
    """The exact float64 result of one (activation, weight) case and its fp32-summation bound
    (``triton_exactness``), computed once and checked against any number of outputs; rows
    whose scales hold a NaN byte must come out NaN (as the reference's)."""

    def __init__(self, a, w_packed, w_scale, alpha, bias, out_dtype):
        self.nan_rows = ((w_scale.view(torch.uint8) & 0x7F) == 0x7F).any(dim=1).cpu()
        keep = ~self.nan_rows
        self.exact, self.bound = exact_and_bound(
            a.float().cpu(), w_packed.cpu()[keep], w_scale.cpu()[keep], alpha.cpu()[keep],
            None if bias is None else bias.cpu()[keep], out_dtype,
        )
        self.shape, self.out_dtype = (a.shape[0], w_packed.shape[0]), out_dtype

    def check(self, out, label=""):
        assert out.dtype == self.out_dtype and tuple(out.shape) == self.shape, label
        out = out.cpu()
        if bool(self.nan_rows.any()):
            assert bool(torch.isnan(out[:, self.nan_rows]).all()), f"{label}: NaN scale rows must give NaN"
        assert_within(out[:, ~self.nan_rows], self.exact, self.bound, label)


def check_gemv(a, w_packed, w_scale, alpha, bias, out_dtype, tile, label="", case: ExactCase | None = None):
    """One half2-GEMV call of ``tile`` checked against the exact result (``case``, when the
    same inputs are checked several times)."""
    out = launch_gemv_half2.gemv_half2(a, w_packed, w_scale.view(torch.uint8), alpha, bias, out_dtype, tile)
    (case or ExactCase(a, w_packed, w_scale, alpha, bias, out_dtype)).check(out, label)
    return out
