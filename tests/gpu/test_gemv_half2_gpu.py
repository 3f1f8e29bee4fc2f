"""GPU tests of the half2-decode GEMV (``kernels/gemv_half2.py``; ``pytest -m gpu tests/gpu``).

The PTX word decoder on the hardware (every code at every nibble position with every E4M3
scale byte) against the reference values and bit for bit against the portable decoder;
every tile the tuner can pick, at Llama shapes and awkward ones, M = 1..4, bf16 and fp16,
within the fp32-summation bound of a float64 computation, and bit-identical between the two
decoders (same summation order); special weights and activations (NaN scale row, extremes);
determinism with the split-K counters; the layer path reaching it (kernel counters) under
``NVFP4_TRITON_GEMV=half2`` and in a CUDA-graph capture.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from gemv_half2_checks import (  # noqa: E402
    ExactCase, check_gemv, decode_reference, decode_words, every_word_and_scale, special_weight,
)

from cuda_graph_checks import assert_capture_replays_eager  # noqa: E402

from nvfp4 import NVFP4Linear  # noqa: E402
from nvfp4.numerics import quantize_weight  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = "cuda"


def _mods():
    from nvfp4.ops import launch, launch_gemv_half2

    return launch, launch_gemv_half2


def test_ptx_decoder_every_code_position_and_scale_byte():
    words, scales = every_word_and_scale(DEV)
    asm = decode_words(words, scales, use_asm=True)
    portable = decode_words(words, scales, use_asm=False)
    torch.testing.assert_close(asm.cpu(), decode_reference(words, scales), rtol=0, atol=0, equal_nan=True)
    same = (asm.view(torch.int32) == portable.view(torch.int32)) | (torch.isnan(asm) & torch.isnan(portable))
    # -0 may come out as +0 from the portable table decode: equal values, and no sum can tell
    same |= (asm == 0) & (portable == 0)
    assert bool(same.all()), f"{int((~same).sum())} decoded values differ between the PTX and portable decoders"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", [(4096, 4096), (4096, 14336), (1000, 2048), (72, 432)])
def test_every_tile_matches_exact_and_both_decoders_agree(dtype, n, k, monkeypatch):
    launch, half2 = _mods()
    g = torch.Generator().manual_seed(n + k)
    wp, ws, gw = quantize_weight((torch.randn(n, k, generator=g) * 0.05).to(dtype))
    wp, ws = wp.to(DEV), ws.to(DEV)
    alpha = (1.0 / gw).expand(n).contiguous().to(DEV)
    bias = torch.randn(n, generator=g).to(dtype).to(DEV)
    for m in (1, 2, 3, 4):
        x = torch.randn(m, k, generator=g).to(dtype).to(DEV)
        b = bias if m % 2 else None
        case = ExactCase(x, wp, ws, alpha, b, dtype)
        for tile in half2.TILES:
            label = f"M={m} {n}x{k} {tile}"
            out = check_gemv(x, wp, ws, alpha, b, dtype, tile, label, case)
            monkeypatch.setenv(launch.DECODE_ENV, "portable")
            portable = half2.gemv_half2(x, wp, ws.view(torch.uint8), alpha, b, dtype, tile)
            monkeypatch.delenv(launch.DECODE_ENV)
            assert torch.equal(out, portable), label


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_special_weights_and_activations(dtype):
    _, half2 = _mods()
    n, k = 1000, 4096
    wp, ws = special_weight(n, k, seed=11)
    ws.view(torch.uint8)[7, 100] = 0x7F  # NaN block scale: row 7 is NaN for every token
    big = 65504.0 if dtype == torch.float16 else 1.0e30
    x = torch.randn(4, k).to(dtype)
    x[0] = 0.0
    x[1, :2048] = -0.0
    x[1, 2048:2052] = big * torch.sign(torch.randn(4))
    x[2, ::2] = 6.0e-8 if dtype == torch.float16 else 1.0e-30
    alpha = torch.full((n,), 2.0**-16 if dtype == torch.float16 else 1.0)
    x, wp, ws, alpha, bias = x.to(DEV), wp.to(DEV), ws.to(DEV), alpha.to(DEV), torch.randn(n).to(dtype).to(DEV)
    case = ExactCase(x, wp, ws, alpha, bias, dtype)
    for tile in half2.TILES:
        check_gemv(x, wp, ws, alpha, bias, dtype, tile, f"special {dtype} {tile}", case)


def test_split_k_is_deterministic_and_counters_reset():
    _, half2 = _mods()
    wp, ws, gw = quantize_weight(torch.randn(4096, 14336) * 0.05)
    wp, ws = wp.to(DEV), ws.to(DEV).view(torch.uint8)
    alpha = (1.0 / gw).expand(4096).contiguous().to(DEV)
    x = torch.randn(1, 14336, device=DEV, dtype=torch.bfloat16)
    for tile in half2.TILES:
        cfg = half2.config(1, 4096, 14336, torch.device(DEV), tile)
        assert cfg["SPLIT_K"] > 1, "the Llama shapes split K"
        first = half2.gemv_half2(x, wp, ws, alpha, None, torch.bfloat16, tile)
        for _ in range(3):
            assert torch.equal(half2.gemv_half2(x, wp, ws, alpha, None, torch.bfloat16, tile), first), tile


@pytest.mark.parametrize("weight_only", [False, True])
def test_layer_reaches_the_half2_gemv_eagerly_and_in_a_cuda_graph(weight_only, monkeypatch):
    launch, _ = _mods()
    monkeypatch.setenv(launch.GEMV_ENV, "half2")
    monkeypatch.setenv("NVFP4_TRITON_DP4A", "off")
    lin = torch.nn.Linear(2048, 3072, bias=True, device=DEV, dtype=torch.bfloat16)
    kw = dict(weight_only=True) if weight_only else dict(input_global_scale=300.0)
    layer = NVFP4Linear.from_linear(lin, backend="triton", **kw).to(DEV)
    ref = NVFP4Linear.from_linear(lin, backend="reference", **kw).to(DEV)
    x = torch.randn(2, 2048, device=DEV, dtype=torch.bfloat16)
    before = launch.KERNEL_LAUNCHES["gemv_half2"]
    out = layer(x)
    assert launch.KERNEL_LAUNCHES["gemv_half2"] > before
    torch.testing.assert_close(out, ref(x), rtol=2**-7, atol=1e-2)  # the exact bound is tested above
    assert_capture_replays_eager(layer, x, launch, "gemv_half2")
