"""The paired weight decode (``kernels/paired_decode.py``) under the CPU interpreter (run by
``tests/test_triton_interpreter.py``): the portable decoder on every code at every nibble
position with every E4M3 scale byte; the K-permuted activation operand; the W4A4 small-M
GEMM over both, within the fp32-summation bound, at awkward shapes (M = 5 just above the
GEMVs, M and N off the tile, K = 16, K not a multiple of the tile, split-K, both operand
orientations), bias, fp16 and bf16, special weights; the routing and its refusals."""

from __future__ import annotations

import os
import sys

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_triton_interpreter.py"
sys.path.insert(0, os.path.dirname(__file__))
from gemv_half2_checks import every_word_and_scale, special_weight  # noqa: E402
from paired_decode_checks import (  # noqa: E402
    check_w4a4, check_w4a16, decode_reference, decode_words, paired_launches, paired_order_of,
)
from triton_exactness import activation_operand  # noqa: E402

import nvfp4.ops  # noqa: E402,F401  (defines the kernels in interpreter mode)
from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402
from nvfp4.ops import launch  # noqa: E402


def _gx(x):
    return torch.tensor([448.0 * 6.0 / max(x.abs().max().float().item(), 1e-6)])


@pytest.mark.parametrize("op", ["fp16", "bf16", "fp32"])
def test_portable_decoder_every_code_position_and_scale(op):
    words, scales = every_word_and_scale("cpu")
    got = decode_words(words, scales, use_asm=False, op=op)
    torch.testing.assert_close(got, decode_reference(words, scales, op), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_activation_operand_in_paired_order(dtype):
    x = (torch.randn(5, 96) * 3).to(dtype)
    x[1, :16] = 0
    x[2, 16:32] = -0.0
    gx = _gx(x)
    natural = launch.quantize_activation(x, gx, dequant_dtype=torch.float32)
    paired = launch.quantize_activation(x, gx, dequant_dtype=torch.float32, paired_k=True)
    assert torch.equal(natural, activation_operand(*quantize_activation(x, gx)))
    assert torch.equal(paired, paired_order_of(natural))
    with pytest.raises(ValueError, match="dequantized operand only"):
        launch.quantize_activation(x, gx, paired_k=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,n,k,cfg", [
    (5, 72, 128, None), (17, 80, 192, dict(SPLIT_K=3)), (70, 64, 16, None), (33, 40, 96, dict(W_AS_B=False)),
    (128, 64, 64, dict(W_AS_B=True, SPLIT_K=1)), (9, 64, 80, dict(W_AS_B=True)),
])
def test_w4a4_paired_matches_exact(dtype, m, n, k, cfg, monkeypatch):
    g = torch.Generator().manual_seed(m * 31 + n + k)
    wp, ws, gw = quantize_weight(torch.randn(n, k, generator=g) * 0.1)
    x = (torch.randn(m, k, generator=g) * 2).to(dtype)
    gx = _gx(x)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    alpha[: n // 2] *= 2.0  # per-row alpha
    bias = torch.randn(n, generator=g).to(dtype) if m % 2 else None
    out = check_w4a4(x, gx, wp, ws, alpha, bias, f"paired M={m} N={n} K={k} {cfg}", monkeypatch, cfg)
    assert out.dtype == dtype and out.shape == (m, n)


def test_w4a4_paired_special_weights_and_activations(monkeypatch):
    """Every code (-0 included), subnormal / max / zero scale rows, a NaN scale row (NaN out in
    that row only), zero and extreme activation groups."""
    n, k = 40, 128
    wp, ws = special_weight(n, k, seed=5)
    ws_u8 = ws.view(torch.uint8).clone()
    ws_u8[5, 3] = 0x7F  # NaN block scale
    x = (torch.randn(6, k) * 2).to(torch.bfloat16)
    x[0] = 0
    x[1, :16] = 6 * 448.0
    x[2, 16:32] = -6 * 448.0
    gx = _gx(x)
    alpha = torch.full((n,), 0.25)
    monkeypatch.setenv(launch.PAIRED_K_ENV, "on")
    out = launch.linear_w4a4(x, wp, ws_u8.view(torch.float8_e4m3fn), gx, alpha, None)
    assert out[:, 5].isnan().all() and not out[:, [c for c in range(n) if c != 5]].isnan().any()
    good = [c for c in range(n) if c != 5]
    check_w4a4(x, gx, wp[good].contiguous(), ws[good].contiguous(), alpha[good].contiguous(), None, "special",
               monkeypatch)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,n,k,cfg", [(1, 72, 128, dict(W_AS_B=True)), (4, 40, 64, dict(W_AS_B=False)), (16, 80, 192, dict(SPLIT_K=3)),
                                       (32, 64, 16, None), (64, 64, 64, None)])
