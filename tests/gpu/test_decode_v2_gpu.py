"""GPU tests of the decode GEMM v2 (``kernels/gemm_decode.py``; ``pytest -m gpu``).

Real Llama shapes and awkward ones, W4A4 and W4A16, fp16 and bf16, bias, per-row alpha,
split-K and fused epilogue, both scale modes: within the fp32-summation bound of a float64
computation (``tests/triton_exactness.py``), with the launch counter proving v2 ran; the
repacked layout round-trips on the GPU; the backend uses v2 when NVFP4_TRITON_SMALL_M=v2.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from triton_exactness import activation_operand, assert_close_to_exact  # noqa: E402

from nvfp4.numerics import quantize_activation, quantize_weight  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = "cuda"


def _v2():
    from nvfp4.ops import launch_decode_v2

    return launch_decode_v2


def _launch():
    import nvfp4.ops  # noqa: F401
    from nvfp4.ops import launch

    return launch


def _weights(n, k, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return quantize_weight((torch.randn(n, k, generator=g) * 0.05).to(torch.bfloat16).to(DEV))


CASES = [  # n, k, Ms (few, to bound compile time: each M bucket / bias / K parity compiles a kernel)
    (4096, 4096, (1, 16, 33)),
    (1000, 432, (1, 17)),  # K % 256 != 0: masked tail tiles
    (96, 16, (3,)),  # K = 16: one group, padded to 32
    (200, 48, (2,)),  # K % 32 == 16: a trailing 16-group
    (4096, 14336, (4,)),
]
CONFIGS = [
    dict(SPLIT_K=1), dict(SCALE_GATHER=True), dict(BLOCK_N=128, BLOCK_K=128), dict(BLOCK_K=512, num_stages=2),
    dict(USE_ASM=True), dict(USE_ASM=True, SPLIT_K=1, BLOCK_N=128, num_warps=8),
    dict(USE_ASM=True, PREFETCH_SCALES=True), dict(PREFETCH_SCALES=True, BLOCK_K=512, num_stages=2),
]


def _check(launch, wp, ws, gw, pd, sd, n, k, m, dtype, cfg):
    x = (torch.randn(m, k, device=DEV) * 2).to(dtype)
    gx = torch.tensor([448.0 * 6.0 / x.abs().max().float().item()], device=DEV)
    alpha = (1.0 / (gx * gw)).expand(n).contiguous()
    alpha[: n // 3] *= 0.5  # per-row alpha
    bias = (torch.randn(n, device=DEV) * 0.1).to(dtype) if m % 2 else None
    before = launch.KERNEL_LAUNCHES["gemm_decode_v2"]
    out = _v2().linear_w4a4_decode_v2(x, pd, sd, k, gx, alpha, bias, cfg)
    rp, rs = quantize_activation(x, gx)
    assert_close_to_exact(out, activation_operand(rp, rs), wp, ws, alpha, bias, f"v2 w4a4 {dtype} M={m} {n}x{k} {cfg}")
    a16 = (1.0 / gw).expand(n).contiguous()
    out16 = _v2().linear_w4a16_decode_v2(x, pd, sd, k, a16, bias, cfg)
    assert_close_to_exact(out16, x.float(), wp, ws, a16, bias, f"v2 w4a16 {dtype} M={m} {n}x{k} {cfg}")
    assert launch.KERNEL_LAUNCHES["gemm_decode_v2"] == before + 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k,ms", CASES)
def test_decode_v2_matches_exact(n, k, ms, dtype):
    launch = _launch()
    wp, ws, gw = _weights(n, k)
    pd, sd = _v2().repack_weight_for_decode(wp, ws)
    codes = torch.stack((wp & 0xF, wp >> 4), -1).reshape(n, k)
    assert torch.equal(_v2().unpack_decode_layout(pd, k), codes)
    for m in ms:
        _check(launch, wp, ws, gw, pd, sd, n, k, m, dtype, None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_decode_v2_configs_match_exact(cfg, dtype):
    launch = _launch()
    wp, ws, gw = _weights(4096, 4096, seed=2)
    pd, sd = _v2().repack_weight_for_decode(wp, ws)
    _check(launch, wp, ws, gw, pd, sd, 4096, 4096, 16, dtype, cfg)
    if cfg.get("USE_ASM") or cfg.get("PREFETCH_SCALES"):  # also on a masked tail and a trailing 16-group
        for n, k in ((1000, 432), (200, 48)):
            wp2, ws2, gw2 = _weights(n, k, seed=4)
            pd2, sd2 = _v2().repack_weight_for_decode(wp2, ws2)
            _check(launch, wp2, ws2, gw2, pd2, sd2, n, k, 3, dtype, cfg)


def test_decode_v2_tiny_activations_bf16_w4a16():
    """bf16 x near its underflow: v2 multiplies the weight by 2^14 in bf16 (no fp32 underflow)."""
    wp, ws, gw = _weights(256, 512, seed=3)
    pd, sd = _v2().repack_weight_for_decode(wp, ws)
    x = (torch.randn(3, 512, device=DEV) * 1e-36).to(torch.bfloat16)
    alpha = torch.ones(256, device=DEV)
    out = _v2().linear_w4a16_decode_v2(x, pd, sd, 512, alpha, None)
    assert_close_to_exact(out, x.float(), wp, ws, alpha, None, "v2 tiny bf16")


def test_backend_uses_v2_when_selected(monkeypatch):
    launch = _launch()
    from nvfp4 import NVFP4Linear

    monkeypatch.setenv("NVFP4_TRITON_SMALL_M", "v2")
    lin = torch.nn.Linear(4096, 1000, bias=True).to(torch.bfloat16).to(DEV)
    layer = NVFP4Linear.from_linear(lin, input_global_scale=torch.tensor([500.0])).to(DEV)
    x = torch.randn(2, 5, 4096, device=DEV, dtype=torch.bfloat16)
    before = launch.KERNEL_LAUNCHES["gemm_decode_v2"]
    out = layer(x)
    assert launch.KERNEL_LAUNCHES["gemm_decode_v2"] == before + 1
    rp, rs = quantize_activation(x.reshape(-1, 4096), layer.input_global_scale)
    assert_close_to_exact(out.reshape(-1, 1000), activation_operand(rp, rs), layer.weight_packed, layer.weight_scale,
                          layer.alpha, layer.bias, "backend v2")
