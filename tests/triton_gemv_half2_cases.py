"""The half2-decode GEMV (``kernels/gemv_half2.py``) under the CPU interpreter (run by
tests/test_triton_interpreter.py in a subprocess with ``TRITON_INTERPRET=1``).

The interpreter runs the portable word decoder (the PTX one is compared with it on the GPU,
``tests/gpu/test_gemv_half2_gpu.py``): every code at every nibble position with every scale
byte against the reference values; then whole calls against the exact float64 result (the
fp32-summation bound): M = 1..4, N not a multiple of the tile, K = 16 and K not a multiple
of the K tile, split-K reduced in the kernel (several splits, uneven), bias, fp16 and bf16,
float32 output (tensor-parallel partials), per-row alpha, special weights (every code, -0,
subnormal / max / zero / NaN scale bytes) and special activations (zeros, -0, the fp16
extremes, fp16 subnormals); also the tuner's candidate list and the launcher's errors.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/test_triton_interpreter.py"
sys.path.insert(0, os.path.dirname(__file__))
from gemv_half2_checks import (  # noqa: E402
    check_gemv, decode_reference, decode_words, every_word_and_scale, special_weight,
)
from triton_exactness import activation_operand, assert_close_to_exact  # noqa: E402

from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402
from nvfp4.ops import launch, launch_gemv_half2  # noqa: E402

TILE = launch_gemv_half2.TILES[0]


def test_portable_decoder_every_code_position_and_scale():
    words, scales = every_word_and_scale("cpu")
    got = decode_words(words, scales, use_asm=False)
    torch.testing.assert_close(got, decode_reference(words, scales), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,n,k,split", [(1, 72, 128, 1), (2, 40, 192, 3), (3, 33, 64, 1), (4, 64, 320, 2),
                                         (1, 24, 16, 1), (4, 8, 512, 8)])
def test_gemv_half2_matches_exact(dtype, m, n, k, split):
    g = torch.Generator().manual_seed(m * 100 + n + k)
    wp, ws, gw = quantize_weight(torch.randn(n, k, generator=g) * 0.1)
    x = (torch.randn(m, k, generator=g) * 2).to(dtype)
    alpha = (1.0 / gw).expand(n).contiguous()
    alpha[: n // 2] *= 2.0  # per-row alpha
    bias = torch.randn(n, generator=g).to(dtype) if m % 2 else None
    tile = dict(TILE, SPLIT_K=split)
    check_gemv(x, wp, ws, alpha, bias, dtype, tile, f"M={m} N={n} K={k} split={split}")


def test_gemv_half2_float32_output_for_tensor_parallel_partials():
    wp, ws, gw = quantize_weight(torch.randn(40, 128) * 0.1)
    x = torch.randn(3, 128).to(torch.bfloat16)
    alpha = (1.0 / gw).expand(40).contiguous()
    check_gemv(x, wp, ws, alpha, None, torch.float32, dict(TILE, SPLIT_K=2), "fp32 out")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gemv_half2_special_values(dtype):
    n, k = 40, 128
    wp, ws = special_weight(n, k, seed=5)
    ws.view(torch.uint8)[5, 3] = 0x7F  # a NaN block scale: row 5 must be NaN
    big = 65504.0 if dtype == torch.float16 else 1.0e30
    x = torch.randn(4, k).to(dtype)
    x[0] = 0.0
    x[1, :64] = -0.0
    x[1, 64:68] = big * torch.sign(torch.randn(4))
    x[2, ::2] = 6.0e-8 if dtype == torch.float16 else 1.0e-30  # fp16 subnormal; bf16 well inside the range
    alpha = torch.full((n,), 2.0**-16 if dtype == torch.float16 else 1.0)  # the fp16 output stays finite
    check_gemv(x, wp, ws, alpha, torch.randn(n).to(dtype), dtype, dict(TILE, SPLIT_K=2), f"special {dtype}")


def test_small_m_candidates_offer_the_half2_tiles_up_to_m4(monkeypatch):
    monkeypatch.setenv(launch_gemv_half2.TUNER_ENV, "off")
    assert not any(c.get("PATH") == "gemv_half2" for c in launch.small_m_candidates(1, True))
    monkeypatch.setenv(launch_gemv_half2.TUNER_ENV, "on")
    for m in (1, 2, 3, 4):
        paths = [c.get("PATH") for c in launch.small_m_candidates(m, True)]
        assert paths.count("gemv_half2") == len(launch_gemv_half2.TILES) and "gemv" in paths
    assert not any(c.get("PATH") == "gemv_half2" for c in launch.small_m_candidates(5, True))
    assert not any(c.get("PATH") == "gemv_half2" for c in launch.small_m_candidates(1, False))


def test_gemv_half2_refuses_m_outside_its_range():
    wp, ws, gw = quantize_weight(torch.randn(16, 64))
    alpha = torch.ones(16)
    for m in (0, 5):
        with pytest.raises(ValueError, match="gemv_half2: M = "):
            launch_gemv_half2.gemv_half2(torch.randn(m, 64).to(torch.bfloat16), wp, ws.view(torch.uint8), alpha,
                                         None, torch.bfloat16, TILE)


@pytest.mark.parametrize("weight_only", [False, True])
def test_the_half2_setting_routes_small_m_calls_to_it(weight_only, monkeypatch):
    """``NVFP4_TRITON_GEMV=half2``: W4A16 calls (and the W4A4 float path's GEMM) at M <= 4
    run the half2 GEMV, within the exact bound; M = 5 keeps the tensor-core GEMM."""
    monkeypatch.setenv("NVFP4_TRITON_GEMV", "half2")
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "off")
    wp, ws, gw = quantize_weight(torch.randn(48, 128) * 0.1)
    alpha = (1.0 / gw).expand(48).contiguous()
    for m in (1, 3, 5):
        x = torch.randn(m, 128).to(torch.bfloat16)
        before = launch.KERNEL_LAUNCHES["gemv_half2"]
        if weight_only:
            out = torch.ops.nvfp4.linear_w4a16(x, wp, ws, alpha, None)
            a = x.float()
        else:
            gx = torch.tensor([448.0 * 6.0 / x.abs().max().float().item()])
            out = torch.ops.nvfp4.linear_w4a4(x, wp, ws, gx, alpha / gx, None)
            a = activation_operand(*quantize_activation(x, gx))
            alpha_used = alpha / gx
        assert launch.KERNEL_LAUNCHES["gemv_half2"] - before == (1 if m <= 4 else 0), m
        assert_close_to_exact(out, a, wp, ws, alpha if weight_only else alpha_used, None, f"half2 setting M={m}")