def test_w4a16_paired_matches_exact(dtype, m, n, k, cfg, monkeypatch):
    """W4A16 permutes x's tile in the GEMM (M <= 32) or keeps natural order (M > 32)."""
    g = torch.Generator().manual_seed(m * 7 + n + k)
    wp, ws, gw = quantize_weight(torch.randn(n, k, generator=g) * 0.1)
    x = (torch.randn(m, k, generator=g) * 2).to(dtype)
    alpha = (1.0 / gw).expand(n).contiguous()
    bias = torch.randn(n, generator=g).to(dtype) if m % 2 else None
    _, launches = check_w4a16(x, wp, ws, alpha, bias, f"w4a16 paired M={m} {cfg}", monkeypatch, cfg)
    assert launches == {launch.PAIRED_OPERAND: 0, launch.PAIRED_IN_KERNEL: 1 if m <= 32 else 0}, launches


def test_routing_and_refusals(monkeypatch):
    """Which mode each M gets (paired_mode), the setting off, and the refusals."""
    wp, ws, gw = quantize_weight(torch.randn(64, 64) * 0.1)
    alpha = (1.0 / gw).expand(64).contiguous()
    op, kernel = launch.PAIRED_OPERAND, launch.PAIRED_IN_KERNEL
    for setting, m, w4a4, w4a16 in (("on", 5, kernel, kernel), ("on", 32, kernel, kernel), ("on", 33, op, None),
                                    ("on", 128, op, None), ("on", 4, None, None), ("off", 16, None, None)):
        # (M = 4: the integer-dot kernel for W4A4; the interpreter runs the CUDA-core GEMV for W4A16)
        monkeypatch.setenv(launch.PAIRED_K_ENV, setting)
        x = torch.randn(m, 64).to(torch.bfloat16)
        for fn, mode in ((lambda: launch.linear_w4a4(x, wp, ws, _gx(x), alpha, None), w4a4),
                         (lambda: launch.linear_w4a16(x, wp, ws, alpha, None), w4a16)):
            launch.KERNEL_LAUNCHES.clear()
            fn()
            expect = {op: 0, kernel: 0} | ({mode: 1} if mode else {})
            assert paired_launches() == expect, (setting, m, dict(launch.KERNEL_LAUNCHES))
    monkeypatch.delenv(launch.PAIRED_K_ENV)  # the default: on
    assert launch.paired_mode(16, True) == kernel and launch.paired_mode(64, True) == op
    monkeypatch.setenv(launch.PAIRED_K_ENV, "on")
    assert launch.paired_mode(129, True) == launch.PAIRED_OFF
    a = torch.zeros(3, 64)
    with pytest.raises(ValueError, match="needs M > 4"):
        launch._small_gemm(a, wp, ws.view(torch.uint8), alpha, None, torch.float32, None, paired=op)
    with pytest.raises(ValueError, match="small-M path"):
        launch.gemm(torch.zeros(200, 64), None, 0, wp, ws.view(torch.uint8), alpha, None, None, torch.float32, None,
                    paired=op)
    monkeypatch.setenv(launch.PAIRED_K_ENV, "maybe")
    with pytest.raises(ValueError, match="NVFP4_TRITON_PAIRED_K"):
        launch.linear_w4a4(torch.randn(8, 64), wp, ws, torch.tensor([1.0]), alpha, None)
